# SPDX-License-Identifier: MIT
"""The daemon SIGKILLed under load (100 segments, 20 attached client
processes, a held writer lock) and restarted on the same socket (not
--ephemeral): nothing is lost, the clients' mappings work throughout, calls
fail fast while no daemon runs, and every client carries on by itself.

Also: a second daemon on the same socket is refused and touches nothing of
the first's (test_daemon.py checks the refusal itself: exit 13, the first's
pid in the message, the first keeps serving).
"""
import json
import subprocess

import numpy as np
import pytest

import pybridge
from conftest import binary
from crash_helpers import (RELEASE_LIMIT_S, assert_prefix_consistent, daemons,  # noqa: F401
                           data_hash, killed, object_path, staging, stop_clean, timed_call)
from mut_helpers import finish, kill, popen_child

N_SEGMENTS = 100
N_CLIENTS = 20
PER_CLIENT = N_SEGMENTS // N_CLIENTS
DTYPES = ["uint8", "int16", "int32", "int64", "float32", "float64", "complex64", "bool"]

#: A client process driven by JSON lines on stdin, one JSON reply line each.
CLIENT = """
    import json, os, sys, time, pybridge
    c = pybridge.connect(sys.argv[1])
    segs = {n: c.attach(n) for n in sys.argv[2].split(",")}
    guard = None
    print(json.dumps({"pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        out = {}
        try:
            if op == "set":
                segs[cmd["name"]].array.reshape(-1)[cmd["index"]] = cmd["value"]
            elif op == "get":
                out["values"] = segs[cmd["name"]].array.reshape(-1).tolist()
            elif op == "commit":
                out["version"] = segs[cmd["name"]].mark_changed()
            elif op == "lock":
                guard = segs[cmd["name"]].write(timeout=5)
                out["owner_died"] = guard.owner_died
            elif op == "guard_fill":
                guard.array[...] = cmd["value"]
            elif op == "guard_commit":
                out["version"] = guard.commit()
                guard = None
            elif op == "call":
                start = time.monotonic()
                try:
                    result = getattr(c, cmd["method"])(*cmd.get("args", []))
                    out["result"] = result if isinstance(result, (dict, list)) else repr(result)
                except pybridge.BridgeError as e:
                    out["error"] = type(e).__name__
                out["elapsed"] = time.monotonic() - start
            elif op == "reconnects":
                out["reconnects"] = c.reconnects
            else:
                out["exception"] = "unknown op " + op
        except Exception as e:
            out["exception"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out), flush=True)
"""


class Driven:
    """One CLIENT process."""

    def __init__(self, daemon, names):
        self.names = names
        self.proc = popen_child(CLIENT, daemon, ",".join(names))

    def started(self):
        line = self.proc.stdout.readline()
        assert line, f"client died: {self.proc.stderr.read()}"
        self.pid = json.loads(line)["pid"]

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def reply(self):
        line = self.proc.stdout.readline()
        assert line, f"client died: {self.proc.stderr.read()}"
        out = json.loads(line)
        assert "exception" not in out, out["exception"]
        return out

    def __call__(self, **cmd):
        self.send(**cmd)
        return self.reply()


def broadcast(clients, **cmd):
    """Sends `cmd` to every client, then collects the replies (so that the
    clients work in parallel)."""
    for c in clients:
        c.send(**cmd)
    return [c.reply() for c in clients]


def segment_name(i):
    return f"seg-{i:03d}"


def fill(seg, rng):
    arr = seg.array
    if arr.dtype == np.bool_:
        arr[...] = rng.integers(0, 2, arr.shape).astype(bool)
    elif arr.dtype.kind == "c":
        arr[...] = rng.standard_normal(arr.shape) + 1j * rng.standard_normal(arr.shape)
    elif arr.dtype.kind == "f":
        arr[...] = rng.standard_normal(arr.shape)
    else:
        arr[...] = rng.integers(0, 100, arr.shape)


def snapshot_catalog(client, daemon):
    """name -> everything a restart must preserve (hash read from /dev/shm)."""
    out = {}
    for info in client.list():
        full = client.info(info["name"])
        out[info["name"]] = {
            "segment_id": full["segment_id"], "dtype": full["dtype"], "shape": full["shape"],
            "strides": full["strides"], "nbytes": full["nbytes"], "meta": full["meta"],
            "meta_version": full["meta_version"], "version": full["version"],
            "total_bytes": full["total_bytes"], "owner_uid": full["owner_uid"],
            "created_unix_ms": full["created_unix_ms"], "hash": data_hash(daemon, full),
        }
    return out


