# SPDX-License-Identifier: MIT
"""A fresh attach (a name this process never mapped) with no round trip: the
daemon's user opens the object by its name in /dev/shm and maps it, and the
daemon's slot table decides whether it counts (bridge/detail/direct_attach.hpp).
Shown by attaching while the daemon is SIGSTOPped; never from a stale or
foreign object: a destroyed, re-created or planted object at the path, or a
scribbled slot hint, costs a round trip and the daemon's answer.
"""
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import pybridge
from conftest import Daemon
from crash_helpers import killed
from test_map_cache import Stopped

# offsetof(SegmentHeader, slot_hint) (a static_assert in layout.hpp pins it).
SLOT_HINT_OFFSET = 776


def object_path(daemon, name):
    return Path("/dev/shm") / (daemon.shm_prefix.lstrip("/") + name)


def test_a_fresh_attach_needs_no_round_trip(daemon, client):
    seg = client.create("fresh", (2, 3), "float32", meta={"units": "m"})
    seg.array[:] = np.arange(6, dtype=np.float32).reshape(2, 3)
    seg.mark_changed()
    with pybridge.connect(daemon.socket) as other:
        with Stopped(daemon):
            with other.attach("fresh") as seen:
                assert seen.array.tolist() == [[0, 1, 2], [3, 4, 5]]
                assert seen.array.flags.writeable
                assert (seen.dtype, seen.shape, seen.version) == (np.float32, (2, 3), 1)
                assert seen.meta == {"units": "m"} and seen.id == seg.id
                seen.array[0, 0] = 42  # the same pages
                assert seg.array[0, 0] == 42
                held = other.attach("fresh")  # now from the cache
        assert other.map_cache()["direct"] == 1 and other.map_cache()["hits"] == 1
        # The daemon counts it: the notice went out before attach returned
        # (other's own request follows it on the same socket).
        assert other.info("fresh")["attached"] == 2
        held.close()
        assert other.info("fresh")["attached"] == 1
    seg.close()
    client.destroy("fresh")


def test_a_direct_create_the_daemon_has_not_read_is_attached_without_it(daemon, client):
    # Another process's create, made directly (test_direct_create.py) while
    # the daemon cannot read of it: it has no slot yet, and is attached on
    # its header's word (its creator's own object, by its inode), uncached.
    with pybridge.connect(daemon.socket) as other:
        other.list()
        with Stopped(daemon):
            seg = client.create("unread", (4,), "int32", meta={"k": 1})
            seg.array[:] = [1, 2, 3, 4]
            with other.attach("unread") as seen:
                assert seen.array.tolist() == [1, 2, 3, 4] and seen.id == seg.id
                assert seen.meta == {"k": 1} and seen.array.flags.writeable
                seen.array[0] = 9  # the same pages
                assert seg.array[0] == 9
                stats = other.map_cache()
                assert stats["direct"] == 1 and stats["entries"] == 0
                held = other.attach("unread")  # again on its word, not from a cache
            assert other.map_cache()["direct"] == 2
        # Counted by the daemon (the ledger) once it reads of the create.
        assert other.info("unread")["attached"] == 2
        held.close()
        with other.attach("unread"):  # read of now: it has its slot, and is cached
            assert other.map_cache()["entries"] == 1
    seg.close()
    client.destroy("unread")


def test_a_destroyed_or_recreated_name_is_never_served_stale(daemon, client):
    client.create("again", (4,), "int32").close()
    with pybridge.connect(daemon.socket) as other:
        first = other.attach("again")
        first_id = first.id
        first.close()
        client.destroy("again")
        with pytest.raises(pybridge.NotFound):
            other.attach("again")
        client.create("again", (2, 2), "uint8").close()
        # A direct create (test_direct_create.py) gets its slot when the
        # daemon reads of it: before it answers any request.
        client.list()
        with other.attach("again") as second:
            assert second.shape == (2, 2) and second.dtype == np.uint8
            assert second.id != first_id
        assert other.map_cache()["direct"] == 2
    client.destroy("again")


