# SPDX-License-Identifier: MIT
"""list(), info(), stats(): the protocol's objects, as `bridgectl --json` prints them."""
import json
import os
import time

import pybridge
from conftest import run_ctl

# protocol::SegmentInfo's JSON (libbridge/src/protocol.cpp). The segment id
# travels as "segment_id" because "id" is the envelope's request id.
INFO_KEYS = {"name", "segment_id", "dtype", "shape", "strides", "nbytes", "total_bytes",
             "version", "meta_version", "attached", "owner_uid", "created_unix_ms", "page_size",
             "grants"}
STATS_KEYS = {"pid", "daemon", "uptime_s", "segments", "bytes", "clients", "attachments",
              "requests", "shm_prefix", "refused", "quarantined", "quarantined_count"}


def test_list_empty(client):
    assert client.list() == []


def test_list_fields(client):
    before_ms = time.time() * 1000
    a = client.create("alpha", (2, 3), "float32", meta={"k": 1})
    b = client.create("beta", (5,), "uint8")
    listed = sorted(client.list(), key=lambda s: s["name"])
    assert [s["name"] for s in listed] == ["alpha", "beta"]
    for entry in listed:
        assert set(entry) == INFO_KEYS
    alpha, beta = listed
    assert alpha["segment_id"] == a.id and beta["segment_id"] == b.id
    assert alpha["dtype"] == "float32" and beta["dtype"] == "uint8"
    assert alpha["shape"] == [2, 3] and alpha["strides"] == [12, 4]
    assert alpha["nbytes"] == 24 and beta["nbytes"] == 5
    assert alpha["total_bytes"] >= alpha["nbytes"] + 4096
    assert alpha["version"] == 0 and alpha["meta_version"] >= 1
    assert alpha["attached"] == 1
    assert alpha["owner_uid"] == os.getuid()
    assert before_ms - 5000 <= alpha["created_unix_ms"] <= time.time() * 1000 + 5000


def test_info_fields(client):
    seg = client.create("alpha", (4,), "complex64", meta={"unit": "V"})
    info = client.info("alpha")
    assert set(info) == INFO_KEYS | {"meta"}
    assert info["meta"] == {"unit": "V"}
    assert info["segment_id"] == seg.id
    assert info["strides"] == [8] and info["nbytes"] == 32
    updated = client.set_meta("alpha", {"unit": "mV"})
    assert set(updated) == INFO_KEYS | {"meta"}
    assert updated["meta"] == {"unit": "mV"}


def test_stats(client, daemon):
    stats = client.stats()
    assert set(stats) == STATS_KEYS
    assert stats["pid"] == daemon.proc.pid
    assert stats["segments"] == 0
    client.create("a", (1024,), "uint8")
    stats = client.stats()
    assert stats["segments"] == 1
    assert stats["bytes"] >= 1024
    assert stats["clients"] >= 1
    assert stats["shm_prefix"] == daemon.shm_prefix


def test_hello_and_socket_path(client, daemon):
    assert client.socket_path == daemon.socket
    hello = client.daemon
    assert hello["protocol"] == pybridge._pybridge.PROTOCOL_VERSION
    assert hello["pid"] == daemon.proc.pid
    assert hello["daemon"].startswith("bridged")
    assert daemon.socket in repr(client)


def test_default_socket_from_environment(daemon, monkeypatch):
    monkeypatch.setenv("BRIDGE_SOCKET", daemon.socket)
    assert pybridge.default_socket_path() == daemon.socket
    with pybridge.connect() as c:
        assert c.socket_path == daemon.socket
        assert c.list() == []


def test_connect_accepts_pathlike(daemon):
    from pathlib import Path

    with pybridge.connect(Path(daemon.socket)) as c:
        assert c.stats()["pid"] == daemon.proc.pid


def _ctl_json(daemon, *args):
    """`bridgectl ARGS` parsed as JSON; a failing bridgectl fails the test."""
    return json.loads(run_ctl(daemon, *args, check=True).stdout)


def test_list_matches_bridgectl(client, daemon):
    client.create("alpha", (2, 3), "float32", meta={"k": 1})
    client.create("beta", (5,), "uint8")
    ours = sorted(client.list(), key=lambda s: s["name"])
    theirs = _ctl_json(daemon, "ls", "--json")
    if isinstance(theirs, dict) and "segments" in theirs:
        theirs = theirs["segments"]
    assert sorted(theirs, key=lambda s: s["name"]) == ours


def test_info_matches_bridgectl(client, daemon):
    client.create("alpha", (2, 3), "float32", meta={"k": [1, 2]})
    assert _ctl_json(daemon, "info", "alpha", "--json") == client.info("alpha")