def test_daemon_sigkill_and_restart_under_load(daemons):
    first = daemons.start()
    rng = np.random.default_rng(2024)
    owner = pybridge.connect(first.socket)
    segs = {}
    for i in range(N_SEGMENTS):
        name = segment_name(i)
        shape = (i % 7 + 1, i % 5 + 2) if i % 2 else (i + 1,)
        seg = owner.create(name, shape, DTYPES[i % len(DTYPES)], meta={"i": i, "tag": f"t{i}"})
        fill(seg, rng)
        for _ in range(i % 4):
            seg.mark_changed()
        if i % 10 == 0:
            owner.set_meta(name, {"i": i, "rewritten": True})
        segs[name] = seg
    segs["shared"] = owner.create("shared", (N_CLIENTS,), "int64")
    segs["locked"] = owner.create("locked", (8,), "int64")

    # Client k attaches seg-(5k .. 5k+4) and "shared"; client 0 also "locked".
    clients = []
    for k in range(N_CLIENTS):
        names = [segment_name(PER_CLIENT * k + j) for j in range(PER_CLIENT)] + ["shared"]
        clients.append(Driven(first, names + (["locked"] if k == 0 else [])))
    holder = clients[0]
    try:
        for c in clients:
            c.started()
        assert holder(op="lock", name="locked") == {"owner_died": False}
        holder(op="guard_fill", value=5)
        attached_before = {s["name"]: s["attached"] for s in owner.list()}
        assert attached_before == {**{segment_name(i): 2 for i in range(N_SEGMENTS)},
                                   "shared": N_CLIENTS + 1, "locked": 2}
        before = snapshot_catalog(owner, first)

        killed(first)

        # The daemon's death changed no byte.
        for name, item in before.items():
            assert data_hash(first, dict(item, name=name)) == item["hash"], name
        # Calls fail fast (each < 1 s), never hang: here and in every client.
        for method, args in [("list", ()), ("stats", ()), ("info", ("seg-000",)),
                             ("create", ("new", (2,), "uint8")),
                             ("set_meta", ("seg-002", {})), ("destroy", ("seg-003",)),
                             ("list", ())]:
            error, elapsed = timed_call(getattr(owner, method), *args)
            assert error == "DaemonUnavailable", (method, error)
            assert elapsed < RELEASE_LIMIT_S, f"{method} took {elapsed:.3f} s with no daemon"
        # An attach needs no daemon either when this process may open the
        # object itself: the table the dead daemon left still vouches for it
        # (nobody can destroy it meanwhile; the next daemon retires that table).
        error, elapsed = timed_call(owner.attach, "seg-001")
        assert error is None and elapsed < RELEASE_LIMIT_S, (error, elapsed)
        for method, args in [("list", []), ("info", ["shared"])]:
            for out in broadcast(clients, op="call", method=method, args=args):
                assert out.get("error") == "DaemonUnavailable", out
                assert out["elapsed"] < RELEASE_LIMIT_S, f"{method} took {out['elapsed']:.3f} s"
        # Attaching a name a client attached before needs no daemon: its
        # mapping cache serves it (the segment outlives the daemon, and no
        # one can destroy it meanwhile).
        for out in broadcast(clients, op="call", method="attach", args=["shared"]):
            assert "error" not in out and "'shared'" in out["result"], out
            assert out["elapsed"] < RELEASE_LIMIT_S

        # Mappings keep working: every client writes its element of "shared"
        # and commits; everyone (this process too) sees all of them.
        for k, c in enumerate(clients):
            c.send(op="set", name="shared", index=k, value=1000 + k)
        for c in clients:
            c.reply()
        shared_version = segs["shared"].version
        broadcast(clients, op="commit", name="shared")
        expected_shared = [1000 + k for k in range(N_CLIENTS)]
        for out in broadcast(clients, op="get", name="shared"):
            assert out["values"] == expected_shared
        assert segs["shared"].array.tolist() == expected_shared
        assert segs["shared"].version == shared_version + N_CLIENTS

        # The lock holder still holds the lock, and can commit.
        with pytest.raises(pybridge.Timeout):
            segs["locked"].write(timeout=0.02)
        locked_version = segs["locked"].version
        assert holder(op="guard_commit")["version"] == locked_version + 1
        assert segs["locked"].array.tolist() == [5] * 8
        # ...and takes it again (no death to report), to hold it across the restart.
        assert holder(op="lock", name="locked") == {"owner_died": False}
        holder(op="guard_fill", value=6)

        # What the restarted daemon must find: the versions and bytes as they
        # are now (only "shared" and "locked" changed while it was down).
        expected = {}
        for name, item in before.items():
            now = dict(item, version=segs[name].version,
                       hash=data_hash(first, dict(item, name=name)))
            if name not in ("shared", "locked"):
                assert now["hash"] == item["hash"], f"{name} changed while the daemon was down"
                assert now["version"] == item["version"]
            expected[name] = now

        second = daemons.start()
        with pybridge.connect(second.socket) as fresh:
            assert snapshot_catalog(fresh, second) == expected
            assert fresh.stats()["quarantined"] == []
            assert_prefix_consistent(second, fresh)

        # Each client's next call succeeds by itself; each reconnected once
        # and re-attached what it holds.
        for out in broadcast(clients, op="call", method="info", args=["shared"]):
            assert "error" not in out, out
        for out in broadcast(clients, op="reconnects"):
            assert out["reconnects"] >= 1
        owner.stats()  # this process's own client reconnects too
        assert owner.reconnects >= 1
        after = {s["name"]: s["attached"] for s in owner.list()}
        assert after == attached_before
        assert owner.stats()["attachments"] == sum(attached_before.values())

        # The lock held across the restart is still held, still works.
        with pytest.raises(pybridge.Timeout):
            segs["locked"].write(timeout=0.02)
        version = segs["locked"].version
        assert holder(op="guard_commit")["version"] == version + 1
        with segs["locked"].write(timeout=5) as arr:
            assert arr.tolist() == [6] * 8
            arr[...] = 7
        assert segs["locked"].version == version + 2
        # Mappings taken before the crash and through the new daemon agree.
        with owner.attach("shared") as again:
            assert again.array.tolist() == expected_shared

        for c in clients:
            c.proc.stdin.close()
            finish(c.proc)
    finally:
        for c in clients:
            kill(c.proc)
    for seg in segs.values():
        seg.close()
    owner.close()
    stop_clean(daemons.started[-1])


