# SPDX-License-Identifier: MIT
"""The client's mapping cache: a name attached before is attached again with
no daemon round trip (shown by attaching while the daemon is SIGSTOPped),
and never from a stale mapping: after a destroy, a re-create, a grant change
(test_access_control.py: revoke and downgrade) or a daemon restart, the next
attach asks the daemon. The cache is bounded, releases idle mappings at its
next call, and the daemon's attached count stays exact. Its table in shared
memory is the daemon's alone: read-only in clients, and a scribbled table
costs a round trip, never a wrong mapping.
"""
import json
import os
import signal
import struct
import time
from pathlib import Path

import numpy as np
import pytest

import pybridge
from conftest import SLOT_TABLE, TIME_SCALE, Daemon
from crash_helpers import killed
from pb_helpers import shm_mapped

SLOT_TABLE_HEADER = 64
SLOT_BYTES = 16


class Stopped:
    """The daemon SIGSTOPped for the duration: any round trip would hang (the
    client's reply timeout is a minute), so what completes did not ask."""

    def __init__(self, daemon):
        self.pid = daemon.proc.pid

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


def table_path(daemon):
    return Path("/dev/shm") / (daemon.shm_prefix.lstrip("/") + SLOT_TABLE)


def test_reattach_needs_no_round_trip_and_sees_the_same_pages(daemon, client):
    seg = client.create("frames", (4,), "int32")
    seg.array[:] = [1, 2, 3, 4]
    seg.close()
    before = client.map_cache()
    with Stopped(daemon):
        for i in range(3):
            with client.attach("frames") as again:
                assert again.array.tolist() == [1 + 10 * i, 2, 3, 4]
                again.array[0] += 10
                assert again.version == 0
    after = client.map_cache()
    assert after["hits"] == before["hits"] + 3
    assert after["entries"] == 1
    # A fresh client (another connection) sees the write: the same pages.
    with pybridge.connect(daemon.socket) as other, other.attach("frames") as seen:
        assert seen.array.tolist() == [31, 2, 3, 4]
    client.destroy("frames")


def test_reattach_reports_the_current_version_and_metadata(daemon, client):
    with client.create("m", (2,), "uint8", meta={"a": 1}):
        pass
    writer = pybridge.connect(daemon.socket)
    with writer.attach("m") as w:
        w.mark_changed()
        w.mark_changed()
    writer.set_meta("m", {"a": 2})
    with client.attach("m") as again:
        # No round trip: a hit, or (for a direct create's entry, dropped once
        # the daemon adopted it) an attach that opens it again by name.
        stats = client.map_cache()
        assert stats["hits"] + stats["direct"] == 1
        assert again.version == 2
        assert again.meta == {"a": 2}
    writer.close()
    client.destroy("m")


def test_a_destroyed_name_is_never_served_from_the_cache(daemon, client):
    with client.create("gone", (4,), "uint8"):
        pass
    other = pybridge.connect(daemon.socket)
    other.destroy("gone")
    with pytest.raises(pybridge.NotFound):
        client.attach("gone")
    other.close()


def test_a_recreated_name_is_the_new_segment(daemon, client):
    with client.create("x", (4,), "uint8") as first:
        first.array[:] = 1
        first_id = first.id
    other = pybridge.connect(daemon.socket)
    other.destroy("x")
    with other.create("x", (2, 3), "float64") as second:
        second.array[:] = 7.5
        second_id = second.id
    with client.attach("x") as seen:
        assert seen.id == second_id != first_id
        assert seen.shape == (2, 3) and seen.dtype == np.float64
        assert seen.array.tolist() == [[7.5] * 3] * 2
    other.destroy("x")
    other.close()


