"""stop_task: a stop that always ends, even when a task swallows a cancellation."""

from __future__ import annotations

import asyncio

from meshkit.basis.tasks import stop_task


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again():
    swallowed = 0

    async def stubborn():
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed == 0:  # what Python 3.11's wait_for can do when a result races the cancel
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task), 2.0)
    assert task.cancelled() and swallowed == 1


async def test_gives_up_after_the_timeout_instead_of_hanging():
    released = False

    async def immortal():
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if released:
                    raise

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    await asyncio.wait_for(stop_task(task, timeout=0.3), 2.0)
    assert not task.done()
    released = True  # the test's own cleanup
    task.cancel()
    await asyncio.wait({task}, timeout=1.0)
    assert task.cancelled()


async def test_none_done_and_failed_tasks_are_fine():
    await stop_task(None)

    async def fails():
        raise ValueError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await stop_task(task)
    assert isinstance(task.exception(), ValueError)
