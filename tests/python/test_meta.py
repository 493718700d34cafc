# SPDX-License-Identifier: MIT
"""Metadata: JSON objects of at most 64 KiB, read live from shared memory."""
import os

import pytest

import pybridge
from conftest import Daemon
from crash_helpers import object_path
from pb_helpers import peer_dump, run_python

LIMIT = 64 * 1024
ENVELOPE = len('{"k":""}')  # the compact JSON around a one-key string value
PAGE = 4096


def allocated(daemon, name):
    """Bytes of pages the segment's shm object holds."""
    return os.stat(object_path(daemon, name)).st_blocks * 512


def test_create_with_meta(client, daemon):
    meta = {"camera": "front", "fps": 30, "nested": {"a": [1, 2.5, None, True]}}
    seg = client.create("frames", (2,), "uint8", meta=meta)
    assert seg.meta == meta
    assert client.info("frames")["meta"] == meta
    assert peer_dump(daemon, "frames")["meta"] == meta
    attached = client.attach("frames")
    assert attached.meta == meta


def test_default_meta_is_empty_object(client):
    seg = client.create("plain", (1,), "uint8")
    assert seg.meta == {}
    assert client.info("plain")["meta"] == {}


@pytest.mark.parametrize("made_by", ["client", "daemon"])
def test_a_segment_without_metadata_has_no_metadata_page(tmp_path, made_by):
    """Empty metadata is stored as no bytes (layout.hpp, stored_meta): the
    object holds the header, sync and data pages only, one page less to
    reserve, zero and free per create than with metadata."""
    d = Daemon(tmp_path, *(["--no-direct-create"] if made_by == "daemon" else []))
    try:
        with pybridge.connect(d.socket) as c:
            bare = c.create("bare", (PAGE,), "uint8")
            described = c.create("described", (PAGE,), "uint8", meta={"k": 1})
            assert allocated(d, "bare") == 3 * PAGE
            assert allocated(d, "described") == 4 * PAGE
            with pybridge.connect(d.socket) as other:
                assert other.attach("bare").meta == {} and other.info("bare")["meta"] == {}
                assert other.attach("described").meta == {"k": 1}
            # Back to empty after metadata: read as {} again.
            c.set_meta("described", {})
            assert described.meta == {} and c.info("described")["meta"] == {}
            bare.close()
            described.close()
    finally:
        assert d.stop() == 0


def test_list_omits_meta_info_has_it(client):
    client.create("m", (1,), "uint8", meta={"x": 1})
    (entry,) = client.list()
    assert "meta" not in entry
    assert client.info("m")["meta"] == {"x": 1}


def test_set_meta_updates_every_attachment_without_reattach(client, daemon):
    seg = client.create("frames", (2,), "uint8", meta={"v": 1})
    other = client.attach("frames")
    version_before = seg.meta_version
    info = client.set_meta("frames", {"v": 2, "label": "second"})
    assert info["meta"] == {"v": 2, "label": "second"}
    assert info["meta_version"] == version_before + 1
    assert info["name"] == "frames"
    # Both Segment objects read the new metadata from shared memory.
    assert seg.meta == {"v": 2, "label": "second"}
    assert other.meta == {"v": 2, "label": "second"}
    assert seg.meta_version == version_before + 1
    assert client.info("frames")["meta"] == {"v": 2, "label": "second"}
    assert peer_dump(daemon, "frames")["meta"] == {"v": 2, "label": "second"}


def test_set_meta_many_times_alternates_slots(client):
    seg = client.create("frames", (1,), "uint8")
    for i in range(10):
        client.set_meta("frames", {"i": i})
        assert seg.meta == {"i": i}


def test_set_meta_from_another_process_seen(client, daemon):
    seg = client.create("frames", (1,), "uint8", meta={"who": "parent"})
    run_python("""
        import sys, pybridge
        with pybridge.connect(sys.argv[1]) as c:
            c.set_meta("frames", {"who": "child"})
    """, daemon.socket)
    assert seg.meta == {"who": "child"}


def test_unicode_meta_round_trips(client, daemon):
    meta = {"名前": "カメラ", "emoji": "😀", "quote": 'a"b\\c', "nul": "x\u0000y"}
    seg = client.create("uni", (1,), "uint8", meta=meta)
    assert seg.meta == meta
    assert client.info("uni")["meta"] == meta
    assert peer_dump(daemon, "uni")["meta"] == meta


def test_meta_at_the_limit_is_accepted(client):
    meta = {"k": "x" * (LIMIT - ENVELOPE)}
    seg = client.create("big", (1,), "uint8", meta=meta)
    assert seg.meta == meta
    client.set_meta("big", meta)
    assert seg.meta == meta


def test_meta_over_the_limit_is_invalid_argument(client):
    too_big = {"k": "x" * (LIMIT - ENVELOPE + 1)}
    with pytest.raises(pybridge.InvalidArgument, match="65537"):
        client.create("big", (1,), "uint8", meta=too_big)
    assert client.list() == []  # nothing was created
    seg = client.create("small", (1,), "uint8", meta={"a": 1})
    with pytest.raises(pybridge.InvalidArgument):
        client.set_meta("small", too_big)
    with pytest.raises(pybridge.InvalidArgument):
        client.set_meta("small", {"k": "x" * (2 * 1024 * 1024)})  # past the frame limit too
    assert seg.meta == {"a": 1}  # unchanged
    assert client.info("small")["meta"] == {"a": 1}


@pytest.mark.parametrize("bad", [[1, 2], "text", 3, (("a", 1),)])
def test_non_dict_meta_is_invalid_argument(client, bad):
    with pytest.raises(pybridge.InvalidArgument) as err:
        client.create("m", (1,), "uint8", meta=bad)
    assert err.value.code == "invalid_argument"
    assert isinstance(err.value, ValueError)
    client.create("ok", (1,), "uint8")
    with pytest.raises(pybridge.InvalidArgument):
        client.set_meta("ok", bad)


def test_set_meta_none_is_invalid_argument(client):
    client.create("ok", (1,), "uint8")
    with pytest.raises(pybridge.InvalidArgument):
        client.set_meta("ok", None)


@pytest.mark.parametrize("bad", [{"x": object()}, {"x": float("nan")}, {"x": float("inf")},
                                 {"x": b"bytes"}])
def test_unserializable_meta_is_invalid_argument(client, bad):
    with pytest.raises(pybridge.InvalidArgument):
        client.create("m", (1,), "uint8", meta=bad)
    assert client.list() == []


def test_meta_after_close_is_closed(client):
    seg = client.create("m", (1,), "uint8", meta={"a": 1})
    seg.close()
    with pytest.raises(pybridge.Closed):
        seg.meta
    with pytest.raises(pybridge.Closed):
        seg.meta_version