def test_the_attached_count_stays_exact(daemon, client):
    with client.create("c", (4,), "uint8"):
        pass
    assert client.info("c")["attached"] == 0
    held = [client.attach("c") for _ in range(3)]
    stats = client.map_cache()
    assert stats["hits"] + stats["direct"] == 3  # no round trip (see above)
    # Another client asks: this one is counted (the count is of clients)
    # once it has spoken to the daemon again.
    client.list()
    with pybridge.connect(daemon.socket) as other:
        assert other.info("c")["attached"] == 1
        assert other.stats()["attachments"] == 1
    for h in held:
        h.close()
    assert client.info("c")["attached"] == 0
    # Attach-and-close from the cache, many times: nothing left counted.
    for _ in range(200):
        client.attach("c").close()
    assert client.info("c")["attached"] == 0
    client.destroy("c")


def test_closing_what_this_client_destroyed_sends_nothing(tmp_path):
    # The daemon forgets a destroyed segment and its attachments: a detach
    # for it would be a wasted wake-up per create/destroy cycle. The
    # daemon's request counter (notices included) shows what was sent, for
    # creates and destroys the daemon makes (direct ones send nothing at
    # all, test_direct_create.py).
    daemon = Daemon(tmp_path, "--no-direct-create")
    client = pybridge.connect(daemon.socket)
    try:
        check_closing_what_this_client_destroyed_sends_nothing(daemon, client)
    finally:
        client.close()
        assert daemon.stop() == 0


def check_closing_what_this_client_destroyed_sends_nothing(daemon, client):
    def requests_since(before):
        return client.stats()["requests"] - before - 1  # minus this stats

    before = client.stats()["requests"]
    for i in range(5):
        seg = client.create(f"d{i}", (4,), "uint8")
        client.destroy(f"d{i}")
        seg.close()
    assert requests_since(before) == 10  # 5 creates + 5 destroys, no detach
    with pybridge.connect(daemon.socket) as other:
        other.create("elsewhere", (4,), "uint8").close()
        before = client.stats()["requests"]
        # Opened directly: counted in this client's attach ledger, no request.
        held = client.attach("elsewhere")
        assert client.map_cache()["direct"] == 1
        client.info("elsewhere")
        other.destroy("elsewhere")
        held.close()
        # info and other's destroy; the close uncounted it in the ledger.
        assert requests_since(before) == 2
        # One the daemon counted (the reply to its create) and someone else
        # destroyed still gets its detach (this client cannot know it is gone
        # without asking), and a live one certainly does.
        mine = client.create("mine", (4,), "uint8")
        before = client.stats()["requests"]
        other.destroy("mine")
        mine.close()
        assert requests_since(before) == 2  # other's destroy, the detach
    before = client.stats()["requests"]
    with client.create("live", (4,), "uint8"):
        pass
    assert requests_since(before) == 2  # the create and its detach
    assert client.info("live")["attached"] == 0
    client.destroy("live")


def test_a_restarted_daemon_is_asked_again(tmp_path):
    d = Daemon(tmp_path, ephemeral=False)
    client = pybridge.connect(d.socket)
    with client.create("kept", (3,), "int64") as seg:
        seg.array[:] = [1, 2, 3]
    client.list()  # the daemon adopts the direct create: only a slot vouches now
    killed(d)
    restarted = Daemon(tmp_path, ephemeral=False)
    try:
        misses = client.map_cache()["misses"]
        # The new daemon retired the old table: this attach asks it (and
        # reconnects), then it is cached again.
        with client.attach("kept") as seg:
            assert seg.array.tolist() == [1, 2, 3]
        assert client.reconnects == 1
        assert client.map_cache()["misses"] == misses + 1
        client.destroy("kept")
        with pytest.raises(pybridge.NotFound):
            client.attach("kept")
    finally:
        client.close()
        assert restarted.stop() == 0, restarted.log()
    assert restarted.leftover_shm() == []


