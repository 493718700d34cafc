# SPDX-License-Identifier: MIT
"""Create and destroy without a round trip (bridge/detail/direct_create.hpp):
a client of the daemon's own user builds the object in /dev/shm itself,
renames it into place, and writes what it did into its connection's create
journal (bridge/detail/create_journal.hpp), which the daemon reads before it
answers any request. Shown with the daemon SIGSTOPped; and that nothing is
lost or served stale: every later request of any client sees the segment,
events arrive, a destroyed and re-created name is never served from a mapping
cache, and a client killed at each step of a create or destroy leaves the
segment whole or gone, never half.
"""
import ctypes
import gc
import os
import signal
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

import pybridge
from conftest import SLOT_TABLE, TIME_SCALE, Daemon
from crash_helpers import assert_prefix_consistent, object_path, objects
from test_map_cache import Stopped


def requests(client):
    return client.stats()["requests"]


def test_create_and_destroy_need_no_round_trip(daemon, client):
    client.list()  # connected and greeted
    before = requests(client)
    with Stopped(daemon):
        seg = client.create("direct", (2, 3), "float32", meta={"units": "m"})
        seg.array[:] = np.arange(6, dtype=np.float32).reshape(2, 3)
        again = client.attach("direct")  # from this process's cache
        assert again.array.tolist() == seg.array.tolist()
        assert (seg.meta, seg.meta_version, seg.version) == ({"units": "m"}, 1, 0)
        again.close()
        seg.close()
        client.destroy("direct")
        client.create("taken", (1,), "uint8").close()
        with pytest.raises(pybridge.AlreadyExists):  # the rename's NOREPLACE
            client.create("taken", (1,), "uint8")
        client.destroy("taken")
    # Only pokes (the daemon was not yet due to read the journal) and this
    # stats: never one request per create or destroy.
    assert requests(client) - before - 1 <= 2
    assert client.list() == []
    assert objects(daemon) == []


def test_every_later_request_of_any_client_sees_it(daemon, client):
    with pybridge.connect(daemon.socket) as other:
        other.list()
        seg = client.create("seen", (4,), "int32", meta={"k": 1})
        seg.array[:] = [1, 2, 3, 4]
        seg.mark_changed()
        # No timer, no poke needed: the daemon reads every journal first.
        info = other.info("seen")
        assert (info["segment_id"], info["version"], info["meta"]) == (seg.id, 1, {"k": 1})
        assert info["owner_uid"] == os.geteuid() and info["attached"] == 1
        assert [s["name"] for s in other.list()] == ["seen"]
        with other.attach("seen") as seen:
            assert seen.array.tolist() == [1, 2, 3, 4]
        with pytest.raises(pybridge.AlreadyExists):
            other.create("seen", (1,), "uint8")
        seg.close()
        client.destroy("seen")
        with pytest.raises(pybridge.NotFound):
            other.info("seen")
        assert other.list() == []


def test_events_arrive_for_direct_creates_and_destroys(daemon, client):
    with client.events() as events:
        seg = client.create("short", (4,), "uint8")
        seg.mark_changed()
        seg.close()
        client.destroy("short")  # both before the daemon read either
        got = [events.next(timeout=5 * TIME_SCALE) for _ in range(2)]
        assert [(e["event"], e["name"]) for e in got] == [("created", "short"),
                                                          ("destroyed", "short")]
        assert got[0]["segment_id"] == got[1]["segment_id"] == seg.id
        kept = client.create("kept", (4,), "uint8")
        kept.mark_changed()
        client.list()  # adopted now: created (version 0), then its commit
        got = [events.next(timeout=5 * TIME_SCALE) for _ in range(2)]
        assert [(e["event"], e["version"]) for e in got] == [("created", 0), ("committed", 1)]
        kept.close()
        client.destroy("kept")
        assert events.next(timeout=5 * TIME_SCALE)["event"] == "destroyed"


