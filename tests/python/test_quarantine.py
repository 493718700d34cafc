# SPDX-License-Identifier: MIT
"""Segments whose header no longer validates are quarantined, not served:
at a restart (corrupted while no daemon ran) and at the next attach
(corrupted while the daemon runs). The others are served as before; the
quarantined ones are reported by stats (and bridgectl), refused by
attach/info with corrupt_segment, and removed by destroy.
"""
import json
import os
import struct

import numpy as np
import pytest

import pybridge
from conftest import run_ctl
from crash_helpers import (assert_prefix_consistent, daemons,  # noqa: F401
                           data_hash, object_path, objects, stop_clean)

#: bridgectl's exit status for corrupt_segment (10 + 10).
CTL_CORRUPT = 20


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def shape_offset(path, shape):
    """Where the header stores `shape` (found, not hard-coded)."""
    with open(path, "rb") as f:
        header = f.read(4096)
    offset = header.find(struct.pack(f"<{len(shape)}q", *shape))
    assert offset > 0
    return offset


def test_corrupted_while_down_is_quarantined_at_restart(daemons):
    first = daemons.start()
    hashes = {}
    with pybridge.connect(first.socket) as c:
        for i, name in enumerate(["good-1", "bad-magic", "bad-shape", "truncated", "good-2"]):
            with c.create(name, (3, 4099 if name == "bad-shape" else 5), "int16",
                          meta={"i": i}) as seg:
                seg.array[...] = i + 1
            hashes[name] = data_hash(first, c.info(name))
    assert first.stop() == 0  # not ephemeral: the segments stay

    flip_byte(object_path(first, "bad-magic"), 0)  # the magic number
    path = object_path(first, "bad-shape")
    flip_byte(path, shape_offset(path, (3, 4099)) + 8)  # low byte of shape[1]
    os.truncate(object_path(first, "truncated"), 100)

    second = daemons.start()
    bad = {"bad-magic", "bad-shape", "truncated"}
    with pybridge.connect(second.socket) as c:
        assert sorted(s["name"] for s in c.list()) == ["good-1", "good-2"]
        for name, i in (("good-1", 0), ("good-2", 4)):
            info = c.info(name)
            assert info["meta"] == {"i": i}
            assert data_hash(second, info) == hashes[name]
            with c.attach(name) as seg:
                assert (seg.array == i + 1).all()
        quarantined = {q["name"]: q["reason"] for q in c.stats()["quarantined"]}
        assert set(quarantined) == bad
        assert all(isinstance(r, str) and r for r in quarantined.values()), quarantined
        for name in bad:
            with pytest.raises(pybridge.CorruptSegment, match="quarantined"):
                c.attach(name)
            with pytest.raises(pybridge.CorruptSegment, match="quarantined"):
                c.info(name)
            with pytest.raises(pybridge.AlreadyExists):
                c.create(name, (2,), "uint8")  # the corrupt object is left untouched
        assert_prefix_consistent(second, c)

        # bridgectl reports them and does not crash on them.
        stats = run_ctl(second, "stats")
        assert stats.returncode == 0, stats.stderr
        for name in bad:
            assert name in stats.stdout
        listing = run_ctl(second, "ls")
        assert listing.returncode == 0, listing.stderr
        assert "good-1" in listing.stdout and "bad-magic" not in listing.stdout
        as_json = run_ctl(second, "ls", "--json")
        assert as_json.returncode == 0, as_json.stderr
        assert sorted(s["name"] for s in json.loads(as_json.stdout)) == ["good-1", "good-2"]
        info = run_ctl(second, "info", "bad-magic")
        assert info.returncode == CTL_CORRUPT, info.stderr

        # destroy (client or bridgectl rm) removes them, and frees the name.
        c.destroy("bad-magic")
        removed = run_ctl(second, "rm", "bad-shape")
        assert removed.returncode == 0, removed.stderr
        c.destroy("truncated")
        assert c.stats()["quarantined"] == []
        assert objects(second) == ["good-1", "good-2"]
        with c.create("bad-magic", (2,), "uint8") as seg:
            assert seg.array.tolist() == [0, 0]
    stop_clean(second)


def test_corrupted_while_running_is_quarantined_at_next_attach(daemon, client):
    seg = client.create("live", (4,), "float64", meta={"m": 1})
    seg.array[...] = [1.0, 2.0, 3.0, 4.0]
    client.create("fine", (2,), "uint8").close()
    flip_byte(object_path(daemon, "live"), 0)

    with pytest.raises(pybridge.CorruptSegment):
        client.attach("live")
    quarantined = client.stats()["quarantined"]
    assert [q["name"] for q in quarantined] == ["live"] and quarantined[0]["reason"]
    assert [s["name"] for s in client.list()] == ["fine"]
    with pytest.raises(pybridge.CorruptSegment, match="quarantined"):
        client.info("live")
    with pytest.raises(pybridge.CorruptSegment, match="quarantined"):
        client.attach("live")
    # The mapping handed out before stays valid; the others are unaffected.
    assert seg.array.tolist() == [1.0, 2.0, 3.0, 4.0]
    with client.attach("fine") as other:
        assert not np.any(other.array)
    stats = run_ctl(daemon, "stats")
    assert stats.returncode == 0 and "live" in stats.stdout

    seg.close()  # detaching from a quarantined segment is harmless
    client.destroy("live")
    assert client.stats()["quarantined"] == []
    assert not object_path(daemon, "live").exists()
    with client.create("live", (4,), "float64") as again:
        assert not again.array.any()
    client.destroy("live")
    client.destroy("fine")


def test_old_layout_segments_are_refused_with_a_reason_that_says_so(daemons):
    """Layout version 2 gave the sync words a page of their own (so that
    clients map the header read-only); a version-1 segment (shmbridge 0.1.0)
    found at start is quarantined, never served as if it were version 2."""
    first = daemons.start()
    with pybridge.connect(first.socket) as c:
        c.create("old", (4,), "uint8").close()
        c.create("new", (4,), "uint8").close()
    assert first.stop() == 0
    with open(object_path(first, "old"), "r+b") as f:
        f.seek(8)  # the header's layout_version, after the 8-byte magic
        assert struct.unpack("<I", f.read(4))[0] == 2
        f.seek(8)
        f.write(struct.pack("<I", 1))

    second = daemons.start()
    with pybridge.connect(second.socket) as c:
        assert [s["name"] for s in c.list()] == ["new"]
        (quarantined,) = c.stats()["quarantined"]
        assert quarantined["name"] == "old"
        assert "layout version 1 (shmbridge 0.1.0)" in quarantined["reason"]
        with pytest.raises(pybridge.CorruptSegment, match="layout version 1"):
            c.attach("old")
        c.destroy("old")
        c.destroy("new")
    stop_clean(second)
