# SPDX-License-Identifier: MIT
"""Segment.write / commit / snapshot / read in one process, and the writer
lock across processes: two writers x 10,000 locked increments."""
import gc
import os
import threading
import time
import warnings

import numpy as np
import pytest

import pybridge
from conftest import run_peer
from mut_helpers import expect_line, finish, popen_child, popen_peer, send

INCREMENTS = 10_000


def test_write_commits_one_version_and_records_the_writer(client):
    seg = client.create("m", (4,), "int32")
    assert seg.version == 0
    assert seg.last_writer_pid is None and seg.last_commit_time is None
    before = time.time()
    guard = seg.write()
    with guard as arr:
        assert arr.flags.writeable and not arr.flags.owndata
        arr[:] = [1, 2, 3, 4]
    assert guard.version == 1 and not guard.active
    assert seg.version == 1
    assert seg.array.tolist() == [1, 2, 3, 4]
    assert seg.last_writer_pid == os.getpid()
    assert before - 1 <= seg.last_commit_time <= time.time() + 1


def test_exception_aborts_the_write_and_propagates(client):
    seg = client.create("m", (3,), "float64")
    with pytest.raises(KeyError):
        with seg.write() as arr:
            arr[0] = 5.0
            raise KeyError("boom")
    assert seg.version == 0          # no new version for the aborted write
    assert seg.array[0] == 5.0       # (its bytes stay: there is no undo)
    with seg.write(timeout=0):       # and the lock was released
        pass
    assert seg.version == 1


def test_explicit_commit_and_abort(client):
    seg = client.create("m", (2,), "uint8")
    guard = seg.write()
    guard.array[:] = 9
    assert guard.commit() == 1
    with pytest.raises(pybridge.Closed):
        guard.commit()
    with pytest.raises(pybridge.Closed):
        guard.array  # noqa: B018 (the array of an ended write is refused)
    guard.abort()  # no-op once ended
    guard = seg.write()
    guard.abort()
    assert seg.version == 1 and not guard.active
    guard = seg.write()
    with guard:
        guard.commit()  # ending inside the block is allowed too
    assert seg.version == 2


def test_guard_dropped_while_held_commits_and_unlocks_as_in_cpp(client):
    # The one rule of both languages: a write ends with a commit unless an
    # exception ends it (C++: ~WriteGuard on a normal scope exit commits).
    seg = client.create("m", (2,), "uint8")
    guard = seg.write()
    guard.array[:] = 1
    del guard
    gc.collect()
    assert seg.version == 1
    assert seg.snapshot().tolist() == [1, 1]
    seg.write(timeout=0).commit()
    assert seg.version == 2


def test_commit_without_lock(client, daemon):
    seg = client.create("m", (2,), "uint8")
    assert seg.mark_changed() == 1
    assert seg.mark_changed() == 2 and seg.version == 2
    assert seg.last_writer_pid == os.getpid()
    assert run_peer(daemon, "mark_changed", "m", 3).stdout.strip() == "5"
    assert seg.version == 5
    assert seg.last_writer_pid not in (None, os.getpid())  # the peer's


def test_cpp_locked_write_is_seen_with_its_version(client, daemon):
    seg = client.create("m", (3,), "int64")
    assert run_peer(daemon, "write", "m", 42).stdout.strip() == "1"
    snap, version = seg.snapshot(with_version=True)
    assert version == 1 and snap.tolist() == [42, 42, 42]


def test_read_array_is_read_only_and_not_a_copy(client):
    seg = client.create("m", (3,), "int16")
    with seg.read() as arr:
        assert not arr.flags.writeable
        with pytest.raises(ValueError):
            arr[0] = 1
        seg.array[1] = 7  # a write that skips the lock: seen, and not detected
        assert arr[1] == 7
    reader = seg.read()
    assert reader.version == 0 and reader.consistent


def test_read_reports_an_overlapping_locked_write(client):
    seg = client.create("m", (3,), "int16")
    with pytest.raises(pybridge.TornRead):
        with seg.read():
            with seg.write() as arr:
                arr[:] = 1
    # An exception inside the block is not masked by the check.
    with pytest.raises(ZeroDivisionError):
        with seg.read():
            seg.write().commit()
            1 / 0


def test_snapshot_is_a_private_copy_with_its_version(client):
    seg = client.create("m", (2, 3), "float32")
    with seg.write() as arr:
        arr[...] = np.arange(6).reshape(2, 3)
    snap, version = seg.snapshot(with_version=True)
    assert version == 1
    assert snap.shape == (2, 3) and snap.dtype == np.float32
    assert snap.flags.writeable and not np.shares_memory(snap, seg.array)
    seg.array[...] = -1
    np.testing.assert_array_equal(snap, np.arange(6).reshape(2, 3))
    assert isinstance(seg.snapshot(), np.ndarray)
    assert seg.snapshot().tolist() == [[-1] * 3] * 2


