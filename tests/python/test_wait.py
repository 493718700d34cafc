# SPDX-License-Identifier: MIT
"""Segment.wait: woken by commits from other processes (C++ -> Python,
Python -> C++, Python -> Python), exact timeouts, no CPU burnt while
blocked, the GIL released, Ctrl-C and close() honoured."""
import contextlib
import os
import signal
import threading
import time

import pytest

import pybridge
from conftest import TIME_SCALE
from mut_helpers import (PEER_TIMEOUT_EXIT, assert_ctrl_c_ends, child_cpu_seconds, expect_line,
                         finish, kill, popen_child, popen_peer, wait_until_blocked_in_futex)
from pb_helpers import run_python

#: A blocked wait may use at most this fraction of one CPU.
CPU_FRACTION_LIMIT = 0.10


def test_returns_at_once_when_already_newer(client):
    seg = client.create("w", (1,), "uint8")
    seg.mark_changed()
    assert seg.wait(0, timeout=0) == 1
    assert seg.wait(newer_than=0) == 1


def test_newer_than_is_required(client):
    """Reading the version inside wait() would lose a commit that lands
    between the caller's last look and the call: newer_than has no default."""
    seg = client.create("w", (1,), "uint8")
    seg.mark_changed()  # a version to return at once, were a default ever added
    with pytest.raises(TypeError, match="newer_than"):
        seg.wait()
    with pytest.raises(TypeError, match="newer_than"):
        seg.wait(timeout=0)
    with pytest.raises(TypeError, match="newer_than"):
        seg.wait_async()  # refused at the call, before any coroutine exists
    with pytest.raises(TypeError, match="newer_than"):  # nor has the one under wait_async
        seg._wait(timeout=None, token=pybridge._pybridge.CancelToken())
    assert seg.wait(newer_than=0, timeout=0) == 1


def test_cpp_commit_wakes_python(client, daemon):
    seg = client.create("w", (1,), "uint8")
    start = seg.version
    peer = popen_peer(daemon, "mark_changed", "w")  # commits once attached
    try:
        assert seg.wait(newer_than=start, timeout=30) == start + 1
    finally:
        finish(peer)
    assert seg.last_writer_pid == peer.pid


def test_cpp_locked_write_wakes_python(client, daemon):
    seg = client.create("w", (4,), "int32")
    peer = popen_peer(daemon, "write", "w", 9)
    try:
        assert seg.wait(0, timeout=30) == 1
        assert seg.snapshot().tolist() == [9] * 4
    finally:
        finish(peer)


@pytest.mark.parametrize("how", ["mark_changed", "write"])
def test_python_commit_wakes_cpp(client, daemon, how):
    seg = client.create("w", (2,), "int64")
    peer = popen_peer(daemon, "wait", "w", seg.version, 30)
    try:
        expect_line(peer, "waiting")
        if how == "mark_changed":
            seg.mark_changed()
        else:
            with seg.write() as arr:
                arr[:] = 5
        assert int(finish(peer)) == 1
    finally:
        kill(peer)


PY_WAITER = """
    import sys, time, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    v = s.version
    print("waiting", flush=True)
    print(s.wait(newer_than=v, timeout=30), flush=True)
"""


def test_python_commit_wakes_python(client, daemon):
    seg = client.create("w", (1,), "uint8")
    waiter = popen_child(PY_WAITER, daemon, "w")
    try:
        expect_line(waiter, "waiting")
        seg.mark_changed()
        assert int(finish(waiter)) == 1
    finally:
        kill(waiter)


@pytest.mark.parametrize("on_main_thread", [True, False])
def test_timeout_is_honoured_and_costs_no_cpu(client, on_main_thread):
    seg = client.create("w", (1,), "uint8")
    outcome = {}

    def wait():
        cpu = time.process_time()
        start = time.monotonic()
        try:
            seg.wait(seg.version, timeout=0.5)
        except pybridge.Timeout as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - start
        outcome["cpu"] = time.process_time() - cpu

    if on_main_thread:
        wait()
    else:
        t = threading.Thread(target=wait)
        t.start()
        t.join()
    assert isinstance(outcome["error"], TimeoutError)  # pybridge.Timeout is one
    assert outcome["error"].code == "timeout"
    assert 0.5 <= outcome["elapsed"] < 1.5 * TIME_SCALE
    assert outcome["cpu"] < CPU_FRACTION_LIMIT * outcome["elapsed"], outcome


def test_cpp_wait_times_out_without_burning_cpu(client, daemon):
    seg = client.create("w", (1,), "uint8")
    start = time.monotonic()
    # A 2 s wait: the figure is the whole process (start-up and connect
    # included), and a sanitized peer's start-up alone is ~60 ms of CPU,
    # more than a tenth of a shorter wait.
    peer = popen_peer(daemon, "wait", "w", seg.version, 2.0)
    expect_line(peer, "waiting")
    cpu = child_cpu_seconds(peer)  # whole process: start-up, connect and the wait
    elapsed = time.monotonic() - start
    assert peer.returncode == PEER_TIMEOUT_EXIT, peer.stderr.read()
    assert "timeout" in peer.stderr.read()
    assert 2.0 <= elapsed < 2.0 + 2.5 * TIME_SCALE
    assert cpu < CPU_FRACTION_LIMIT * elapsed, (cpu, elapsed)


