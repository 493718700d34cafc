# SPDX-License-Identifier: MIT
"""The attach ledger (libbridge/internal/bridge/detail/attach_ledger.hpp): a
handle the daemon did not hand out (a direct attach, a cache hit) is counted
in a page its connection writes and the daemon reads whenever it counts who
holds what. So such an attach and its close send nothing, and the catalog is
right the moment either returns. What the page says is the client's word:
the daemon's side is in tests/cpp/unit/request_handler_test.cpp.
"""
import json
import mmap
import os
import socket
import struct

import pytest

import pybridge
from pb_helpers import popen_python, wait_for
from test_map_cache import Stopped


def requests(observer):
    """The daemon's request count (notices included) before this call."""
    return observer.stats()["requests"]


def test_attaches_and_closes_without_a_round_trip_are_counted_with_no_message(daemon, client):
    seg = client.create("counted", (16,), "uint8")
    with pybridge.connect(daemon.socket) as other, pybridge.connect(daemon.socket) as observer:
        before = requests(observer)
        with Stopped(daemon):  # nothing other does below may need the daemon
            held = [other.attach("counted") for _ in range(3)]  # direct, then cache hits
        assert other.map_cache()["direct"] == 1 and other.map_cache()["hits"] == 2
        # Counted already, and other sent nothing (only observer's info,
        # list and stats reached the daemon).
        assert observer.info("counted")["attached"] == 2
        assert [s["attached"] for s in observer.list() if s["name"] == "counted"] == [2]
        assert requests(observer) - before == 3
        held.pop().close()
        assert observer.info("counted")["attached"] == 2  # two handles still open
        before = requests(observer)
        for h in held:
            h.close()
        assert observer.info("counted")["attached"] == 1  # the creator alone
        assert requests(observer) - before == 2
        assert observer.stats()["attachments"] == 1
    seg.close()
    client.destroy("counted")


def test_a_client_that_dies_takes_its_count_with_it(daemon, client):
    client.create("dies", (4,), "int32").close()
    child = popen_python(
        """
        import sys, pybridge
        c = pybridge.connect(sys.argv[1])
        held = c.attach("dies")
        assert c.map_cache()["direct"] == 1
        print("holding", flush=True)
        sys.stdin.readline()
        """,
        daemon.socket,
    )
    try:
        assert child.stdout.readline().strip() == "holding"
        assert client.info("dies")["attached"] == 1
        child.kill()
        child.wait()
        # The daemon drops the ledger when it sees the connection end.
        assert wait_for(lambda: client.info("dies")["attached"] == 0)
    finally:
        child.kill()
    client.destroy("dies")


def hello_with_ledger(path):
    """A raw connection's hello: (socket, the ledger's descriptor)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    payload = json.dumps({"id": 1, "op": "hello", "client": "ledger-test",
                          "protocol": pybridge._pybridge.PROTOCOL_VERSION}).encode()
    s.sendall(struct.pack("<I", len(payload)) + payload)
    data, fds, _, _ = socket.recv_fds(s, 65536, 4)
    (length,) = struct.unpack("<I", data[:4])
    while len(data) < 4 + length:
        data += s.recv(4 + length - len(data))
    reply = json.loads(data[4:4 + length])
    assert reply["ok"] and reply["ledger"] > 0, reply
    ledger = fds[1 if "slots" in reply else 0]
    for fd in fds:
        if fd != ledger:
            os.close(fd)
    return s, ledger


def test_a_scribbled_ledger_costs_nothing_but_its_own_claims(daemon, client):
    seg = client.create("target", (8,), "uint8")
    target_id = seg.id
    s, fd = hello_with_ledger(daemon.socket)
    try:
        with pytest.raises(PermissionError):  # sealed: the daemon's mapping cannot SIGBUS
            os.ftruncate(fd, 0)
        page = mmap.mmap(fd, 4096)
        # Every entry garbage: ids of no segment, absurd counts.
        for i in range(256):
            struct.pack_into("<QQ", page, 16 * i, (0x9E3779B97F4A7C15 * (i + 1)) % 2**64,
                             2**64 - 1 - i)
        assert client.info("target")["attached"] == 1
        assert client.stats()["attachments"] == 1
        assert len(client.list()) == 1
        # Claiming a live segment its user may read counts as holding it.
        struct.pack_into("<QQ", page, 0, target_id, 1)
        assert client.info("target")["attached"] == 2
        page.close()
    finally:
        s.close()
        os.close(fd)
    assert wait_for(lambda: client.info("target")["attached"] == 1)  # its end drops them
    seg.close()
    client.destroy("target")
