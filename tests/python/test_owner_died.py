# SPDX-License-Identifier: MIT
"""A writer SIGKILLed while holding the writer lock: the next writer (in
another process, or this one) gets the lock within 100 ms, is told
(owner_died + OwnerDiedWarning), and the dead write never became a version.
"""
import json
import signal
import time

import pytest

import pybridge
from conftest import TIME_SCALE
from mut_helpers import expect_line, finish, kill, popen_child, popen_peer, send

HANDOVER_LIMIT_S = 0.100 * TIME_SCALE

PY_HOLDER = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    w = s.write()
    a = w.array
    a[: a.size // 2] = int(sys.argv[3])       # half done...
    print("locked", flush=True)
    sys.stdin.read()                          # ...and SIGKILLed here
"""

PY_NEXT_WRITER = """
    import json, sys, time, warnings, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    print("trying", flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w = s.write(timeout=30)               # blocks until the holder dies
    at = time.monotonic()                     # CLOCK_MONOTONIC: comparable across processes
    print(json.dumps({"at": at, "owner_died": w.owner_died, "version": s.version,
                      "warnings": [x.category.__name__ for x in caught],
                      "values": w.array.tolist()}), flush=True)
    sys.stdin.readline()
    print(w.commit(), flush=True)
"""


def start_holder(kind, daemon, name, value):
    if kind == "cpp":
        holder = popen_peer(daemon, "lock-and-hang", name, value)
    else:
        holder = popen_child(PY_HOLDER, daemon, name, value)
    expect_line(holder, "locked")
    return holder


def prepared_segment(client):
    seg = client.create("locked", (10,), "int64")
    with seg.write() as arr:
        arr[:] = 1
    return seg


def assert_held_by_someone_mid_write(seg):
    with pytest.raises(pybridge.Timeout):
        seg.write(timeout=0.05)
    with pytest.raises(pybridge.Timeout):  # a write is in progress
        seg.snapshot(timeout=0.05)
    with pytest.raises(pybridge.TornRead):
        with seg.read():
            pass


@pytest.mark.parametrize("holder_kind", ["cpp", "python"])
def test_waiting_process_gets_the_lock_of_a_killed_holder(client, daemon, holder_kind):
    seg = prepared_segment(client)
    holder = start_holder(holder_kind, daemon, "locked", 7)
    next_writer = popen_child(PY_NEXT_WRITER, daemon, "locked")
    try:
        assert_held_by_someone_mid_write(seg)
        expect_line(next_writer, "trying")
        killed_at = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        got = json.loads(next_writer.stdout.readline())
        handover = got["at"] - killed_at
        assert 0 <= handover < HANDOVER_LIMIT_S, f"lock handed over after {handover * 1e3:.1f} ms"
        assert got["owner_died"] is True
        assert got["warnings"] == ["OwnerDiedWarning"]
        assert got["version"] == 1, "the killed write must not be a version"
        assert got["values"] == [7] * 5 + [1] * 5  # its half-done bytes are still there
        # Until the new writer finishes, the segment still reads as mid-write.
        with pytest.raises(pybridge.Timeout):
            seg.snapshot(timeout=0.05)
        send(next_writer, "commit")
        assert int(finish(next_writer)) == 2
    finally:
        kill(holder)
        kill(next_writer)
    assert holder.returncode == -signal.SIGKILL
    assert seg.version == 2
    assert seg.snapshot().tolist() == [7] * 5 + [1] * 5
    with seg.read():
        pass  # consistent again


@pytest.mark.parametrize("holder_kind", ["cpp", "python"])
def test_this_process_gets_the_lock_of_a_killed_holder(client, daemon, holder_kind):
    seg = prepared_segment(client)
    holder = start_holder(holder_kind, daemon, "locked", 7)
    try:
        assert_held_by_someone_mid_write(seg)
        killed_at = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        with pytest.warns(pybridge.OwnerDiedWarning, match="died holding"):
            guard = seg.write(timeout=5)
        handover = time.monotonic() - killed_at
    finally:
        kill(holder)
    assert handover < HANDOVER_LIMIT_S, f"lock handed over after {handover * 1e3:.1f} ms"
    assert guard.owner_died
    assert seg.version == 1
    # Aborting the recovered write also ends the dead writer's "in progress".
    guard.abort()
    assert seg.version == 1
    snap, version = seg.snapshot(timeout=5, with_version=True)
    assert version == 1 and snap.tolist() == [7] * 5 + [1] * 5
    # The lock is healthy again: the next writer is not told of a death.
    with seg.write(timeout=5):
        pass
    assert seg.version == 2


def test_writer_blocked_in_a_thread_wakes_when_the_holder_is_killed(client, daemon):
    """The next writer is blocked in write() (GIL released, no signal slices:
    not the main thread) when the holder dies: the kernel wakes it."""
    import threading

    seg = prepared_segment(client)
    holder = start_holder("cpp", daemon, "locked", 3)
    result = {}

    def blocked_writer():
        with pytest.warns(pybridge.OwnerDiedWarning):
            guard = seg.write(timeout=30)
        result["at"] = time.monotonic()
        result["owner_died"] = guard.owner_died
        guard.commit()

    t = threading.Thread(target=blocked_writer)
    t.start()
    killed_at = time.monotonic()
    holder.send_signal(signal.SIGKILL)
    t.join(timeout=30)
    kill(holder)
    assert result["owner_died"] is True
    assert result["at"] - killed_at < HANDOVER_LIMIT_S
    assert seg.version == 2
