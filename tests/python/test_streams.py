# SPDX-License-Identifier: MIT
"""Streams from Python (README, Streams): create/open/subscribe, loans and
frames, the held-slot promise (checked by content), faults (SIGKILLed
subscribers and publishers), bad input, and one publisher with three
readers (two Python, one C++) in separate processes for 100,000 frames in
each overflow/mode. Processes hand off through lines they print, never
sleeps."""
import json
import os
import subprocess
import threading
import time

import numpy as np
import pytest

import pybridge
from conftest import TIME_SCALE, binary
from mut_helpers import (assert_ctrl_c_ends, expect_line, finish, kill, popen_child,
                         wait_until_blocked_in_futex)

WORDS = 512  # a 4 KiB frame of uint64


def make(client, name="cam", slots=8, overflow="drop_oldest", **kw):
    return client.create_stream(name, (WORDS,), "uint64", slots=slots, overflow=overflow, **kw)


def publish_seq(stream, timeout=None):
    """Publishes one frame filled with the seq it gets."""
    with stream.publish(timeout=timeout) as loan:
        loan.array[...] = loan.seq
        return loan.seq


def uniform(array, value):
    return bool((array == value).all())


# ---- the API ----------------------------------------------------------------------

def test_publish_and_receive_zero_copy(client):
    cam = client.create_stream("cam", (4, 6, 3), "uint8", slots=4, overflow="block",
                               meta={"fps": 60})
    assert (cam.name, cam.shape, cam.dtype, cam.slots, cam.overflow) == \
        ("cam", (4, 6, 3), np.dtype(np.uint8), 4, "block")
    assert cam.meta == {"fps": 60} and cam.head == 0 and cam.nbytes == 72
    assert "slots=4" in repr(cam) and "overflow=block" in repr(cam)
    info = client.info("cam")
    assert info["kind"] == "stream" and info["stream"]["slots"] == 4
    assert cam.info()["stream"]["overflow"] == "block"

    sub = client.subscribe("cam", mode="all")
    assert (sub.name, sub.mode, sub.shape, sub.dtype) == ("cam", "all", (4, 6, 3), np.uint8)
    image = np.arange(72, dtype=np.uint8).reshape(4, 6, 3)
    before = time.time()
    with cam.publish() as frame:
        assert frame.seq == 1 and frame.active and not frame.owner_died
        frame.array[...] = image
        assert frame.array.flags.c_contiguous and frame.array.flags.writeable
        frame.meta = {"t": 12.5}
    assert frame.published and not frame.active and cam.head == 1
    with pytest.raises(pybridge.Closed):
        frame.array

    with sub.next(timeout=10.0) as got:
        assert got.seq == 1 and got.dropped == 0 and got.meta == {"t": 12.5}
        assert before - 1 <= got.time <= time.time() + 1
        assert got.time == got.time_ns / 1e9
        np.testing.assert_array_equal(got.array, image)
        assert not got.array.flags.writeable
        with pytest.raises(ValueError):
            got.array[0, 0, 0] = 1
        assert "seq=1" in repr(got)
    assert not got.held and got.meta == {"t": 12.5}  # meta outlives the hold
    with pytest.raises(pybridge.Closed):
        got.array

    # Explicit publish/abort, publish_from, and the totals.
    loan = cam.publish(timeout=1.0)
    loan.array[...] = 3
    assert loan.publish() == 2
    loan = cam.publish()
    loan.abort()
    assert not loan.published and cam.head == 2
    loan.abort()  # idempotent
    with pytest.raises(pybridge.Closed):
        loan.publish()
    assert cam.publish_from(image[::-1], meta={"k": 1}) == 3  # any layout, one copy
    assert [f.seq for f in (sub.next(1.0), sub.next(1.0))] == [2, 3]
    assert sub.received == 3 and sub.dropped == 0
    assert "received=3" in repr(sub)
    with pytest.raises(pybridge.Timeout):
        sub.next(timeout=0.05)
    sub.close()
    assert sub.closed
    with pytest.raises(pybridge.Closed):
        sub.next()
    cam.close()
    assert cam.closed and "closed" in repr(cam)
    with pytest.raises(pybridge.Closed):
        cam.publish()