def test_empty_segment(client):
    seg = client.create("m", (0, 4), "complex128")
    assert seg.snapshot().shape == (0, 4)
    with seg.write() as arr:
        assert arr.shape == (0, 4)
    with seg.read() as arr:
        assert arr.size == 0


def test_nested_write_on_one_thread_is_refused_not_a_deadlock(client):
    seg = client.create("m", (1,), "uint8")
    other = client.attach("m")  # another attachment shares the same lock
    with seg.write():
        with pytest.raises(pybridge.InvalidArgument, match="holds the writer lock"):
            other.write()
        # A snapshot waits for the write in progress to end: this one.
        with pytest.raises(pybridge.InvalidArgument, match="snapshot"):
            other.snapshot()
    assert seg.version == 1


def test_lock_excludes_other_threads_until_released(client):
    seg = client.create("m", (1,), "uint8")
    outcome = []
    saw_it_held = threading.Event()
    guard = seg.write()

    def contender():
        try:
            seg.write(timeout=0.05)
        except pybridge.Timeout:
            outcome.append("timeout")
        saw_it_held.set()
        with seg.write(timeout=30) as arr:  # gets it once the main thread commits
            outcome.append(int(arr[0]))

    t = threading.Thread(target=contender)
    t.start()
    assert saw_it_held.wait(timeout=30)
    guard.array[0] = 5
    guard.commit()
    t.join(timeout=30)
    assert outcome == ["timeout", 5]
    assert seg.version == 2


def test_write_must_end_on_its_thread(client):
    seg = client.create("m", (1,), "uint8")
    guard = seg.write()
    errors = []
    t = threading.Thread(target=lambda: errors.append(_raises(guard.commit)))
    t.start()
    t.join()
    assert errors == [pybridge.InvalidArgument]
    assert guard.active
    guard.commit()
    assert seg.version == 1


def _raises(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return type(exc)
    return None


def test_bad_timeouts_and_closed_segments(client):
    seg = client.create("m", (1,), "uint8")
    for bad in (-1, float("nan")):
        with pytest.raises(pybridge.InvalidArgument):
            seg.write(timeout=bad)
        with pytest.raises(pybridge.InvalidArgument):
            seg.wait(0, timeout=bad)
    with seg.write(timeout=float("inf")):
        pass
    seg.close()
    for call in (seg.write, seg.read, seg.snapshot, seg.mark_changed, lambda: seg.wait(0)):
        with pytest.raises(pybridge.Closed):
            call()


def test_owner_died_is_false_without_a_dead_holder(client):
    seg = client.create("m", (1,), "uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no OwnerDiedWarning
        guard = seg.write()
    assert guard.owner_died is False
    guard.commit()


# ---- two writers, 10,000 locked increments each -----------------------------------

PY_INCREMENT = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()                      # start together with the other writer
    for _ in range(int(sys.argv[3])):
        w = s.write()
        with w as a:
            v = int(a[0])                     # read, touch the rest, write: without
            a[1:] = v                         # the lock about 30% of the increments
            a[0] = v + 1                      # are lost on a 2-core machine
    print(w.version, flush=True)
"""


def start_incrementer(kind, daemon):
    if kind == "python":
        return popen_child(PY_INCREMENT, daemon, "counter", INCREMENTS)
    return popen_peer(daemon, "increment", "counter", INCREMENTS)


@pytest.mark.parametrize("kinds", [("python", "python"), ("python", "cpp")])
def test_two_writer_processes_never_lose_an_increment(client, daemon, kinds):
    seg = client.create("counter", (4,), "int64")
    seg.mark_changed()  # start from a version other than 0
    start = seg.version
    writers = [start_incrementer(kind, daemon) for kind in kinds]
    for w in writers:
        expect_line(w, "ready")
    for w in writers:
        send(w, "go")
    last_versions = [int(finish(w, timeout=300)) for w in writers]
    assert seg.array[0] == 2 * INCREMENTS
    assert seg.version == start + 2 * INCREMENTS
    # Each writer's last commit got a distinct version; the later one is the total.
    assert max(last_versions) == start + 2 * INCREMENTS
    assert len(set(last_versions)) == 2
    assert seg.snapshot().tolist() == [2 * INCREMENTS] + [2 * INCREMENTS - 1] * 3
