"""Supervised child processes: start, tag their output, restart on crash, stop in order.

Each child runs in its own session (process group), so a Ctrl-C in the terminal
reaches ``meshkit up`` only and we stop the children ourselves, in order. On
Linux a child also gets SIGTERM if ``meshkit up`` dies without stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from meshkit.basis.process import die_with_parent
from meshkit.cli.output import Console

#: Longest line we pass through whole; longer ones are cut into pieces of this size.
LINE_LIMIT = 1 << 20


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Exponential backoff between restarts of a crashing child.

    The n-th consecutive crash waits ``initial * factor**(n-1)``, at most
    ``maximum``. A child that stayed up ``reset_after`` seconds starts over at
    ``initial``: one crash a day is not a crash loop.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    reset_after: float = 10.0

    def delay(self, crashes: int) -> float:
        """Seconds to wait before restarting after ``crashes`` consecutive crashes (≥ 1)."""
        if crashes <= 0:
            return 0.0
        return min(self.maximum, self.initial * self.factor ** (crashes - 1))

    def next_crashes(self, crashes: int, uptime: float) -> int:
        """The consecutive crash count after a crash that followed ``uptime`` seconds up."""
        return 1 if uptime >= self.reset_after else crashes + 1


@dataclass(slots=True)
class ChildSpec:
    """What to run: ``argv`` with ``env``, shown behind ``tag``."""

    service: str
    instance_id: str
    tag: str
    argv: list[str]
    env: dict[str, str]


@dataclass(slots=True)
class Child:
    """A supervised child and what we know of its current run."""

    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    #: Wall-clock time of the current run's spawn (registry timestamps are wall clock).
    spawned_at: float = 0.0
    started_mono: float = 0.0
    starts: int = 0
    crashes: int = 0
    last_code: int | None = None
    readers: list[asyncio.Task[None]] = field(default_factory=list, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.returncode is None else None


#: Called after a child exited on its own: ``(child, returncode, uptime)``; returning
#: ``False`` leaves it stopped instead of restarting it.
ExitHook = Callable[[Child, int, float], "bool | None"]
#: Called after each (re)start of a child, once it has a pid.
SpawnHook = Callable[[Child], None]


class Supervisor:
    """Runs children, restarts those that exit, stops them all on request."""

    def __init__(self, console: Console, policy: RestartPolicy | None = None,
                 on_exit: ExitHook | None = None, on_spawn: SpawnHook | None = None) -> None:
        self.console = console
        self.policy = policy or RestartPolicy()
        self.on_exit = on_exit
        self.on_spawn = on_spawn
        self.children: list[Child] = []
        self._stopping = asyncio.Event()

    def add(self, spec: ChildSpec) -> Child:
        child = Child(spec)
        self.children.append(child)
        return child

    def start(self) -> None:
        """Start every child added so far; each is kept running by its own task."""
        for child in self.children:
            if child.task is None:
                child.task = asyncio.create_task(self._keep_running(child), name=f"supervise {child.spec.tag}")

    async def _keep_running(self, child: Child) -> None:
        while not self._stopping.is_set():
            try:
                await self._spawn(child)
            except OSError as exc:
                self.console.error(f"{child.spec.instance_id} could not start: {exc}")
                code, uptime = 127, 0.0
            else:
                assert child.process is not None
                code = await child.process.wait()
                uptime = time.monotonic() - child.started_mono
                await self._drain(child)
                _kill_group(child.process.pid)  # nothing it started may outlive it
            child.last_code = code
            if self._stopping.is_set():
                return
            child.crashes = self.policy.next_crashes(child.crashes, uptime)
            delay = self.policy.delay(child.crashes)
            exited = f"{child.spec.instance_id} exited with {describe_exit(code)} after {uptime:.1f}s"
            if self.on_exit is not None and self.on_exit(child, code, uptime) is False:
                self.console.warn(f"{exited}; not restarting it")
                return
            self.console.warn(f"{exited}; restarting in {delay:.1f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _spawn(self, child: Child) -> None:
        spec = child.spec
        child.starts += 1
        child.spawned_at = time.time()
        child.started_mono = time.monotonic()
        child.process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=LINE_LIMIT,
            preexec_fn=die_with_parent,  # SIGTERM when `meshkit up` dies, even by SIGKILL
        )
        child.readers = [
            asyncio.create_task(self._pump(child, child.process.stdout)),
            asyncio.create_task(self._pump(child, child.process.stderr)),
        ]
        if self.on_spawn:
            self.on_spawn(child)

    async def _pump(self, child: Child, stream: asyncio.StreamReader | None) -> None:
        """Copy a child's output line by line, behind its tag."""
        if stream is None:
            return
        while True:
            try:
                raw = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:  # EOF; a last line without newline
                if exc.partial:
                    self.console.child(child.spec.tag, _text(exc.partial))
                return
            except asyncio.LimitOverrunError as exc:  # a huge line: pass it on in pieces
                raw = await stream.readexactly(exc.consumed)
            self.console.child(child.spec.tag, _text(raw))

    async def _drain(self, child: Child) -> None:
        readers = child.readers
        if readers:
            # Output still in the pipe is the most useful part of a crash; but a grandchild
            # holding the pipe open must not keep us waiting.
            _, pending = await asyncio.wait(readers, timeout=1.0)
            for task in pending:
                task.cancel()

    async def stop(self, timeout: float) -> list[Child]:
        """Stop every child: SIGTERM, wait up to ``timeout``, SIGKILL the rest.

        Children are signalled in reverse start order, one service group after
        another, so the entry points stop taking traffic before what they call.
        A slow group holds the others back for at most half of ``timeout``; then
        all get SIGTERM, so each has at least half of it to stop gracefully.
        Returns the children that had to be killed.
        """
        self._stopping.set()
        now = time.monotonic()
        deadline, in_order_until = now + timeout, now + timeout / 2
        signalled: list[Child] = []
        for group in _groups_reversed(self.children):
            live = [c for c in group if c.process is not None and c.process.returncode is None]
            for child in live:
                # The leader alone: it stops its own workers gracefully; the group is killed after.
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            signalled += live
            if live and time.monotonic() < in_order_until:
                await asyncio.wait([asyncio.ensure_future(c.process.wait()) for c in live],  # type: ignore[union-attr]
                                   timeout=in_order_until - time.monotonic())
        killed: list[Child] = []
        for child in signalled:
            assert child.process is not None
            if child.process.returncode is not None:
                continue
            try:
                await asyncio.wait_for(child.process.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                killed.append(child)
                _kill_group(child.process.pid)
                await child.process.wait()
        for child in self.children:
            if child.process is not None:
                _kill_group(child.process.pid)
            if child.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(child.task, 1.0)
        return killed

    def kill_all(self) -> None:
        """SIGKILL every child now (a second Ctrl-C)."""
        self._stopping.set()
        for child in self.children:
            if child.process is not None:
                _kill_group(child.process.pid)


def describe_exit(code: int) -> str:
    """``code 1`` or ``signal SIGKILL`` for a return code."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _groups_reversed(children: list[Child]) -> list[list[Child]]:
    groups: dict[str, list[Child]] = {}
    for child in children:
        groups.setdefault(child.spec.service, []).append(child)
    return list(reversed(groups.values()))


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\r\n").decode("utf-8", "replace")


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_group(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)