def test_open_stream_continues_the_sequence_and_latest_skips(client):
    with make(client) as cam:
        publish_seq(cam)
    with client.open_stream("cam") as again:
        assert again.head == 1 and again.slots == 8
        sub = client.subscribe("cam", mode="latest")
        # A late joiner starts at the newest frame, at once.
        frame = sub.next(timeout=0)
        assert (frame.seq, frame.dropped) == (1, 0)
        for _ in range(4):
            publish_seq(again)
        frame = sub.next(timeout=1.0)  # latest jumps to 5, counting 2..4 as dropped
        assert (frame.seq, frame.dropped) == (5, 3) and uniform(frame.array, 5)
        assert sub.dropped == 3 and sub.mode == "latest"
    history = client.subscribe("cam", history=2)
    assert [history.next(1.0).seq for _ in range(3)] == [3, 4, 5]


def test_exception_inside_publish_publishes_nothing(client):
    cam = make(client)
    sub = client.subscribe("cam")
    with pytest.raises(RuntimeError, match="camera fell off"):
        with cam.publish() as loan:
            loan.array[...] = 99
            raise RuntimeError("camera fell off")
    assert cam.head == 0 and not loan.active and not loan.published
    with pytest.raises(pybridge.Timeout):
        sub.next(timeout=0.05)
    assert publish_seq(cam) == 1  # the seq was not used up
    frame = sub.next(timeout=1.0)
    assert frame.seq == 1 and uniform(frame.array, 1)


def test_iteration_ends_when_the_stream_is_destroyed_and_drained(client):
    cam = make(client)
    sub = client.subscribe("cam")
    for _ in range(3):
        publish_seq(cam)
    client.destroy("cam")
    seen = [(frame.seq, uniform(frame.array, frame.seq)) for frame in sub]
    assert seen == [(1, True), (2, True), (3, True)]


def test_close_from_another_thread_ends_iteration(client):
    make(client)
    sub = client.subscribe("cam")
    outcome = []
    tid = []
    started = threading.Event()

    def read():
        tid.append(threading.get_native_id())
        started.set()
        outcome.extend(frame.seq for frame in sub)
        outcome.append(time.monotonic())

    t = threading.Thread(target=read)
    t.start()
    assert started.wait(timeout=30)
    wait_until_blocked_in_futex(os.getpid(), tid[0])
    closed_at = time.monotonic()
    sub.close()
    t.join(timeout=10 * TIME_SCALE)
    assert not t.is_alive() and len(outcome) == 1
    assert outcome[0] - closed_at < 1.0 * TIME_SCALE
    assert sub.closed
    with pytest.raises(pybridge.Closed):
        sub.next(timeout=0)


def test_a_loan_dropped_on_another_thread_warns_and_passes_on(client):
    """The publisher lock cannot be unlocked off its thread: the dropped loan
    warns, and once its thread ends the next publisher gets the lock with
    owner_died and the frame is discarded."""
    cam = make(client)
    sub = client.subscribe("cam")
    loans = []
    t = threading.Thread(target=lambda: loans.append(cam.publish()))
    t.start()
    t.join()
    with pytest.warns(RuntimeWarning, match="another thread"):
        loans.clear()
    with cam.publish(timeout=10) as loan:
        assert loan.owner_died and loan.seq == 1
        loan.array[...] = 1
    frame = sub.next(timeout=1.0)
    assert frame.seq == 1 and uniform(frame.array, 1) and frame.dropped == 0


def test_a_held_frame_is_never_rewritten(client):
    cam = make(client, slots=3)
    sub = client.subscribe("cam")
    publish_seq(cam)
    held = sub.next(timeout=1.0)
    for _ in range(50):  # the ring wraps many times around the held slot
        publish_seq(cam)
    assert held.seq == 1 and uniform(held.array, 1)
    newest = sub.next(timeout=1.0)
    assert newest.seq > 1 and uniform(newest.array, newest.seq)
    held.release()
    newest.release()


