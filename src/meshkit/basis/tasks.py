"""Stopping background tasks so that a stop always ends; telling a task's stop from a failure.

``task.cancel(); await task`` can wait forever on Python 3.11: ``asyncio.wait_for``
(used by nats-py's watchers, among others) may swallow a cancellation that lands
as the awaited result arrives (CPython gh-86296, fixed in 3.12), and a loop
around it then carries on. :func:`stop_task` cancels again until the task ends,
and gives up (logging it) after ``timeout`` rather than hang a shutdown.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("meshkit.tasks")


def is_failure(exc: BaseException) -> bool:
    """Whether an exception out of some work (a handler, a saga step) is that work's failure.

    Any exception is, a ``BaseException`` subclass of the work's own and a ``CancelledError``
    it caught from something else included; ``KeyboardInterrupt``, ``SystemExit`` and the
    cancellation of the running task itself (a consumer or driver stopping) are not: they
    propagate. Used by the bus's consumers and followers and by the saga driver.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return False
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        return not (task is not None and task.cancelling())
    return True


async def stop_task(task: asyncio.Task | None, *, timeout: float = 5.0) -> None:
    """Cancel ``task`` and wait for it to end, cancelling again every 100 ms; never raises its outcome."""
    if task is None or task is asyncio.current_task():
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
        if not task.done() and loop.time() >= deadline:
            log.warning("task %s did not stop within %.1f s of being cancelled; leaving it", task.get_name(),
                        timeout)
            return
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r while stopping", task.get_name(), task.exception())