def test_a_planted_object_at_the_path_is_not_served(daemon, client, tmp_path):
    # A valid object, name and all, left at the path after its segment is
    # gone: its slot holds something else now, so the daemon is asked.
    client.create("ghost", (4,), "int32").close()
    saved = tmp_path / "ghost.copy"
    shutil.copyfile(object_path(daemon, "ghost"), saved)
    client.destroy("ghost")
    client.create("reuses-the-slot", (4,), "int32").close()
    shutil.copyfile(saved, object_path(daemon, "ghost"))
    try:
        with pybridge.connect(daemon.socket) as other:
            with pytest.raises(pybridge.NotFound):
                other.attach("ghost")
            assert other.map_cache()["direct"] == 0
    finally:
        object_path(daemon, "ghost").unlink()
    client.destroy("reuses-the-slot")


@pytest.mark.parametrize("hint", ["another-segment", "past-the-table", "none"])
def test_a_scribbled_slot_hint_never_gives_a_wrong_mapping(daemon, client, hint):
    with client.create("x", (3,), "int64") as x, client.create("y", (3,), "int64") as y:
        x.array[:] = [1, 2, 3]
        y.array[:] = [7, 8, 9]
    client.list()  # the daemon adopts the direct creates: they get their hints
    path = object_path(daemon, "x")
    with open(path, "r+b") as f:  # what the daemon's user can do to its objects
        f.seek(SLOT_HINT_OFFSET)
        (x_hint,) = struct.unpack("<I", f.read(4))
        with open(object_path(daemon, "y"), "rb") as g:
            g.seek(SLOT_HINT_OFFSET)
            (y_hint,) = struct.unpack("<I", g.read(4))
        assert x_hint != 0 and y_hint != 0 and x_hint != y_hint
        f.seek(SLOT_HINT_OFFSET)
        f.write(struct.pack("<I", {"another-segment": y_hint, "past-the-table": 0xFFFFFFFF,
                                   "none": 0}[hint]))
    # No hint at all is what a direct create is until the daemon reads of
    # it: taken on its header's word (this is the object its creator made,
    # creator_inode says), attached directly but never cached.
    direct = 1 if hint == "none" else 0
    with pybridge.connect(daemon.socket) as other:
        with other.attach("x") as seen:
            assert seen.array.tolist() == [1, 2, 3]
        assert other.map_cache()["direct"] == direct
        with other.attach("y") as seen:  # untouched: direct
            assert seen.array.tolist() == [7, 8, 9]
        assert other.map_cache()["direct"] == direct + 1
        if hint == "none":
            assert other.map_cache()["entries"] == 1  # y only
    client.destroy("x")
    client.destroy("y")


def test_streams_are_never_attached_directly(daemon, client):
    client.create_stream("cam", (4,), "uint8", slots=2).close()
    with pybridge.connect(daemon.socket) as other:
        with pytest.raises(pybridge.InvalidArgument, match="is a stream"):
            other.attach("cam")
        assert other.map_cache()["direct"] == 0
    client.destroy("cam")


def test_a_restarted_daemon_rewrites_the_hints(tmp_path):
    d = Daemon(tmp_path, ephemeral=False)
    client = pybridge.connect(d.socket)
    for name in ("a", "b"):
        with client.create(name, (2,), "int16") as seg:
            seg.array[:] = [1, 2]
    client.list()  # the daemon adopts the direct creates
    killed(d)
    restarted = Daemon(tmp_path, ephemeral=False)
    try:
        with pybridge.connect(d.socket) as other:
            with Stopped(restarted):
                for name in ("a", "b"):
                    with other.attach(name) as seen:
                        assert seen.array.tolist() == [1, 2]
            assert other.map_cache()["direct"] == 2
        # A client of the dead daemon holds its retired (zeroed) table: it
        # asks, reconnects, and attaches directly again from then on.
        with client.attach("a"):
            pass
        assert client.reconnects == 1
        direct = client.map_cache()["direct"]
        client.set_map_cache(entries=0)
        with client.attach("b"):
            pass
        assert client.map_cache()["direct"] == direct + 1
        client.destroy("a")
        client.destroy("b")
    finally:
        client.close()
        assert restarted.stop() == 0, restarted.log()
    assert restarted.leftover_shm() == []