def test_a_forked_child_never_releases_its_parents_frames(client):
    """A child of fork() has copies of its parent's subscription and frames:
    dropping them there must not let the parent's held frame be rewritten."""
    cam = make(client, slots=3)
    sub = client.subscribe("cam")
    publish_seq(cam)
    held = sub.next(timeout=1.0)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            try:
                sub.next(timeout=0)
                code = 3
            except pybridge.Closed:
                pass
            held.release()
            sub.close()
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    for _ in range(50):
        publish_seq(cam)
    assert held.seq == 1 and uniform(held.array, 1)
    held.release()


def test_the_array_keeps_the_slot_held_after_release(client):
    """slots=2: two frames held by their arrays alone fill the ring, so the
    publisher times out until one array goes."""
    cam = make(client, slots=2)
    sub = client.subscribe("cam")
    publish_seq(cam)
    frame = sub.next(timeout=1.0)
    first = frame.array
    frame.release()
    view = first[10:20]  # a view holds the slot too
    del first
    publish_seq(cam)
    with sub.next(timeout=1.0) as frame:
        second = frame.array
    assert not frame.held
    with pytest.raises(pybridge.Timeout, match="hold every slot"):
        cam.publish(timeout=0.1)
    assert uniform(view, 1) and uniform(second, 2)
    del second
    assert publish_seq(cam, timeout=1.0) == 3
    assert uniform(view, 1)  # the slot the view holds was not the one reused
    del view
    assert publish_seq(cam, timeout=1.0) == 4


def test_loan_rules(client):
    cam = make(client)
    with cam.publish() as loan:
        with pytest.raises(pybridge.InvalidArgument, match="holds a loan"):
            cam.publish(timeout=0)
        with pytest.raises(pybridge.InvalidArgument, match="4096"):
            loan.meta = {"x": "y" * 5000}
        with pytest.raises(pybridge.InvalidArgument):
            loan.meta = {"x": object()}
        loan.meta = {"ok": True}
        assert loan.meta == {"ok": True}
        array = loan.array
    assert not array.flags.writeable  # the slot is the subscribers' now
    # A loan must end on its own thread.
    loan = cam.publish()
    errors = []
    t = threading.Thread(target=lambda: errors.append(_catch(loan.publish)))
    t.start()
    t.join()
    assert isinstance(errors[0], pybridge.InvalidArgument) and loan.active
    assert loan.publish() == 2
    # Dropped while active, a loan publishes (as a C++ Loan leaving its scope).
    loan = cam.publish()
    loan.array[...] = 7
    loan.meta = {"dropped": True}
    del loan
    assert cam.head == 3
    sub = client.subscribe("cam")
    frame = sub.next(timeout=1.0)
    assert frame.seq == 3 and frame.meta == {"dropped": True} and uniform(frame.array, 7)


