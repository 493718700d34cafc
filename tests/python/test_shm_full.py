# SPDX-License-Identifier: MIT
"""A full /dev/shm, for real: the daemon runs in a private mount namespace
whose /dev/shm is a 16 MiB tmpfs (clients outside it get descriptors over the
socket, so they work as usual). A create that does not fit fails at once with
no_space and leaves nothing behind; what was created can be written to the
last byte without SIGBUS; set_meta on a full tmpfs succeeds or says no_space;
the daemon never dies.

Where unshare/mount is not permitted the real test is skipped (saying why;
in CI it fails instead, since it backs a README guarantee) and only the size
quota (--max-segment-bytes) is tested.
"""
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import pybridge
from conftest import SLOT_TABLE, TIME_SCALE, Daemon, run_peer, skip_or_fail
from crash_helpers import assert_prefix_consistent, objects, shm_root
from mut_helpers import finish, popen_child
from pb_helpers import python_env

MiB = 1024 * 1024
TMPFS_BYTES = 16 * MiB
#: "At once": a failing create costs at most the reservation it undoes.
NO_SPACE_LIMIT_S = 0.5 * TIME_SCALE
MOUNT = f"mount -t tmpfs -o size={TMPFS_BYTES} tmpfs /dev/shm"
#: Runs the daemon's argv ("$0" "$@") on a private 16 MiB /dev/shm.
WRAPPER = ("unshare", "-m", "sh", "-c", MOUNT + ' && exec "$0" "$@"')


@functools.lru_cache(maxsize=None)
def private_shm_unavailable():
    """Why a private tmpfs on /dev/shm cannot be had here (None if it can)."""
    try:
        probe = subprocess.run(["unshare", "-m", "sh", "-c", MOUNT], capture_output=True,
                               text=True, timeout=30)
    except FileNotFoundError:
        return "unshare(1) is not installed"
    if probe.returncode != 0:
        return ("cannot mount a private tmpfs on /dev/shm (unshare -m + mount need "
                f"CAP_SYS_ADMIN): {probe.stderr.strip()}; only the --max-segment-bytes "
                "quota is tested")
    return None


def free_bytes(root):
    st = os.statvfs(root)
    return st.f_bfree * st.f_frsize


def timed_no_space(client, name, nbytes, meta=None):
    start = time.monotonic()
    with pytest.raises(pybridge.NoSpace):
        client.create(name, (nbytes,), "uint8", meta=meta)
    elapsed = time.monotonic() - start
    assert elapsed < NO_SPACE_LIMIT_S, f"a create that does not fit took {elapsed:.3f} s"


#: Attaches every segment named in argv[2:] and writes every byte of each.
WRITE_EVERYTHING = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    total = 0
    for name in sys.argv[2:]:
        seg = c.attach(name)
        seg.array[...] = 0xA5
        seg.mark_changed()
        assert (seg.array == 0xA5).all()
        total += seg.nbytes
    print(total, flush=True)
