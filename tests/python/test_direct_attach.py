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
    # its header's word (its creator's own object, by its inode), then
    # served again from the cache while its path still names that inode.
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
                assert stats["direct"] == 1 and stats["entries"] == 1
                held = other.attach("unread")  # the per-frame pattern: a cache hit
            stats = other.map_cache()
            assert (stats["direct"], stats["hits"]) == (1, 1)
            assert held.array.tolist() == [9, 2, 3, 4] and held.id == seg.id
        # Counted by the daemon (the ledger) once it reads of the create.
        assert other.info("unread")["attached"] == 2
        held.close()
        with other.attach("unread"):  # read of now: served by its slot
            assert other.map_cache()["hits"] == 2
    seg.close()
    client.destroy("unread")


def test_an_unread_create_destroyed_and_made_again_is_never_served_stale(daemon, client):
    # All while the daemon reads nothing: the cached entry of an unread
    # create stands only while its path names the same object, alive.
    with pybridge.connect(daemon.socket) as other:
        other.list()
        with Stopped(daemon):
            first = client.create("again", (4,), "int32")
            first.array[:] = 7
            other.attach("again").close()
            first.close()
            client.destroy("again")  # direct: sets the word, then unlinks
            second = client.create("again", (2, 2), "uint8")
            second.array[:] = 3
            with other.attach("again") as seen:
                assert seen.id == second.id and seen.shape == (2, 2)
                assert seen.array.tolist() == [[3, 3], [3, 3]]
            stats = other.map_cache()
            assert (stats["direct"], stats["hits"]) == (2, 0)
            other.attach("again").close()  # the new one, from the cache
            assert other.map_cache()["hits"] == 1
            second.close()
            client.destroy("again")
        # Gone: a miss, and the daemon (which has read of both) says so.
        with pytest.raises(pybridge.NotFound):
            other.attach("again")


def test_an_unread_create_is_served_by_its_slot_once_read(daemon, client):
    with pybridge.connect(daemon.socket) as other:
        other.list()
        with Stopped(daemon):
            seg = client.create("adopted", (4,), "int32")
            other.attach("adopted").close()  # cached by its path
        other.list()  # the daemon has read of it: it has a slot
        path = object_path(daemon, "adopted")
        moved = path.with_name(path.name + "-moved")
        path.rename(moved)  # the path no longer names it
        try:
            # Vouched for by the slot now (its header's hint), not the path:
            # a hit. (By its path it would be a miss.)
            with other.attach("adopted") as seen:
                assert seen.id == seg.id
            assert other.map_cache()["hits"] == 1
        finally:
            moved.rename(path)
    seg.close()
    client.destroy("adopted")


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
    # creator_inode says), attached directly and cached by its path.
    direct = 1 if hint == "none" else 0
    with pybridge.connect(daemon.socket) as other:
        with other.attach("x") as seen:
            assert seen.array.tolist() == [1, 2, 3]
        assert other.map_cache()["direct"] == direct
        with other.attach("y") as seen:  # untouched: direct
            assert seen.array.tolist() == [7, 8, 9]
        assert other.map_cache()["direct"] == direct + 1
        # Both cached: x by its path where no hint was left, else by the
        # daemon's reply (with the slot the daemon named, not the scribble).
        assert other.map_cache()["entries"] == 2
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