def test_a_destroyed_and_recreated_name_is_never_served_stale(daemon, client):
    first = client.create("again", (4,), "int32")
    first.array[:] = 1
    with pybridge.connect(daemon.socket) as other:
        other.attach("again").close()  # cached there (a slot vouches for it)
        waiter = other.attach("again")
        woke = {}

        def wait():
            try:
                waiter.wait(waiter.version, timeout=30 * TIME_SCALE)
            except pybridge.BridgeError as e:
                woke["error"] = type(e).__name__

        thread = threading.Thread(target=wait)
        thread.start()
        with Stopped(daemon):
            # Neither the destroy nor the re-create reaches the daemon, so
            # its slot table still vouches for the first segment.
            first.close()
            client.destroy("again")
            thread.join(timeout=10 * TIME_SCALE)
            assert woke == {"error": "NotFound"}  # the waiter's wait ended
            second = client.create("again", (2, 2), "uint8")
            second.array[:] = 9
        # Not the cached mapping: its `destroyed` word says it is gone.
        with other.attach("again") as seen:
            assert seen.id == second.id != first.id
            assert seen.array.tolist() == [[9, 9], [9, 9]]
        waiter.close()
        second.close()
        # A second destroy of the same segment: the claim is taken.
        client.destroy("again")
        with pytest.raises(pybridge.NotFound):
            other.destroy("again")


def test_a_daemon_that_must_check_each_create_makes_them_all(tmp_path):
    for args in (["--no-direct-create"], ["--max-segment-bytes", "1048576"]):
        directory = tmp_path / args[0].strip("-")
        directory.mkdir()
        d = Daemon(directory, *args)
        try:
            with pybridge.connect(d.socket) as c:
                before = requests(c)
                seg = c.create("asked", (4,), "uint8")
                c.destroy("asked")
                seg.close()  # destroyed by this client: no detach to send
                assert requests(c) - before - 1 == 2  # the create and the destroy
        finally:
            assert d.stop() == 0


CHILD = r"""
import sys
import pybridge
c = pybridge.connect(sys.argv[1])
c.list()
if sys.argv[2] == "create":
    seg = c.create("victim", (8,), "int64", meta={"m": 1})
    seg.array[:] = 5
    print("created", flush=True)
else:
    c.attach("victim")
    c.destroy("victim")
    print("destroyed", flush=True)
"""


def run_child(daemon, what, fault):
    env = dict(os.environ, BRIDGE_CLIENT_FAULT=fault)
    return subprocess.run([sys.executable, "-c", CHILD, daemon.socket, what], env=env,
                          capture_output=True, text=True, timeout=60 * TIME_SCALE)


def until_only_this_client(client, attempts=1000, others=0):
    """Until the daemon has handled the end of every other connection but
    `others` (each stats is a round trip, which lets it read their hang-ups
    first)."""
    for _ in range(attempts):
        if client.stats()["clients"] == 1 + others:
            return
    raise AssertionError("another client's connection never ended")


@pytest.mark.parametrize("fault,outcome", [("direct-create:staged", "gone"),
                                           ("direct-create:published", "there"),
                                           ("direct-destroy:claimed", "gone")])
def test_a_client_killed_at_each_step_leaves_the_segment_whole_or_gone(daemon, client, fault,
                                                                       outcome):
    if fault.startswith("direct-destroy"):
        seg = client.create("victim", (8,), "int64", meta={"m": 1})
        seg.array[:] = 5
        seg.close()
        client.list()
        proc = run_child(daemon, "destroy", fault)
    else:
        proc = run_child(daemon, "create", fault)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # The end of its connection: the daemon removes a staging object, adopts
    # a segment renamed into place, and finishes a claimed destroy.
    until_only_this_client(client)
    assert_prefix_consistent(daemon, client)
    listed = [s["name"] for s in client.list()]
    if outcome == "there":
        assert listed == ["victim"]
        with client.attach("victim") as seg:
            assert seg.array.tolist() == [0] * 8  # killed before it returned
            assert seg.meta == {"m": 1}
        client.destroy("victim")
    else:
        assert listed == []
        with pytest.raises(pybridge.NotFound):
            client.attach("victim")
        client.create("victim", (1,), "uint8").close()  # the name is free
        client.destroy("victim")
    assert objects(daemon) == []


