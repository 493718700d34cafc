# SPDX-License-Identifier: MIT
"""Client.events(): the daemon's events as an iterator of dicts, with
next(timeout), close() from another thread, the GIL released and Ctrl-C
honoured while blocked."""
import os
import signal
import threading
import time

import pytest

import pybridge
from conftest import TIME_SCALE, Daemon, run_peer
from mut_helpers import expect_line, kill, popen_child, wait_until_blocked_in
from pb_helpers import run_python

FIELDS = {"event", "name", "segment_id", "version", "meta_version", "pid", "time_unix_ms"}


def next_event(events):
    event = events.next(timeout=30)
    assert event is not None, "no event within 30 s"
    assert set(event) == FIELDS
    return event


def test_lifecycle_events_with_pids_and_versions(client, daemon):
    with client.events() as events:
        assert events.name is None and not events.closed
        seg = client.create("ev", (2,), "int64", meta={"v": 1})
        created = next_event(events)
        assert created["event"] == "created" and created["name"] == "ev"
        assert created["segment_id"] == seg.id and created["version"] == 0

        peer_commit = run_peer(daemon, "write", "ev", 5)
        committed = next_event(events)
        assert committed["event"] == "committed" and committed["version"] == 1
        assert int(peer_commit.stdout) == 1
        assert committed["pid"] not in (0, daemon.proc.pid)  # the C++ writer's pid

        with seg.write() as arr:
            arr[:] = 6
        committed = next_event(events)
        assert committed["event"] == "committed" and committed["version"] == 2
        assert seg.last_writer_pid == committed["pid"]

        client.set_meta("ev", {"v": 2})
        changed = next_event(events)
        assert changed["event"] == "meta_changed" and changed["meta_version"] == 2

        seg.close()
        client.destroy("ev")
        destroyed = next_event(events)
        assert destroyed["event"] == "destroyed" and destroyed["segment_id"] == seg.id
        assert abs(destroyed["time_unix_ms"] / 1000 - time.time()) < 60
    assert events.closed


def test_name_filter_and_timeout(client):
    with client.events("wanted") as events:
        assert events.name == "wanted"
        client.create("other", (1,), "uint8").mark_changed()
        client.create("wanted", (1,), "uint8")
        assert next_event(events)["name"] == "wanted"  # "other" never shows up
        start = time.monotonic()
        with pytest.raises(pybridge.Timeout):
            events.next(timeout=0.3)
        assert 0.3 <= time.monotonic() - start < 2 * TIME_SCALE
        with pytest.raises(pybridge.Timeout):
            events.next(timeout=0)


def test_stream_outlives_its_client(client, daemon):
    other = pybridge.connect(daemon.socket)
    events = other.events()
    other.close()  # the stream has a connection of its own
    client.create("ev", (1,), "uint8")
    assert next_event(events)["event"] == "created"
    events.close()


def test_close_from_another_thread_ends_iteration(client):
    events = client.events()
    seen = []
    got_one = threading.Event()

    def reader():
        for event in events:
            seen.append(event)
            got_one.set()

    t = threading.Thread(target=reader)
    t.start()
    client.create("ev", (1,), "uint8")
    assert got_one.wait(timeout=30)
    wait_until_blocked_in("ppoll", os.getpid(), t.native_id)  # waiting for the next one
    closed_at = time.monotonic()
    events.close()
    t.join(timeout=30)
    assert not t.is_alive() and time.monotonic() - closed_at < 1 * TIME_SCALE
    assert [e["event"] for e in seen] == ["created"]
    with pytest.raises(pybridge.Closed):
        events.next(timeout=0)
    assert list(events) == []


def test_one_reader_at_a_time(client):
    events = client.events()
    ended = []

    def reader():
        try:
            events.next(timeout=30)
        except pybridge.Closed:
            ended.append("closed")

    t = threading.Thread(target=reader)
    t.start()
    wait_until_blocked_in("ppoll", os.getpid(), t.native_id)
    with pytest.raises(pybridge.InvalidArgument, match="another thread"):
        events.next(timeout=0)
    events.close()
    t.join(timeout=30)
    assert ended == ["closed"]


def test_stream_outlives_a_daemon_restart_and_says_it_reconnected(client, daemon):
    events = client.events("ev")
    daemon.stop()
    with pytest.raises(pybridge.Timeout):  # nobody answers; it keeps trying meanwhile
        events.next(timeout=0.3)
    assert not events.closed
    again = Daemon(daemon.directory)
    try:
        back = events.next(timeout=30)
        assert back["event"] == "reconnected"
        assert back["name"] == "ev" and back["pid"] == again.proc.pid
        assert events.reconnects == 1
        with pybridge.connect(again.socket) as other:
            other.create("ev", (1,), "uint8")
            created = events.next(timeout=30)
            assert (created["event"], created["name"]) == ("created", "ev")
            other.destroy("ev")
        events.close()
    finally:
        assert again.stop() == 0, again.log()


def test_waiting_for_events_releases_the_gil(daemon):
    """Run in a child so that a held GIL fails by timeout instead of hanging."""
    out = run_python("""
        import sys, threading, pybridge
        c = pybridge.connect(sys.argv[1])
        events = c.events()
        got, arrived = [], threading.Event()
        def reader():
            for event in events:
                got.append(event)
                arrived.set()
        t = threading.Thread(target=reader)
        t.start()
        spins = sum(1 for _ in range(200_000))  # Python code: needs the GIL
        c.create("ev", (1,), "uint8")
        arrived.wait()
        events.close()
        t.join()
        print(got[0]["event"], spins)
    """, daemon.socket, timeout=60)
    assert out.stdout.split() == ["created", "200000"]


PY_ITERATE = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    print("iterating", flush=True)
    for event in c.events():
        pass
"""


def test_ctrl_c_interrupts_iteration(daemon):
    child = popen_child(PY_ITERATE, daemon)
    try:
        expect_line(child, "iterating")
        wait_until_blocked_in("ppoll", child.pid)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)
        assert child.returncode != 0 and "KeyboardInterrupt" in err, err
    finally:
        kill(child)
