# SPDX-License-Identifier: MIT
"""Helpers for the crash-recovery tests (issue 4): daemons that keep their
segments across restarts, what a daemon's prefix holds in /dev/shm, hashes
of segment bytes, raw protocol clients, and deadlines.

Every wait here polls a real condition against a deadline; none sleeps to
synchronise.
"""
import hashlib
import json
import os
import signal
import socket
import struct
import time
from pathlib import Path

import pytest

import pybridge
from conftest import SLOT_TABLE, TIME_SCALE, Daemon

#: Staging objects of creates in progress: <prefix>.creating.<hex>.
STAGING_INFIX = ".creating."
#: A stream's second object, its reader table: <prefix>.readers.<id hex>.
READER_TABLE_INFIX = ".readers."

#: The bound the issue sets for a dead client's state to be released and
#: for a call to fail while no daemon runs (scaled for sanitized binaries).
RELEASE_LIMIT_S = 1.0 * TIME_SCALE


# ---- daemons that outlive themselves ------------------------------------------

class Daemons:
    """Starts non-ephemeral daemons on one socket (a restart is a new start
    in the same directory). At teardown whatever still runs is killed and
    anything left under the prefix is unlinked, so a failed test leaves
    nothing in /dev/shm; the tests themselves check that their own clean-up
    (destroy everything, SIGTERM) left nothing."""

    def __init__(self, directory):
        self.directory = directory
        self.started = []
        self.prefix = None

    def start(self, *extra_args, env=None, wrapper=(), ephemeral=False):
        d = Daemon(self.directory, *extra_args, ephemeral=ephemeral, env=env, wrapper=wrapper)
        self.started.append(d)
        self.prefix = d.shm_prefix
        return d

    def start_with_fault(self, step, *extra_args):
        """A daemon that SIGKILLs itself at fault step `step`."""
        return self.start(*extra_args, env=dict(os.environ, BRIDGED_FAULT=step))

    def cleanup(self):
        for d in self.started:
            if d.proc.poll() is None:
                d.stop(signal.SIGKILL)
            elif not d._log.closed:
                d._log.close()
        if self.prefix:
            for path in Path("/dev/shm").glob(self.prefix.lstrip("/") + "*"):
                path.unlink(missing_ok=True)


@pytest.fixture
def daemons(tmp_path):
    ds = Daemons(tmp_path)
    yield ds
    ds.cleanup()


def killed(daemon):
    """SIGKILLs `daemon` and reaps it."""
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL


def stop_clean(daemon):
    """The end of a test: destroys every segment and quarantined object,
    stops the daemon with SIGTERM and checks that nothing is left."""
    with pybridge.connect(daemon.socket) as c:
        for info in c.list():
            c.destroy(info["name"])
        for q in c.stats()["quarantined"]:
            c.destroy(q["name"])
        assert c.list() == [] and c.stats()["quarantined"] == []
    assert daemon.stop() == 0, daemon.log()
    assert daemon.leftover_shm() == [], "segments left in /dev/shm"


# ---- what the prefix holds ------------------------------------------------------

def shm_root(daemon):
    """/dev/shm as the daemon sees it (its mount namespace, through /proc)."""
    return Path(f"/proc/{daemon.proc.pid}/root/dev/shm")


def objects(daemon, root=Path("/dev/shm")):
    """Names (after the prefix) of every object under the daemon's prefix but
    its slot table (which lives as long as the daemon) and streams' reader
    tables (see reader_tables)."""
    prefix = daemon.shm_prefix.lstrip("/")
    return sorted(p.name[len(prefix):] for p in root.glob(prefix + "*")
                  if p.name[len(prefix):] != SLOT_TABLE
                  and not p.name[len(prefix):].startswith(READER_TABLE_INFIX))


def reader_tables(daemon, root=Path("/dev/shm")):
    """The daemon's streams' reader tables: one per stream, named for its id."""
    prefix = daemon.shm_prefix.lstrip("/") + READER_TABLE_INFIX
    return sorted(p.name[len(prefix):] for p in root.glob(prefix + "*"))


def staging(daemon, root=Path("/dev/shm")):
    return [n for n in objects(daemon, root) if n.startswith(STAGING_INFIX)]


def object_path(daemon, name, root=Path("/dev/shm")):
    return root / (daemon.shm_prefix.lstrip("/") + name)


def data_hash(daemon, info, root=Path("/dev/shm")):
    """SHA-256 of a segment's array bytes, read from its shm object (not
    through a mapping the daemon handed out)."""
    path = object_path(daemon, info["name"], root)
    with open(path, "rb") as f:
        f.seek(info["total_bytes"] - info["nbytes"])
        data = f.read(info["nbytes"])
    assert len(data) == info["nbytes"]
    return hashlib.sha256(data).hexdigest()


def assert_prefix_consistent(daemon, client, root=Path("/dev/shm")):
    """No staging object; every object under the prefix is a listed (or
    quarantined) segment, and every listed segment is an object that
    attaches (its header validates) with the size it is listed with."""
    assert staging(daemon, root) == [], "a create left its staging object"
    listed = {s["name"]: s for s in client.list()}
    quarantined = {q["name"] for q in client.stats()["quarantined"]}
    assert set(objects(daemon, root)) == set(listed) | quarantined
    for name, info in listed.items():
        assert object_path(daemon, name, root).stat().st_size == info["total_bytes"]
        with client.attach(name) as seg:
            assert seg.nbytes == info["nbytes"]
            assert list(seg.shape) == info["shape"]


# ---- time -------------------------------------------------------------------------

def within(predicate, limit, what):
    """Polls `predicate` until it holds; fails if that takes `limit` seconds
    (measured from the call). Returns the time it took."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        if elapsed > limit:
            raise AssertionError(f"{what}: not within {limit} s")
        time.sleep(0.002)


def timed_call(fn, *args):
    """(exception type name or None, seconds) of one call."""
    start = time.monotonic()
    try:
        fn(*args)
        error = None
    except pybridge.BridgeError as e:
        error = type(e).__name__
    return error, time.monotonic() - start


# ---- raw protocol ---------------------------------------------------------------

def frame(obj):
    payload = json.dumps(obj).encode()
    return struct.pack("<I", len(payload)) + payload


class RawClient:
    """A client that speaks frames itself, so a test can stop between
    sending a request and reading its reply."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.next_id = 1
        reply = self.call("hello", protocol=pybridge._pybridge.PROTOCOL_VERSION, client="crash-test raw")
        assert reply["ok"], reply

    def send(self, op, **fields):
        self.sock.sendall(frame({"id": self.next_id, "op": op, **fields}))
        self.next_id += 1

    def recv(self):
        (length,) = struct.unpack("<I", self._exact(4))
        return json.loads(self._exact(length))

    def call(self, op, **fields):
        self.send(op, **fields)
        return self.recv()

    def _exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError("daemon hung up")
            data += chunk
        return data

    def close(self):
        self.sock.close()