def test_a_live_clients_claimed_destroy_is_finished_in_its_name(daemon, client):
    """Another connection that ends while a live client is between its
    destroy's claim and its record leaves that destroy alone; whoever
    finishes it names the claimant, never pid 0."""
    client.create("victim", (8,), "int64").close()
    client.list()
    with client.events("victim") as events:
        others = client.stats()["clients"] - 1  # the event stream's connection
        env = dict(os.environ, BRIDGE_CLIENT_FAULT="stop@direct-destroy:claimed")
        child = subprocess.Popen([sys.executable, "-c", CHILD, daemon.socket, "destroy"], env=env,
                                 stdout=subprocess.PIPE, text=True)
        try:
            _, status = os.waitpid(child.pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status), status  # claimed, not yet recorded
            with pybridge.connect(daemon.socket) as third:
                third.list()  # a journal of its own, which now ends
            until_only_this_client(client, others=others + 1)  # and the child's
            with pytest.raises(pybridge.Timeout):
                events.next(timeout=0.2)  # not finished by the end of `third`
            # A request on the name finishes it, in the claimant's name.
            with pytest.raises(pybridge.NotFound):
                client.info("victim")
            gone = events.next(timeout=5 * TIME_SCALE)
            assert (gone["event"], gone["pid"]) == ("destroyed", child.pid)
        finally:
            os.kill(child.pid, signal.SIGCONT)
            out, _ = child.communicate(timeout=60 * TIME_SCALE)
        assert child.returncode == 0 and out.strip() == "destroyed"
        until_only_this_client(client, others=others)
        with pytest.raises(pybridge.Timeout):
            events.next(timeout=0.2)  # its late record adds nothing
    assert client.list() == []
    assert objects(daemon) == []


# slot_table.hpp: the futex word of SlotTableHeader::alive, and the bits the
# kernel keeps in a robust lock's word.
ALIVE_WORD = 16
FUTEX_OWNER_DIED = 0x40000000
FUTEX_TID_MASK = 0x3FFFFFFF


def alive_word(daemon):
    with open(object_path(daemon, SLOT_TABLE), "rb") as f:
        f.seek(ALIVE_WORD)
        return struct.unpack("<I", f.read(4))[0]


def test_a_create_after_the_daemon_died_is_not_made_directly(tmp_path):
    """A thread of the daemon holds the slot table's robust `alive` lock;
    when the daemon dies the kernel marks it, and the next create asks
    instead of building the object (with autostart off: DaemonUnavailable)."""
    d = Daemon(tmp_path, ephemeral=False)
    c = pybridge.connect(d.socket, autostart=False)
    try:
        c.create("before", (4,), "uint8").close()
        held_by = alive_word(d) & FUTEX_TID_MASK
        assert str(held_by) in os.listdir(f"/proc/{d.proc.pid}/task")
        d.stop(signal.SIGKILL)
        assert alive_word(d) & FUTEX_OWNER_DIED
        with pytest.raises(pybridge.DaemonUnavailable):
            c.create("after", (4,), "uint8")
        assert not object_path(d, "after").exists()
    finally:
        c.close()
    restarted = Daemon(tmp_path)  # re-adopts "before", and removes it as it stops
    assert restarted.stop() == 0
    assert restarted.leftover_shm() == []