def test_refused_second_daemon_touches_nothing_of_the_first(daemons):
    """A second bridged on a live daemon's socket is refused before it looks
    at /dev/shm: even with --ephemeral it neither removes the first's
    segments nor what looks like one of its creates in progress, and the
    first keeps its socket and lock file."""
    first = daemons.start()
    with pybridge.connect(first.socket) as c:
        with c.create("kept", (4,), "int32", meta={"k": 1}) as seg:
            seg.array[...] = [1, 2, 3, 4]
    in_progress = object_path(first, ".creating.00000000deadbeef")
    in_progress.write_bytes(b"\0" * 4096)  # as a create of the first daemon would leave it
    lock_file = first.socket + ".lock"
    with open(lock_file) as f:
        assert f.read().strip() == str(first.proc.pid)

    for extra in (["--ephemeral"], []):
        proc = subprocess.run([binary("bridged"), "--socket", first.socket, *extra],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 13, proc.stderr  # 10 + already_exists
        assert str(first.proc.pid) in proc.stderr
    assert in_progress.exists(), "the refused daemon removed the first's staging object"
    assert object_path(first, "kept").exists()
    with open(lock_file) as f:
        assert f.read().strip() == str(first.proc.pid)
    with pybridge.connect(first.socket) as c:
        assert [s["name"] for s in c.list()] == ["kept"]
        with c.attach("kept") as seg:
            assert seg.array.tolist() == [1, 2, 3, 4]
    assert first.stop() == 0  # not ephemeral: "kept" stays

    # The next daemon removes the staging leftover and re-adopts "kept".
    second = daemons.start()
    assert staging(second) == []
    with pybridge.connect(second.socket) as c:
        info = c.info("kept")
        assert info["meta"] == {"k": 1}
        with c.attach("kept") as seg:
            assert seg.array.tolist() == [1, 2, 3, 4]
    stop_clean(second)