"""


@pytest.fixture
def full_daemon(tmp_path):
    reason = private_shm_unavailable()
    if reason:
        skip_or_fail(reason)
    d = Daemon(tmp_path, wrapper=WRAPPER)
    yield d
    alive = d.proc.poll() is None
    code = d.stop()
    assert alive, f"bridged died ({code}):\n{d.log()}"
    assert code == 0, f"bridged exited with {code}:\n{d.log()}"
    assert d.leftover_shm() == []  # the host's /dev/shm never saw a thing


def test_full_dev_shm(full_daemon):
    d = full_daemon
    root = shm_root(d)
    st = os.statvfs(root)
    assert st.f_blocks * st.f_frsize == TMPFS_BYTES, "the daemon does not see the private tmpfs"
    c = pybridge.connect(d.socket)
    assert c.stats()["pid"] == d.proc.pid

    base = c.create("base", (6 * MiB,), "uint8")
    free = free_bytes(root)
    # Larger than the whole tmpfs, and larger than what is free: no_space at
    # once, nothing left behind, every page given back.
    for name, size in (("huge", 2 * TMPFS_BYTES), ("big", free + MiB)):
        timed_no_space(c, name, size)
        assert objects(d, root) == ["base"]
        assert free_bytes(root) == free, "a failed create kept pages"
    assert_prefix_consistent(d, c, root)
    # The next, smaller create succeeds.
    segs = {"base": base, "small": c.create("small", (MiB,), "uint8")}

    # Fill the tmpfs: ever smaller segments until even an empty one (header
    # and metadata slot) does not fit.
    for size in (MiB, 256 * 1024, 64 * 1024, 16 * 1024, 4096, 0):
        while True:
            name = f"fill-{len(segs)}"
            try:
                segs[name] = c.create(name, (size,), "uint8", meta={"size": size})
            except pybridge.NoSpace:
                break
        # The same create again (metadata included: without any, a segment
        # has no metadata page, so it needs a page less).
        timed_no_space(c, f"fill-{len(segs)}", size, meta={"size": size})
    assert_prefix_consistent(d, c, root)
    assert free_bytes(root) < 128 * 1024

    # Every byte of every segment can be written, from other processes (a
    # lazily backed page would be a SIGBUS here).
    writer = popen_child(WRITE_EVERYTHING, d, *segs)
    writer.stdin.close()
    assert int(finish(writer)) == sum(s.nbytes for s in segs.values())
    peer = run_peer(d, "fill", "base", 90, check=False)
    assert peer.returncode == 0, f"bridge_peer fill: {peer.returncode} {peer.stderr}"
    assert (base.array == 90).all() and (segs["small"].array == 0xA5).all()

    # set_meta writes the second metadata slot: with the tmpfs full it
    # succeeds or fails with no_space (a create reserves only the pages its
    # metadata fills in the first slot; set_meta reserves the pages it
    # writes first), and the metadata stays readable. Twice each, so both
    # slots are written.
    for name in [n for n in segs if n.startswith("fill-")][:4]:
        for round in range(2):
            old = c.info(name)["meta"]
            new = {"rewritten": name, "round": round}
            try:
                assert c.set_meta(name, new)["meta"] == new
            except pybridge.NoSpace:
                assert c.info(name)["meta"] == old
            assert d.proc.poll() is None, "bridged died"

    # Metadata of many pages needs pages nobody has reserved yet: with fewer
    # free than it fills, no_space, and nothing changes (a write without the
    # reservation would have hit a hole of the full tmpfs: SIGBUS).
    name = next(n for n in segs if n.startswith("fill-"))
    old = c.info(name)["meta"]
    free = free_bytes(root)
    big_meta = {"pad": "m" * (60 * 1024)}
    assert free < 60 * 1024, "the tmpfs is not full enough to refuse a large metadata update"
    with pytest.raises(pybridge.NoSpace):
        c.set_meta(name, big_meta)
    assert c.info(name)["meta"] == old
    assert free_bytes(root) == free, "a refused metadata update kept pages"
    assert d.proc.poll() is None, "bridged died"
    # With room again (two 1 MiB segments gone), the same update succeeds.
    for other in [n for n in segs if n.startswith("fill-") and n != name][:2]:
        segs.pop(other).close()
        c.destroy(other)
    assert c.set_meta(name, big_meta)["meta"] == big_meta
    assert c.info(name)["meta"] == big_meta

    # Freeing space makes room again.
    for name in list(segs):
        segs.pop(name).close()
        c.destroy(name)
    assert objects(d, root) == []
    # All but the daemon's slot table (bridge/detail/slot_table.hpp).
    table = (root / (d.shm_prefix.lstrip("/") + SLOT_TABLE)).stat().st_blocks * 512
    assert free_bytes(root) == TMPFS_BYTES - table
    with c.create("after", (8 * MiB,), "uint8") as seg:
        seg.array[...] = 1
    c.destroy("after")
    assert c.stats()["pid"] == d.proc.pid
    c.close()


#: Runs in the daemon's mount namespace (nsenter), so that it shares its
#: private /dev/shm and creates and destroys directly (direct_create.hpp):
#: fills the tmpfs, then writes every byte; prints what it saw as JSON.
DIRECT_FILL = """
    import json, os, sys, time, pybridge
    socket, prefix, limit_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    root = "/dev/shm"
    def free():
        st = os.statvfs(root)
        return st.f_bfree * st.f_frsize
    def leftovers():
        return sorted(n for n in os.listdir(root)
                      if n.startswith(prefix) and ".creating." in n)
    c = pybridge.connect(socket)
    c.list()
    before = c.stats()["requests"]
    segs, refusals = {}, []
    for size in (4 << 20, 1 << 20, 64 << 10, 4096, 0):
        while True:
            name = f"direct-{len(segs)}"
            try:
                segs[name] = c.create(name, (size,), "uint8", meta={"size": size})
            except pybridge.NoSpace:
                break
        # Again: refused at once, every page given back, nothing left behind.
        room = free()
        start = time.monotonic()
        try:
            c.create(f"direct-{len(segs)}", (size,), "uint8", meta={"size": size})
            refusals.append("created")
        except pybridge.NoSpace:
            refusals.append(time.monotonic() - start < limit_s and free() == room
                            and leftovers() == [])
    requests = c.stats()["requests"] - before - 1
    for seg in segs.values():  # a lazily backed page would be a SIGBUS here
        seg.array[...] = 0xA5
        assert (seg.array == 0xA5).all()
    listed = sorted(s["name"] for s in c.list())
    for name, seg in segs.items():
        seg.close()
        c.destroy(name)
    left = c.list()  # a request: the daemon has read the destroys and let go
    print(json.dumps({"made": len(segs), "refusals": refusals, "requests": requests,
                      "free_at_end": free(), "listed_all": listed == sorted(segs),
                      "left": left}))
