"""``meshkit up``: NATS, then every service of the system, supervised, until Ctrl-C.

Order of life:

0. check what can be checked first (modules exist, fixed ports free; see
   :mod:`meshkit.cli.launch`);
1. launch the embedded NATS (or use ``MESHKIT_NATS_URL``);
2. launch each instance as ``python -m <module>`` in its own process group,
   without waiting for NATS (it is up long before a service needs it);
3. watch the registry until every instance registered and answers ``/readyz``
   with 200, then print one ``ready`` line with the URLs;
4. keep them running (restart with backoff), report re-registrations;
5. on Ctrl-C / SIGTERM: stop the services (SIGTERM, then SIGKILL stragglers),
   then NATS, within :data:`STOP_BUDGET` seconds, and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from meshkit.basis.errors import ConfigError, MeshkitError
from meshkit.basis.instance import Instance
from meshkit.basis.natsd import PORT_SETTING, URL_SETTING, EmbeddedNats
from meshkit.cli.launch import (
    check_fixed_ports,
    check_modules,
    child_env,
    process_age,
    skip_websocket_support,
)
from meshkit.cli.output import Console
from meshkit.cli.probe import http_status, nats_answers
from meshkit.cli.supervisor import Child, ChildSpec, RestartPolicy, Supervisor, describe_exit
from meshkit.cli.system import SystemDef, system_path

#: Seconds from the stop signal to exit: services get most, NATS the rest.
STOP_BUDGET = 10.0
SERVICES_BUDGET = 7.0
#: Crashes before ``ready`` after which we give up: it will not get better by itself.
START_CRASH_LIMIT = 3
#: While waiting for ``ready``, say what we are waiting for this often.
WAIT_REPORT_EVERY = 10.0


@dataclass(slots=True)
class UpOptions:
    """What ``meshkit up`` was asked to do."""

    system_file: str | None = None
    nats_port: int = 4223
    data_dir: Path = Path(".meshkit")
    nats_url: str | None = None  # an existing server: start none


class Up:
    """One run of ``meshkit up``; :meth:`run` returns the exit code."""

    def __init__(self, system: SystemDef, console: Console, options: UpOptions,
                 policy: RestartPolicy | None = None) -> None:
        self.system = system
        self.console = console
        self.options = options
        self.supervisor = Supervisor(console, policy, on_exit=self._child_exited, on_spawn=self._child_spawned)
        self.nats: EmbeddedNats | None = None
        self.registry = None
        self.view = None
        self.ready = False
        self.abort: str | None = None
        self.urls: dict[str, str] = {}  # instance id -> URL, once it answered /readyz
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._signals = 0

    async def run(self) -> int:
        """Bring the system up, keep it up until asked to stop, stop it; the exit code."""
        self._install_signals()
        t0 = time.monotonic() - process_age()  # `ready in` counts from the command's launch
        code = 0
        try:
            check_modules(self.system, self.options.system_file)
            check_fixed_ports(self.system)
            url, nats_starting = await self._start_nats()
            # Children first: their imports take longest; NATS finishing its start and our
            # own registry setup (importing nats-py, connecting, the KV watch) overlap with them.
            self._start_services(url)
            if nats_starting is not None:
                await nats_starting
            await self._watch_registry(url)
            if await self._wait_ready():
                self.console.good(self._ready_line(url, time.monotonic() - t0))
                self.ready = True
                await self._keep_watching()
            elif self.abort:
                self.console.error(self.abort)
                code = 1
        except ConfigError as exc:
            self.console.error(exc.message)
            code = 2
        except MeshkitError as exc:  # e.g. the registry did not answer
            self.console.error(exc.message)
            code = 1
        finally:
            await self._shutdown()
        return code

    # -- start ---------------------------------------------------------------------------------

    async def _start_nats(self) -> tuple[str, asyncio.Task[None] | None]:
        """The NATS URL, and the task that finishes starting it (``None``: already there).

        The server process is launched before this returns, but we do not wait for
        it to accept connections: the services spend far longer importing than
        nats-server needs to start, so they are launched meanwhile.
        """
        if self.options.nats_url:
            if not await nats_answers(self.options.nats_url):
                raise ConfigError(
                    f"no NATS answers at {self.options.nats_url} ({URL_SETTING}): start that server, "
                    f"or unset {URL_SETTING} to let meshkit up start one"
                )
            self.console.note(f"using nats at {self.options.nats_url} ({URL_SETTING})")
            return self.options.nats_url, None
        data_dir = self.options.data_dir
        self.nats = nats = EmbeddedNats(
            port=self.options.nats_port, data_dir=data_dir, log_file=data_dir / "nats.log",
            port_setting=f"{PORT_SETTING} or --nats-port",
        )
        self.console.note(f"starting nats on port {self.options.nats_port}…")
        t = time.monotonic()

        async def started() -> None:
            await nats.start()
            pid = nats.process.pid if nats.process else "?"
            self.console.note(f"nats ok ({nats.url}, pid {pid}, {time.monotonic() - t:.2f}s, "
                              f"log {data_dir / 'nats.log'})")

        task = asyncio.create_task(started())
        # One turn of the loop runs start() up to its first wait: port checked, process
        # launched. A port in use fails here, before any service is started.
        await asyncio.sleep(0)
        if task.done():
            task.result()
        return nats.url, task

    async def _watch_registry(self, nats_url: str) -> None:
        skip_websocket_support(nats_url)
        from meshkit.basis.registry import open_registry
        from meshkit.basis.registry.view import RegistryView

        url = os.environ.get("MESHKIT_REGISTRY_URL") or nats_url
        self.registry = await open_registry(url)
        self.view = RegistryView(self.registry)
        await self.view.start()
        self.view.subscribe(lambda _service: self._changed.set())

    def _start_services(self, nats_url: str) -> None:
        identity_key = secrets.token_hex(32)  # this run's seal on the identity the gateway passes on
        for svc in self.system.services:
            for iid in svc.instance_ids():
                env = child_env(svc.service_env(), nats_url=nats_url, data_dir=self.options.data_dir,
                                instance_id=iid, identity_key=identity_key)
                tag = f"{svc.name}/{iid.rsplit('-', 1)[1]}"
                self.supervisor.add(ChildSpec(svc.name, iid, tag, [sys.executable, "-m", svc.module], env))
        self.supervisor.start()

    # -- readiness -----------------------------------------------------------------------------

    def _registered(self, child: Child) -> Instance | None:
        """The registry entry of ``child``'s current run (not one a previous run left behind)."""
        assert self.view is not None
        for inst in self.view.instances(child.spec.service):
            if inst.instance_id == child.spec.instance_id and inst.started_at >= child.spawned_at - 1.0:
                return inst
        return None

    async def _serving(self, child: Child) -> Instance | None:
        inst = self._registered(child) if child.pid else None
        if inst is not None and await http_status(inst.address, inst.port, "/readyz") == 200:
            return inst
        return None

    async def _wait_ready(self) -> bool:
        pending = list(self.supervisor.children)
        next_report = time.monotonic() + WAIT_REPORT_EVERY
        while pending:
            if self._stop.is_set() or self.abort:
                return False
            for child in list(pending):
                inst = await self._serving(child)
                if inst is not None:
                    pending.remove(child)
                    self.urls[child.spec.instance_id] = inst.url
                    self.console.note(f"{child.spec.instance_id} ok at {inst.url}")
            if pending and time.monotonic() >= next_report:
                next_report = time.monotonic() + WAIT_REPORT_EVERY
                self.console.warn("still waiting for " + ", ".join(self._why_waiting(c) for c in pending))
            if pending:
                await self._pause(0.1)
        return not self._stop.is_set()

    def _why_waiting(self, child: Child) -> str:
        if child.pid is None:
            return f"{child.spec.instance_id} (not running)"
        if self._registered(child) is None:
            return f"{child.spec.instance_id} (not registered yet)"
        return f"{child.spec.instance_id} (/readyz not 200 yet)"

    def _ready_line(self, nats_url: str, elapsed: float) -> str:
        public = [f"open {self.urls[c.spec.instance_id]}" for c in self.supervisor.children
                  if (svc := self.system.get(c.spec.service)) and svc.public]
        each = [f"{c.spec.instance_id} {self.urls[c.spec.instance_id]}" for c in self.supervisor.children]
        return f"ready in {elapsed:.1f}s: " + "  ".join([*public, *each, f"nats {nats_url}"]) + "  (Ctrl-C stops)"

    async def _keep_watching(self) -> None:
        """Until stopped: tell when a restarted instance is back (or one drops out)."""
        shown = {c.spec.instance_id: self.urls[c.spec.instance_id] for c in self.supervisor.children}
        seen_start = {c.spec.instance_id: c.starts for c in self.supervisor.children}
        while not self._stop.is_set():
            for child in self.supervisor.children:
                iid = child.spec.instance_id
                if child.starts != seen_start[iid]:
                    seen_start[iid], shown[iid] = child.starts, ""
                if shown[iid]:
                    if child.pid and self._registered(child) is None:
                        self.console.warn(f"{iid} dropped out of the registry (heartbeats stopped?)")
                        shown[iid] = ""
                    continue
                inst = await self._serving(child)
                if inst is not None:
                    shown[iid] = inst.url
                    self.console.good(f"{iid} back at {inst.url} (restart {child.starts - 1})")
            await self._pause(0.25)

    async def _pause(self, seconds: float) -> None:
        self._changed.clear()
        waiters = [asyncio.ensure_future(self._changed.wait()), asyncio.ensure_future(self._stop.wait())]
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()

    def _child_spawned(self, child: Child) -> None:
        again = f", restart {child.starts - 1}" if child.starts > 1 else ""
        self.console.note(f"{child.spec.instance_id} starting… (pid {child.pid}{again}, python {' '.join(child.spec.argv[1:])})")

    def _child_exited(self, child: Child, code: int, uptime: float) -> bool:
        self._changed.set()
        if not self.ready and child.crashes >= START_CRASH_LIMIT:
            self.abort = (
                f"{child.spec.instance_id} exited {child.crashes} times while starting (last: {describe_exit(code)}); "
                f"its output is above. Fix it (or remove it from {system_path(self.options.system_file)}) "
                "and run meshkit up again"
            )
            return False
        return True

    # -- stop ----------------------------------------------------------------------------------

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            self.console.note(f"{signal.Signals(sig).name}: stopping (again to kill at once)")
            self._stop.set()
        else:
            self.console.warn("killing every service now")
            self.supervisor.kill_all()

    async def _shutdown(self) -> None:
        t0 = time.monotonic()
        live = [c.spec.instance_id for c in reversed(self.supervisor.children) if c.pid]
        if live:
            self.console.note(f"stopping {', '.join(live)}…")
        killed = await self.supervisor.stop(SERVICES_BUDGET)
        for child in killed:
            self.console.warn(f"{child.spec.instance_id} did not stop within {SERVICES_BUDGET:.0f}s: killed")
        for closer in (self.view, self.registry):
            if closer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(closer.close(), 1.0)
        nats_ran = self.nats is not None and self.nats.running
        if self.nats is not None:
            remaining = max(0.5, STOP_BUDGET - (time.monotonic() - t0) - 0.5)
            await self.nats.stop(timeout=remaining)
        if nats_ran:
            self.console.note("nats stopped")
        if live or nats_ran:
            self.console.note(f"stopped in {time.monotonic() - t0:.1f}s")


def command(options: UpOptions, *, color: bool, readable_logs: bool = False) -> int:
    """Run ``meshkit up``; the exit code (0 after Ctrl-C / SIGTERM, 1 failed, 2 bad setup)."""
    from meshkit.cli.system import load_system

    try:
        system = load_system(options.system_file)
    except ConfigError as exc:
        print(f"meshkit up: {exc.message}", file=sys.stderr)
        return 2
    tags = [f"{s.name}/{n}" for s in system.services for n in range(1, s.instances + 1)]
    console = Console(color=color, tags=tags, readable_logs=readable_logs)
    options.data_dir = options.data_dir.resolve()
    return asyncio.run(Up(system, console, options).run())