def test_a_create_after_the_daemon_closed_the_connection_is_not_made_directly(tmp_path):
    """The daemon marks a journal it stops reading (here an idle timeout
    closes the connection, the daemon running on): the next create asks, on
    a new connection, and every client sees the segment at once."""
    d = Daemon(tmp_path, "--idle-timeout", str(0.3 * TIME_SCALE))
    try:
        with pybridge.connect(d.socket) as c, pybridge.connect(d.socket) as other:
            c.list()
            # Until the daemon has closed c's idle connection (other's
            # requests keep it from being idle itself).
            until_only_this_client(other, attempts=10**6)
            c.create("made", (4,), "uint8").close()
            assert [s["name"] for s in other.list()] == ["made"]
            c.destroy("made")
    finally:
        assert d.stop() == 0
    assert d.leftover_shm() == []


# layout.hpp: kSyncOffset, and offsetof(SyncBlock, destroyed).
DESTROYED_WORD = 4096 + 2 * 65536 + 40


def test_a_claimed_but_not_unlinked_segment_is_removed_at_restart(tmp_path):
    d = Daemon(tmp_path, ephemeral=False)
    with pybridge.connect(d.socket) as c:
        c.create("victim", (8,), "int64").close()
        c.list()
    d.stop(signal.SIGKILL)
    # What a destroyer that claimed it and died leaves, with no daemon left
    # to see its connection end.
    with open(object_path(d, "victim"), "r+b") as f:
        f.seek(DESTROYED_WORD)
        f.write(struct.pack("<I", 1))
    restarted = Daemon(tmp_path, ephemeral=True)
    try:
        assert objects(restarted) == []
        assert "destroyed by a client that died" in restarted.log()
    finally:
        assert restarted.stop() == 0


def journal_mappings_of_this_process():
    """Start addresses of this process's mappings of whole ledger memfds
    (the ledger page alone is mapped too, on its own)."""
    gc.collect()  # clients of earlier tests that nothing holds: their ledgers go
    starts = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "bridged-ledger" in line:
                start, end = (int(x, 16) for x in line.split()[0].split("-"))
                if end - start > 4096:
                    starts.append(start)
    return starts


# bridge/detail/create_journal.hpp: the journal follows the ledger page; a
# 64-byte header, then records of 152 bytes (seq, kind, name_bytes, id, name).
JOURNAL_RECORDS = 4096 + 64
RECORD_BYTES = 152


def test_a_scribbled_journal_costs_its_writer_only(daemon, client):
    client.create("before", (1,), "uint8").close()
    client.list()  # read: the daemon is at record 2 (begin, published)
    # The journal's own mapping: the one that is larger than the ledger page.
    journals = journal_mappings_of_this_process()
    assert len(journals) == 1
    # Record 2, complete by its seq, of a kind that does not exist.
    bad = struct.pack("<QIIQ", 3, 99, 5, 12345)
    ctypes.memmove(journals[0] + JOURNAL_RECORDS + 2 * RECORD_BYTES, bad, len(bad))
    with pybridge.connect(daemon.socket) as other:
        # The daemon stops reading that journal, and serves everyone on.
        other.create("elsewhere", (1,), "uint8").close()
        assert sorted(s["name"] for s in other.list()) == ["before", "elsewhere"]
        other.destroy("elsewhere")
        # What the scribbler creates now, it made for itself alone.
        client.create("unheard", (1,), "uint8").close()
        with pytest.raises(pybridge.NotFound):
            other.info("unheard")
        client.destroy("unheard")  # its own object, claimed and unlinked
    assert daemon.proc.poll() is None
    client.destroy("before")


def test_a_forked_child_writes_to_a_journal_of_its_own(daemon, client):
    client.create("parent", (1,), "uint8").close()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            # The parent's connection is not the child's: it connects anew.
            client.create("child", (1,), "uint8").close()
            client.create("child2", (1,), "uint8").close()
            os.write(w, b"ok")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 2) == b"ok"
    os.waitpid(pid, 0)
    os.close(r)
    client.create("parent2", (1,), "uint8").close()
    assert sorted(s["name"] for s in client.list()) == ["child", "child2", "parent", "parent2"]
    for name in ("child", "child2", "parent", "parent2"):
        client.destroy(name)