def test_a_forked_child_gets_its_own_connection(daemon, client):
    with client.create("f", (4,), "int32") as seg:
        seg.array[:] = [4, 3, 2, 1]
    client.attach("f").close()  # cached in the parent
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        status = 1
        try:
            with client.attach("f") as seen:
                values = seen.array.tolist()
                attached = client.info("f")["attached"]
            os.write(write_fd, json.dumps({"values": values, "attached": attached,
                                           "reconnects": client.reconnects}).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    # The child connected anew and its attachment was counted there.
    assert report == {"values": [4, 3, 2, 1], "attached": 1, "reconnects": 1}
    # The parent's connection was not disturbed by the child.
    assert client.reconnects == 0
    with client.attach("f") as again:
        assert again.array.tolist() == [4, 3, 2, 1]
    assert client.info("f")["attached"] == 0
    client.destroy("f")


def test_the_cache_is_bounded_and_can_be_turned_off(daemon, client):
    client.set_map_cache(entries=2)
    for name in ("a", "b", "c"):
        client.create(name, (4,), "uint8").close()
    # Read by the daemon: each has its slot, which vouches for the cached
    # mappings below (the creator's own entry of a direct create lasts only
    # until the daemon reads of it).
    client.list()
    assert client.map_cache()["entries"] == 2
    client.set_map_cache(bytes=0)
    assert client.map_cache()["entries"] == 0 and client.map_cache()["bytes"] == 0
    client.set_map_cache(entries=0, bytes=1 << 30)
    hits = client.map_cache()["hits"]
    client.attach("a").close()
    client.attach("a").close()
    assert client.map_cache()["hits"] == hits and client.map_cache()["entries"] == 0
    client.set_map_cache(entries=8)
    client.attach("a").close()
    stats = client.map_cache()
    assert stats["entries"] == 1
    assert stats["bytes"] == client.info("a")["total_bytes"]
    for name in ("a", "b", "c"):
        client.destroy(name)
    with pytest.raises(pybridge.InvalidArgument):
        client.set_map_cache(idle=-1)


def test_destroyed_segments_leave_the_cache(daemon, client):
    for name in ("p", "q"):
        client.create(name, (4,), "uint8").close()
    assert client.map_cache()["entries"] == 2
    client.destroy("p")
    client.set_map_cache()  # a sweep
    assert client.map_cache()["entries"] == 1
    client.destroy("q")


def test_the_table_is_the_daemons_and_read_only_in_clients(daemon, client):
    path = table_path(daemon)
    st = path.stat()
    assert st.st_uid == os.geteuid() and (st.st_mode & 0o777) == 0o600
    client.create("t", (4,), "uint8").close()
    maps = Path("/proc/self/maps").read_text().splitlines()
    mine = [line for line in maps if line.endswith(str(path))]
    assert mine, "the client maps the slot table"
    assert all(line.split()[1] == "r--s" for line in mine), mine
    client.destroy("t")


def test_a_scribbled_table_costs_a_round_trip_never_a_wrong_mapping(daemon, client):
    with client.create("s", (4,), "uint8") as seg:
        seg.array[:] = 5
    client.list()  # the daemon adopts the direct create: only a slot vouches now
    path = table_path(daemon)
    # The daemon's user (root here) can write the table; clients cannot.
    with open(path, "r+b") as table:
        raw = bytearray(table.read())
        magic, version, count = struct.unpack_from("<QII", raw, 0)
        assert count > 0
        # Every slot's id and epoch scribbled: the cached entry cannot match.
        for i in range(min(count, 64)):
            struct.pack_into("<QQ", raw, SLOT_TABLE_HEADER + i * SLOT_BYTES,
                             0x5A5A5A5A5A5A5A5A, 0xA5A5A5A5A5A5A5A5)
        table.seek(0)
        table.write(raw)
    misses = client.map_cache()["misses"]
    with client.attach("s") as again:
        assert again.array.tolist() == [5] * 4
    assert client.map_cache()["misses"] == misses + 1
    client.destroy("s")
    with pytest.raises(pybridge.NotFound):
        client.attach("s")


def test_cached_mappings_are_released_when_evicted_or_the_client_closes(daemon, client):
    client.create("kept", (4,), "uint8").close()
    client.list()  # read by the daemon: it has its slot, so attaches are cached
    assert shm_mapped(daemon, "kept")  # the cache holds it after the last handle closed
    client.set_map_cache(entries=0)
    assert not shm_mapped(daemon, "kept")
    client.set_map_cache(entries=64)
    client.attach("kept").close()
    assert shm_mapped(daemon, "kept")
    with pybridge.connect(daemon.socket) as other:
        other.destroy("kept")
    client.close()
    assert not shm_mapped(daemon, "kept")


def test_idle_mappings_are_released_at_the_next_cache_call(daemon, client):
    # Idleness is measured in time, so the test lets time pass: there is no
    # signal to wait for (a client keeps no thread that would sweep; an idle
    # process sweeps nothing until its next attach, create or close).
    for name in ("old", "busy"):
        client.create(name, (4,), "uint8").close()
    client.list()  # read by the daemon: their slots vouch for cached attaches
    client.attach("old").close()
    client.attach("busy").close()
    assert shm_mapped(daemon, "old") and shm_mapped(daemon, "busy")
    # "busy" is used halfway: it stays unless a step between takes idle_s / 2
    # less the 60 ms slack, which would need a stall of almost a second.
    idle_s = 2.0
    client.set_map_cache(idle=idle_s)
    evictions = client.map_cache()["evictions"]
    # Past the idle time and the 50 ms between sweeps, for "old" only.
    time.sleep(idle_s / 2)
    client.attach("busy").close()  # used: not idle
    time.sleep(idle_s / 2 + 0.06)
    with client.attach("busy") as busy:  # a cache call: sweeps, and a hit
        assert busy.array.shape == (4,)
    stats = client.map_cache()
    assert stats["entries"] == 1 and stats["evictions"] == evictions + 1
    assert not shm_mapped(daemon, "old")
    assert shm_mapped(daemon, "busy")
    client.destroy("old")
    client.destroy("busy")


def test_a_destroyed_segments_mapping_goes_with_its_last_handle(daemon, client):
    client.create("g", (4,), "uint8").close()
    held = client.attach("g")
    with pybridge.connect(daemon.socket) as other:
        other.destroy("g")
    assert client.map_cache()["entries"] == 1
    held.close()
    del held
    # Its pages are freed now, by this close, not inside some later attach.
    assert client.map_cache()["entries"] == 0
    assert not shm_mapped(daemon, "g")


def test_large_mappings_are_not_kept(daemon, client):
    client.set_map_cache(max_mapping_bytes=1 << 20)
    client.create("large", (2 << 20,), "uint8").close()
    client.create("small", (4096,), "uint8").close()
    stats = client.map_cache()
    assert stats["entries"] == 1 and stats["max_mapping_bytes"] == 1 << 20
    assert stats["bytes"] == client.info("small")["total_bytes"]
    client.destroy("large")
    client.destroy("small")


def test_mappings_of_segments_destroyed_elsewhere_are_all_freed_at_the_next_sweep(daemon, client):
    names = ("d1", "d2", "d3")
    for name in names:
        client.create(name, (2 << 20,), "uint8").close()  # 2 MiB each, cached
    with pybridge.connect(daemon.socket) as other:
        for name in names:
            other.destroy(name)
    client.set_map_cache()  # a sweep
    assert client.map_cache()["entries"] == 0
    # Their last mappings go on the reaper's thread (unmapping frees their
    # pages, ~0.3 s per GiB: no call of this client waits for it), soon.
    deadline = time.monotonic() + 10 * TIME_SCALE
    while any(shm_mapped(daemon, name) for name in names):
        assert time.monotonic() < deadline, "the reaper never unmapped them"
        time.sleep(0.001)