def test_timeout_zero_does_not_block(client):
    seg = client.create("w", (1,), "uint8")
    start = time.monotonic()
    with pytest.raises(pybridge.Timeout):
        seg.wait(seg.version, timeout=0)
    assert time.monotonic() - start < 0.5 * TIME_SCALE


def test_wait_releases_the_gil(daemon):
    """Another thread runs Python code (and commits) while one waits; in a
    child process so that a held GIL fails by timeout instead of hanging."""
    out = run_python("""
        import sys, threading, pybridge
        c = pybridge.connect(sys.argv[1])
        s = c.create("w", (1,), "uint8")
        woke = []
        t = threading.Thread(target=lambda: woke.append(s.wait(0, timeout=None)))
        t.start()
        spins = sum(1 for _ in range(200_000))  # Python code: needs the GIL
        s.mark_changed()
        t.join()
        print(woke, spins)
    """, daemon.socket, timeout=60)
    assert out.stdout.split() == ["[1]", "200000"]


def test_close_in_another_thread_ends_a_wait(client):
    seg = client.create("w", (1,), "uint8")
    outcome = []
    started = threading.Event()

    def wait():
        started.set()
        try:
            seg.wait(seg.version, timeout=None)
        except pybridge.Closed:
            outcome.append(time.monotonic())

    t = threading.Thread(target=wait)
    t.start()
    assert started.wait(timeout=30)
    closed_at = time.monotonic()
    seg.close()
    t.join(timeout=30)
    assert not t.is_alive()
    assert outcome and outcome[0] - closed_at < 1.0 * TIME_SCALE
    # The pinned attachment was detached once the wait returned.
    assert client.info("w")["attached"] == 0


PY_BLOCKED = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    print("blocking", flush=True)
    if sys.argv[3] == "wait":
        s.wait(s.version)
    else:
        s.write()
"""


@pytest.mark.parametrize("call", ["wait", "write"])
def test_ctrl_c_interrupts_a_blocked_main_thread(client, daemon, call):
    seg = client.create("w", (1,), "uint8")
    holder = popen_peer(daemon, "lock-and-hang", "w", 1) if call == "write" else None
    child = None
    try:
        if holder:
            expect_line(holder, "locked")
        child = popen_child(PY_BLOCKED, daemon, "w", call)
        expect_line(child, "blocking")
        assert_ctrl_c_ends(child)
    finally:
        for proc in (holder, child):
            if proc:
                kill(proc)
    assert seg.version == 0


PY_FORKED_FROM_A_THREAD = """
    import os, sys, threading, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])

    def fork_and_wait():
        pid = os.fork()
        if pid == 0:
            # This thread is the child's main thread now: Ctrl-C reaches it.
            print(os.getpid(), flush=True)
            try:
                s.wait(s.version)
            except KeyboardInterrupt:
                os._exit(3)
            os._exit(0)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)

    t = threading.Thread(target=fork_and_wait)
    t.start()
    t.join()
"""


def test_ctrl_c_interrupts_a_wait_in_a_child_forked_from_a_thread(client, daemon):
    """pybridge knows the main thread (where signals are handled) without
    asking `threading` at each call: after os.fork() from another thread, the
    child's main thread is the forking one, and its waits must still wake
    for Ctrl-C."""
    client.create("w", (1,), "uint8")
    child = popen_child(PY_FORKED_FROM_A_THREAD, daemon, "w")
    waiter = None
    try:
        waiter = int(child.stdout.readline())
        wait_until_blocked_in_futex(waiter)
        os.kill(waiter, signal.SIGINT)
        assert finish(child, timeout=10 * TIME_SCALE).strip() == "3"  # KeyboardInterrupt
    finally:
        if waiter:
            with contextlib.suppress(ProcessLookupError):
                os.kill(waiter, signal.SIGKILL)  # never left behind when the test fails
        kill(child)


def test_wait_on_a_segment_whose_name_was_destroyed_is_not_found(client, daemon):
    # (A wait in progress is ended the same way: segment_threads_test.cpp.)
    seg = client.create("w", (1,), "uint8")
    v = seg.version
    with pybridge.connect(daemon.socket) as other:
        other.destroy("w")
    with pytest.raises(pybridge.NotFound, match="destroyed"):
        seg.wait(v, timeout=30)
    # The mapping stays valid, and a version already newer is still returned.
    seg.array[0] = 1
    new = seg.mark_changed()
    assert seg.wait(v, timeout=0) == new
    with pytest.raises(pybridge.NotFound):
        seg.wait(new, timeout=0)