def _catch(fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - handed to the test thread
        return exc
    return None


def test_bad_input(client):
    for slots in (0, 1, 1025):
        with pytest.raises(pybridge.InvalidArgument):
            make(client, slots=slots)
    for slots in ("8", 2.0, True, -1):
        with pytest.raises(pybridge.InvalidArgument, match="slots"):
            make(client, slots=slots)
    with pytest.raises(pybridge.InvalidArgument, match="overflow must be 'drop_oldest' or 'block'"):
        make(client, overflow="newest")
    assert client.list() == []

    cam = make(client)
    with pytest.raises(pybridge.InvalidArgument, match="mode must be 'all' or 'latest'"):
        client.subscribe("cam", mode="newest")
    with pytest.raises(pybridge.InvalidArgument, match="history"):
        client.subscribe("cam", history=-1)
    with pytest.raises(pybridge.NotFound):
        client.subscribe("nothing")
    with pytest.raises(pybridge.AlreadyExists):
        make(client)
    with pytest.raises(pybridge.InvalidArgument, match="shape"):
        cam.publish_from(np.zeros(WORDS - 1, np.uint64))
    with pytest.raises(pybridge.InvalidArgument, match="shape"):
        cam.publish_from(np.zeros((1, WORDS), np.uint64))  # no broadcasting
    with pytest.raises(pybridge.TypeMismatch):
        cam.publish_from(np.zeros(WORDS, np.int64))
    with pytest.raises(pybridge.InvalidArgument):
        cam.publish_from(np.zeros(WORDS, np.uint64), meta={"x": "y" * 5000})
    assert cam.head == 0
    with pytest.raises(pybridge.InvalidArgument, match="timeout"):
        cam.publish(timeout=-1)

    # Kinds never mix.
    client.create("plain", (4,), "uint8")
    with pytest.raises(pybridge.InvalidArgument, match="not a stream|is a segment|segment"):
        client.subscribe("plain")
    with pytest.raises(pybridge.InvalidArgument):
        client.open_stream("plain")
    with pytest.raises(pybridge.InvalidArgument, match="stream"):
        client.attach("cam")


def test_a_subscription_holds_at_most_eight_frames(client):
    cam = make(client, slots=16)
    sub = client.subscribe("cam")
    for _ in range(9):
        publish_seq(cam)
    held = [sub.next(timeout=1.0) for _ in range(8)]
    with pytest.raises(pybridge.LimitExceeded):
        sub.next(timeout=1.0)
    held.pop(0).release()
    assert sub.next(timeout=1.0).seq == 9


# ---- faults, across processes ---------------------------------------------------------

PY_HOLDER = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    sub = c.subscribe(sys.argv[2])
    print("ready", flush=True)
    held = [sub.next(timeout=30) for _ in range(2)]
    print("holding", [f.seq for f in held], flush=True)
    sys.stdin.read()
"""


def test_sigkilled_reader_holding_frames_does_not_stall_a_block_publisher(client, daemon):
    cam = make(client, slots=4, overflow="block")
    reader = popen_child(PY_HOLDER, daemon, "cam")
    try:
        expect_line(reader, "ready")
        for _ in range(4):
            publish_seq(cam, timeout=5)
        expect_line(reader, "holding [1, 2]")
        # Frames 1 and 2 are held, 3 is not taken yet: no room.
        with pytest.raises(pybridge.Timeout, match="has not taken seq 3"):
            cam.publish(timeout=0.2)
        reader.kill()
        reader.wait(timeout=30)
        started = time.monotonic()
        assert publish_seq(cam, timeout=10) == 5
        assert time.monotonic() - started < 1.0 * TIME_SCALE
        for _ in range(20):  # nobody is left to wait for
            publish_seq(cam, timeout=1.0)
    finally:
        kill(reader)


PY_DIES_MID_LOAN = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    cam = c.open_stream(sys.argv[2])
    for _ in range(3):
        with cam.publish() as loan:
            loan.array[...] = loan.seq
    loan = cam.publish()
    loan.array[: loan.array.size // 2] = 999
    print("loaned", loan.seq, flush=True)
    sys.stdin.read()
"""


def test_sigkilled_publisher_mid_loan(client, daemon):
    cam = make(client, slots=8)  # room for every frame: nothing is dropped
    sub = client.subscribe("cam")
    child = popen_child(PY_DIES_MID_LOAN, daemon, "cam")
    try:
        expect_line(child, "loaned 4")
        with pytest.raises(pybridge.Timeout, match="another publisher"):
            cam.publish(timeout=0)
        child.kill()
        child.wait(timeout=30)
    finally:
        kill(child)
    with cam.publish(timeout=10) as loan:
        assert loan.owner_died and loan.seq == 4
        loan.array[...] = 4
    assert publish_seq(cam) == 5
    seen = []
    while True:
        try:
            frame = sub.next(timeout=0.2)
        except pybridge.Timeout:
            break
        assert uniform(frame.array, frame.seq), f"half-written frame {frame.seq}"
        seen.append(frame.seq)
        frame.release()
    assert seen == [1, 2, 3, 4, 5] and sub.dropped == 0


PY_BLOCKED = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    if sys.argv[3] == "next":
        sub = c.subscribe(sys.argv[2])
        print("blocking", flush=True)
        sub.next()
    else:
        cam = c.open_stream(sys.argv[2])
        print("blocking", flush=True)
        cam.publish()
"""


@pytest.mark.parametrize("call", ["next", "publish"])
def test_ctrl_c_interrupts_a_blocked_main_thread(client, daemon, call):
    cam = make(client, slots=2, overflow="block")
    sub = client.subscribe("cam")
    if call == "publish":  # a full ring nobody reads: publish() waits for room
        publish_seq(cam)
        publish_seq(cam)
    child = popen_child(PY_BLOCKED, daemon, "cam", call)
    try:
        expect_line(child, "blocking")
        assert_ctrl_c_ends(child)
    finally:
        kill(child)
    assert cam.head == (2 if call == "publish" else 0) and sub.received == 0


def test_next_releases_the_gil(client):
    cam = make(client)
    sub = client.subscribe("cam")
    got = []
    t = threading.Thread(target=lambda: got.append(sub.next(timeout=30).seq))
    t.start()
    spins = sum(1 for _ in range(200_000))  # Python code: needs the GIL
    publish_seq(cam)
    t.join(timeout=30)
    assert got == [1] and spins == 200_000


# ---- one publisher, three readers, 100,000 frames ---------------------------------------

FRAMES = 100_000

PY_READER = """
    import json, sys, pybridge
    c = pybridge.connect(sys.argv[1])
    sub = c.subscribe(sys.argv[2], mode=sys.argv[3])
    last_wanted = int(sys.argv[4])
    print("ready", flush=True)
    received = first = last = gaps = dropped = 0
    mixed = not_increasing = dropped_mismatch = 0
    for frame in sub:
        with frame:
            seq = frame.seq
            a = frame.array
            if a[0] != seq or not (a == seq).all():
                mixed += 1
            if seq <= last:
                not_increasing += 1
            else:
                skipped = seq - last - 1
                gaps += skipped
                if frame.dropped != skipped:
                    dropped_mismatch += 1
            if received == 0:
                first = seq
            received += 1
            dropped += frame.dropped
            last = max(last, seq)
        if last >= last_wanted:
            break
    print(json.dumps({"received": received, "first": first, "last": last, "gaps": gaps,
                      "dropped": dropped, "sub_dropped": sub.dropped,
                      "sub_received": sub.received, "mixed": mixed,
                      "not_increasing": not_increasing,
                      "dropped_mismatch": dropped_mismatch}))
"""

PY_PUBLISHER = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    cam = c.open_stream(sys.argv[2])
    for _ in range(int(sys.argv[3])):
        with cam.publish(timeout=60) as loan:
            loan.array[...] = loan.seq
    print(cam.head, flush=True)
"""


@pytest.mark.parametrize("overflow,mode", [("block", "all"), ("drop_oldest", "all"),
                                           ("drop_oldest", "latest")])
def test_one_publisher_three_readers(client, daemon, overflow, mode):
    make(client, slots=8, overflow=overflow)
    readers = [popen_child(PY_READER, daemon, "cam", mode, FRAMES) for _ in range(2)]
    readers.append(subprocess.Popen(
        [binary("bridge_stream_reader"), "--socket", daemon.socket, "cam", mode, str(FRAMES)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    publisher = None
    try:
        for reader in readers:  # every reader is subscribed before the first frame
            expect_line(reader, "ready")
        started = time.monotonic()
        publisher = popen_child(PY_PUBLISHER, daemon, "cam", FRAMES)
        assert finish(publisher, timeout=300 * TIME_SCALE).strip() == str(FRAMES)
        summaries = [json.loads(finish(reader, timeout=120 * TIME_SCALE)) for reader in readers]
        elapsed = time.monotonic() - started
    finally:
        for proc in (*readers, publisher):
            if proc:
                kill(proc)
    for who, s in zip(("python", "python", "c++"), summaries):
        assert s["mixed"] == 0, (who, s)
        assert s["not_increasing"] == 0, (who, s)
        assert s["last"] == FRAMES, (who, s)
        # Every skipped seq is reported as dropped, exactly, frame by frame.
        assert s["dropped_mismatch"] == 0, (who, s)
        assert s["dropped"] == s["gaps"] == s["sub_dropped"], (who, s)
        assert s["received"] + s["gaps"] == FRAMES, (who, s)
        assert s["sub_received"] == s["received"], (who, s)
        if overflow == "block":
            assert s["received"] == FRAMES and s["first"] == 1 and s["gaps"] == 0, (who, s)
    print(f"{overflow}/{mode}: {FRAMES} frames in {elapsed:.1f} s; "
          f"received {[s['received'] for s in summaries]}")
