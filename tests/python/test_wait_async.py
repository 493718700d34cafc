# SPDX-License-Identifier: MIT
"""Segment.wait_async under asyncio: woken by another process's commit
without blocking the event loop; cancellation frees the executor thread at
once; timeouts and close() surface as pybridge errors."""
import asyncio
import concurrent.futures
import os
import threading
import time

import pytest

import pybridge
from conftest import TIME_SCALE, binary
from mut_helpers import wait_until_blocked_in_futex


def run(coro_fn):
    """Runs `coro_fn()` on a fresh loop whose default executor has ONE
    thread, so a wait that never returns shows as a stuck executor."""
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
        return await coro_fn()

    return asyncio.run(main())


async def peer(daemon, *args):
    """Runs bridge_peer through the event loop (which must keep running)."""
    proc = await asyncio.create_subprocess_exec(
        binary("bridge_peer"), "--socket", daemon.socket, *map(str, args),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    return out.decode().strip()


def test_commit_from_another_process_wakes_the_awaiting_task(client, daemon):
    seg = client.create("a", (3,), "int64")

    async def scenario():
        start = seg.version
        waiting = asyncio.create_task(seg.wait_async(newer_than=start, timeout=30))
        await asyncio.sleep(0)  # let the task hand its wait to the executor
        # The loop is free while the task waits: it runs the C++ writer.
        assert await peer(daemon, "write", "a", 4) == str(start + 1)
        return await asyncio.wait_for(waiting, 30)

    assert run(scenario) == 1
    assert seg.snapshot().tolist() == [4, 4, 4]


def test_several_tasks_and_the_loop_stay_live(client, daemon):
    seg = client.create("a", (1,), "uint8")

    async def scenario():
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=3))
        waits = [asyncio.create_task(seg.wait_async(0, timeout=30)) for _ in range(3)]
        ticks = 0
        for _ in range(100):  # the loop keeps scheduling while all three wait
            await asyncio.sleep(0)
            ticks += 1
        await peer(daemon, "mark_changed", "a")
        return ticks, await asyncio.gather(*waits)

    ticks, versions = asyncio.run(scenario())
    assert ticks == 100 and versions == [1, 1, 1]


def test_cancellation_frees_the_executor_thread_promptly(client):
    seg = client.create("a", (1,), "uint8")

    async def scenario():
        loop = asyncio.get_running_loop()
        worker = await loop.run_in_executor(None, threading.get_native_id)
        waiting = asyncio.create_task(seg.wait_async(seg.version, timeout=None))
        await asyncio.sleep(0)
        # Cancel only once the worker sleeps in the kernel: the wake-up must
        # reach a blocked thread, not one that has yet to look at the flag.
        wait_until_blocked_in_futex(os.getpid(), worker)
        cancelled_at = time.monotonic()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The single executor thread can run something else only once the
        # wait has really returned.
        freed = loop.run_in_executor(None, time.monotonic)
        try:
            freed_at = await asyncio.wait_for(asyncio.shield(freed), 5)
        finally:
            seg.mark_changed()  # ends a wait that cancellation failed to end (else no shutdown)
        return freed_at - cancelled_at

    latency = run(scenario)
    assert latency < 0.5 * TIME_SCALE
    assert seg.version == 1  # nothing but the clean-up commit


def test_timeout_raises_pybridge_timeout(client):
    seg = client.create("a", (1,), "uint8")

    async def scenario():
        start = time.monotonic()
        with pytest.raises(pybridge.Timeout):
            await seg.wait_async(seg.version, timeout=0.2)
        return time.monotonic() - start

    assert 0.2 <= run(scenario) < 2 * TIME_SCALE


def test_close_ends_a_pending_wait_with_closed(client):
    seg = client.create("a", (1,), "uint8")

    async def scenario():
        waiting = asyncio.create_task(seg.wait_async(0, timeout=None))
        await asyncio.sleep(0)
        seg.close()
        with pytest.raises(pybridge.Closed):
            await asyncio.wait_for(waiting, 5)

    run(scenario)
    assert client.info("a")["attached"] == 0