"""


def test_direct_creates_on_a_full_dev_shm(full_daemon):
    """The same for a client that shares the daemon's /dev/shm, whose creates
    need no round trip: it reserves the sync and data pages and writes the
    header with one pwrite, and a full tmpfs is NoSpace at either step."""
    d = full_daemon
    enter = ["nsenter", "-t", str(d.proc.pid), "-m", "--"]
    with pybridge.connect(d.socket) as c:
        used = TMPFS_BYTES - free_bytes(shm_root(d))  # the slot table
        child = subprocess.run(
            [*enter, sys.executable, "-c", textwrap.dedent(DIRECT_FILL), d.socket,
             d.shm_prefix.lstrip("/"), str(NO_SPACE_LIMIT_S)],
            capture_output=True, text=True, env=python_env(), timeout=120 * TIME_SCALE)
        assert child.returncode == 0, f"{child.returncode}: {child.stderr}"
        seen = json.loads(child.stdout)
        assert seen["made"] > 4 and seen["refusals"] == [True] * 5, seen
        # Direct: only the drain pokes, not a request per create.
        assert seen["requests"] < seen["made"] // 4, seen
        assert seen["listed_all"] and seen["left"] == [], seen
        assert seen["free_at_end"] == TMPFS_BYTES - used, seen
        assert c.list() == []
        assert objects(d, shm_root(d)) == []
        assert d.proc.poll() is None, "bridged died"


def test_size_quota(tmp_path):
    """--max-segment-bytes: a create above it fails at once and leaves nothing;
    one at the limit succeeds. (The only no-space check where a private tmpfs
    cannot be mounted.)"""
    d = Daemon(tmp_path, "--max-segment-bytes", str(MiB))
    try:
        with pybridge.connect(d.socket) as c:
            start = time.monotonic()
            with pytest.raises(pybridge.LimitExceeded):  # as test_errors.py pins it
                c.create("over", (MiB + 1,), "uint8")
            assert time.monotonic() - start < NO_SPACE_LIMIT_S
            assert objects(d) == []
            with c.create("at-limit", (MiB,), "uint8") as seg:
                seg.array[...] = 1
            assert objects(d) == ["at-limit"]
            c.destroy("at-limit")
    finally:
        assert d.stop(signal.SIGTERM) == 0
    assert d.leftover_shm() == []
