# SPDX-License-Identifier: MIT
"""Containers without --ipc=host (issue 10, part 7): a client whose /dev/shm
is its own, like a container's, shares segments with the host because the
daemon passes descriptors over the socket; only the socket's directory needs
to be reachable.

The "container" is a private mount namespace (`unshare -m`) with a fresh
1 MiB tmpfs on /dev/shm, a fresh tmpfs on /run with the daemon's socket
directory bind-mounted at /run/shmbridge (what `-v
/run/user/$UID/shmbridge:/run/shmbridge` does), and the original socket
directory hidden under an empty tmpfs, so that the client can only reach the
daemon through the bind mount. It finds the daemon through BRIDGE_SOCKET, as
a container would. A client that opened anything by name in /dev/shm (a
segment, the slot table) would find nothing there and fail.

Where unshare/mount is not permitted the test skips (saying why); in CI it
fails instead, since it backs a README guarantee.
"""
import functools
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import pybridge
from conftest import Daemon, TIME_SCALE, skip_or_fail
from mut_helpers import expect_line, finish, send
from pb_helpers import python_env

MiB = 1024 * 1024
CONTAINER_SHM_BYTES = 1 * MiB
#: Bigger than the container's whole /dev/shm: --shm-size does not matter.
BIG_BYTES = 4 * MiB
#: Builds the container's view, then execs "$0" "$@". $1.. are not used by
#: the mounts; SOCKET_DIR comes from the environment.
CONTAINER = (
    f'mount -t tmpfs -o size={CONTAINER_SHM_BYTES} tmpfs /dev/shm'
    ' && mount -t tmpfs -o size=1m tmpfs /run && mkdir /run/shmbridge'
    ' && mount --bind "$SOCKET_DIR" /run/shmbridge'
    ' && mount -t tmpfs -o size=1m tmpfs "$SOCKET_DIR"'
    ' && exec "$0" "$@"')


@functools.lru_cache(maxsize=None)
def private_mounts_unavailable():
    """Why a private /dev/shm and bind mounts cannot be had here (None if
    they can)."""
    if os.geteuid() != 0:
        return "needs root (unshare -m and mount need CAP_SYS_ADMIN)"
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", CONTAINER, "true"], capture_output=True, text=True,
            timeout=30, env=dict(os.environ, SOCKET_DIR="/tmp"))
    except FileNotFoundError:
        return "unshare(1) is not installed"
    if probe.returncode != 0:
        return f"cannot build a private mount namespace: {probe.stderr.strip()}"
    return None


CHILD = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import pybridge

    socket_dir = sys.argv[1]
    shm = os.statvfs("/dev/shm")
    client = pybridge.connect()  # BRIDGE_SOCKET=/run/shmbridge/bridged.sock
    host = client.attach("from-host")
    print(json.dumps({
        "socket": client.socket_path,
        "shm_bytes": shm.f_blocks * shm.f_frsize,
        "shm_files": os.listdir("/dev/shm"),
        "socket_dir_hidden": os.listdir(socket_dir) == [],
        "seen": host.array.tolist(),
    }), flush=True)
    host.array[1] = 222
    host.mark_changed()
    big = client.create("from-container", (%d,), "uint8", meta={"made": "in container"})
    big.array[:] = 7
    print("written", flush=True)
    sys.stdin.readline()  # the host wrote
    print(json.dumps({
        "big_last": int(big.array[-1]),
        "host_now": host.array.tolist(),
        "shm_files": os.listdir("/dev/shm"),
    }), flush=True)
    big.close()
    host.close()
    client.close()
""" % BIG_BYTES)


def test_a_client_with_a_private_dev_shm_shares_the_hosts_segments(tmp_path):
    reason = private_mounts_unavailable()
    if reason:
        skip_or_fail(reason)
    socket_dir = tmp_path / "shmbridge"  # as /run/user/$UID/shmbridge
    daemon = Daemon(tmp_path, socket=socket_dir / "bridged.sock")
    host_client = pybridge.connect(daemon.socket)
    child = None
    try:
        host = host_client.create("from-host", (3,), "int64")
        host.array[:] = [111, 0, 0]
        host.mark_changed()

        env = dict(python_env(), SOCKET_DIR=str(socket_dir),
                   BRIDGE_SOCKET="/run/shmbridge/bridged.sock")
        child = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", CONTAINER, sys.executable, "-c", CHILD,
             str(socket_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        line = child.stdout.readline()
        if not line:
            child.wait(timeout=30)
            raise AssertionError(f"the contained client failed ({child.returncode}):\n"
                                 f"{child.stderr.read()}\n{daemon.log()}")
        first = json.loads(line)
        # The container's own /dev/shm: small, empty, and not the host's.
        assert first["shm_bytes"] == CONTAINER_SHM_BYTES
        assert first["shm_files"] == []
        assert first["socket_dir_hidden"], "the client could reach the original socket path"
        assert first["socket"] == "/run/shmbridge/bridged.sock"
        # It sees the host's write ...
        assert first["seen"] == [111, 0, 0]
        expect_line(child, "written")
        # ... the host sees its writes, to the host's segment and to one it
        # created four times the size of its own /dev/shm.
        assert host.array.tolist() == [111, 222, 0]
        big = host_client.attach("from-container")
        assert big.nbytes == BIG_BYTES
        assert big.meta == {"made": "in container"}
        assert np.all(big.array == 7)
        big.array[-1] = 9
        big.mark_changed()
        host.array[2] = 333
        host.mark_changed()
        send(child, "go")
        last = json.loads(child.stdout.readline())
        assert last["big_last"] == 9
        assert last["host_now"] == [111, 222, 333]
        # Nothing ever landed in the container's /dev/shm.
        assert last["shm_files"] == []
        finish(child, timeout=30 * TIME_SCALE)
        child = None
        big.close()
        host.close()
        host_client.destroy("from-container")
        host_client.destroy("from-host")
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.communicate(timeout=30)
        host_client.close()
        code = daemon.stop()
    assert code == 0, daemon.log()
    assert daemon.leftover_shm() == []
