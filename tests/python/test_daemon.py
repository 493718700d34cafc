# SPDX-License-Identifier: MIT
"""bridged as a process: one daemon per socket, stale sockets, restarts,
clean stops, where the socket goes."""
import contextlib
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

import pybridge
from conftest import TIME_SCALE, Daemon, binary, run_peer, skip_or_fail


def test_second_daemon_on_same_socket_is_refused_and_first_keeps_serving(daemon):
    proc = subprocess.run([binary("bridged"), "--socket", daemon.socket],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 13  # already_exists
    assert "already serves" in proc.stderr
    assert str(daemon.proc.pid) in proc.stderr
    with pybridge.connect(daemon.socket) as c:
        c.create("still-serving", (2,), "uint8")
        assert [s["name"] for s in c.list()] == ["still-serving"]
        c.destroy("still-serving")


def test_restart_after_sigkill_replaces_stale_socket_and_readopts_segments(tmp_path):
    first = Daemon(tmp_path)
    with pybridge.connect(first.socket) as c:
        seg = c.create("survivor", (3, 2), "float64", meta={"k": [1, 2]})
        seg.array[...] = [[1.5, 2.5], [3.5, 4.5], [5.5, 6.5]]
        survivor_id = c.info("survivor")["segment_id"]
        first.stop(signal.SIGKILL)
        assert os.path.exists(first.socket)  # the dead daemon's socket file is stale now
        with pytest.raises(pybridge.DaemonUnavailable):
            c.list()
        # The client's mapping outlives the daemon.
        seg.array[0, 0] = 9.0

    second = Daemon(tmp_path)
    try:
        with pybridge.connect(second.socket) as c:
            info = c.info("survivor")
            assert info["segment_id"] == survivor_id
            assert info["dtype"] == "float64" and info["shape"] == [3, 2]
            assert info["meta"] == {"k": [1, 2]}
            with c.attach("survivor") as again:
                assert again.array.tolist() == [[9.0, 2.5], [3.5, 4.5], [5.5, 6.5]]
    finally:
        assert second.stop() == 0
    assert second.leftover_shm() == []


def test_sigint_stops_cleanly_and_removes_the_socket(tmp_path):
    d = Daemon(tmp_path)
    run_peer(d, "create", "x", "int16", "4")
    assert d.stop(signal.SIGINT) == 0
    assert not os.path.exists(d.socket)
    assert d.leftover_shm() == []  # --ephemeral


@contextlib.contextmanager
def bridged_without_socket_option(env):
    """Runs bridged with no --socket, so that it picks its path from `env`."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([binary("bridged"), "--ephemeral", "--ready-fd", str(write_fd)],
                            env=env, pass_fds=(write_fd,), stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            assert ready.readline() == "ready\n"
        yield proc
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_socket_directory_is_created_private(tmp_path):
    sock = tmp_path / "a" / "b" / "bridged.sock"
    with bridged_without_socket_option(dict(os.environ, BRIDGE_SOCKET=str(sock))):
        assert sock.exists()  # $BRIDGE_SOCKET chose the path
        for directory in (sock.parent, sock.parent.parent):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600


def test_default_socket_follows_xdg_runtime_dir(tmp_path):
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path))
    env.pop("BRIDGE_SOCKET", None)
    with bridged_without_socket_option(env):
        assert (tmp_path / "shmbridge" / "bridged.sock").exists()


def test_help_describes_the_options():
    out = subprocess.run([binary("bridged"), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    for option in ("--socket", "--ephemeral", "--ready-fd", "BRIDGE_SOCKET"):
        assert option in out.stdout


def test_client_disconnect_detaches(daemon):
    with pybridge.connect(daemon.socket) as owner:
        seg = owner.create("watched", (4,), "uint8")  # noqa: F841 (stays attached)
        holder = subprocess.Popen([binary("bridge_peer"), "--socket", daemon.socket, "hold",
                                   "watched"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert holder.stdout.readline() == "attached\n"
        assert owner.info("watched")["attached"] == 2
        holder.kill()  # no detach message: the daemon must notice the closed socket
        holder.wait()
        # The hang-up and our next request may reach the daemon's event loop
        # in the same wake-up, in either order; a few round trips (no sleeps)
        # let it process the hang-up.
        for _ in range(100):
            if owner.info("watched")["attached"] == 1:
                break
        assert owner.info("watched")["attached"] == 1
        owner.destroy("watched")


def test_segments_are_private_shm_objects_named_under_the_daemon_prefix(daemon):
    with pybridge.connect(daemon.socket) as c:
        seg = c.create("private", (8,), "uint8")
        path = Path("/dev/shm") / (daemon.shm_prefix.lstrip("/") + "private")
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()
        assert st.st_size == c.info("private")["total_bytes"]
        seg.close()
        c.destroy("private")
        assert not path.exists()


def test_create_never_adopts_an_object_it_did_not_create(daemon):
    # A stranger's object under our prefix (created after the daemon started,
    # so it was not re-adopted at start-up): O_EXCL refuses it and the stranger's
    # bytes are left alone.
    path = Path("/dev/shm") / (daemon.shm_prefix.lstrip("/") + "squatted")
    path.write_bytes(b"not a segment")
    try:
        with pybridge.connect(daemon.socket) as c:
            with pytest.raises(pybridge.AlreadyExists):
                c.create("squatted", (4,), "uint8")
            assert "squatted" not in [s["name"] for s in c.list()]
        assert path.read_bytes() == b"not a segment"
    finally:
        path.unlink()


def _wait_until(condition, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_idle_connection_is_closed_and_the_client_reconnects_by_itself(tmp_path):
    d = Daemon(tmp_path, "--idle-timeout", "0.3")
    try:
        idle = pybridge.connect(d.socket)
        holder = pybridge.connect(d.socket)
        seg = holder.create("held", (2,), "uint8")  # a connection holding a segment stays
        assert holder.stats()["clients"] == 2
        # The daemon's own count is the signal: wait for it to drop the idle one.
        _wait_until(lambda: holder.stats()["clients"] == 1)
        assert idle.reconnects == 0
        assert [s["name"] for s in idle.list()] == ["held"]  # reconnects transparently
        assert idle.reconnects == 1
        assert holder.reconnects == 0 and holder.info("held")["attached"] == 1
        seg.close()
        holder.destroy("held")
        idle.close()
        holder.close()
    finally:
        assert d.stop() == 0, d.log()
    assert "idle" in d.log()


def test_calls_while_the_daemon_is_down_fail_fast_then_reconnect(tmp_path):
    import time

    d = Daemon(tmp_path)
    client = pybridge.connect(d.socket)
    seg = client.create("kept", (3,), "int64")
    seg.array[:] = [1, 2, 3]
    d.proc.kill()
    assert d.stop() == -signal.SIGKILL
    for _ in range(3):
        start = time.monotonic()
        with pytest.raises(pybridge.DaemonUnavailable):
            client.list()
        assert time.monotonic() - start < 1.0 * TIME_SCALE
    # The mapping does not need the daemon.
    seg.array[1] = 20
    assert seg.array.tolist() == [1, 20, 3]
    restarted = Daemon(tmp_path)  # same socket: re-adopts "kept"
    try:
        assert client.info("kept")["attached"] == 1  # reconnected and re-attached
        assert client.reconnects == 1
        assert client.attach("kept").array.tolist() == [1, 20, 3]
        seg.close()
    finally:
        client.close()
        assert restarted.stop() == 0, restarted.log()
    assert restarted.leftover_shm() == []


GiB = 1024 ** 3


def _big_create_size():
    """A create that takes the daemon long enough to be seen under way (it
    reserves every page: about a second for 4 GiB), and that /dev/shm can
    hold with room to spare; None when it cannot."""
    st = os.statvfs("/dev/shm")
    free = st.f_bavail * st.f_frsize
    for size in (4 * GiB, 2 * GiB, 1 * GiB):
        if free >= 3 * size:
            return size
    return None


def _staging_objects(d):
    """The daemon's objects of creates under way (see adoption.hpp)."""
    prefix = d.shm_prefix.lstrip("/") + ".creating."
    return sorted(p.name for p in Path("/dev/shm").glob(prefix + "*"))


def _start_big_create(client, name, size):
    """Runs client.create(name, (size,)) on a thread; returns it and a dict
    that gets "segment" or "error"."""
    import threading

    outcome = {}

    def create():
        try:
            outcome["segment"] = client.create(name, (size,), "uint8")
        except BaseException as e:  # reported by the test
            outcome["error"] = e

    thread = threading.Thread(target=create)
    thread.start()
    return thread, outcome


def test_a_large_create_does_not_stall_other_clients(tmp_path):
    size = _big_create_size()
    if size is None:
        skip_or_fail("/dev/shm cannot hold three 1 GiB segments")
    # The daemon's own create (a direct one is built by its client, and
    # takes the name only once whole: test_direct_create.py).
    d = Daemon(tmp_path, "--no-direct-create")
    try:
        creator = pybridge.connect(d.socket)
        other = pybridge.connect(d.socket)
        small = other.create("small", (4096,), "uint8")
        thread, outcome = _start_big_create(creator, "big", size)
        # The daemon is building it once its staging object exists.
        _wait_until(lambda: _staging_objects(d) or not thread.is_alive(), timeout=30 * TIME_SCALE)
        assert _staging_objects(d), f"the create finished before it was seen under way: {outcome}"
        # Another client is served meanwhile. Had the build run on the io
        # thread, these would be answered only after it, by when its staging
        # object is renamed into place.
        assert [s["name"] for s in other.list()] == ["small"]  # "big" is not there yet
        with other.attach("small") as again:
            assert again.nbytes == 4096
        with pytest.raises(pybridge.AlreadyExists):
            other.create("big", (1,), "uint8")  # the name is taken
        with pytest.raises(pybridge.NotFound):
            other.attach("big")
        with pytest.raises(pybridge.NotFound):
            other.destroy("big")
        assert _staging_objects(d), "other clients were answered only after the large create"
        thread.join()
        assert "error" not in outcome, outcome
        big = outcome["segment"]
        assert big.nbytes == size
        assert _staging_objects(d) == []
        assert sorted(s["name"] for s in other.list()) == ["big", "small"]
        big.array[-1] = 7  # every page is there: no SIGBUS at the end
        with other.attach("big") as seen:
            assert seen.array[-1] == 7
        big.close()
        creator.destroy("big")
        small.close()
        other.destroy("small")
        creator.close()
        other.close()
    finally:
        assert d.stop() == 0, d.log()
    assert d.leftover_shm() == []


def test_stopping_while_a_large_create_is_built_leaves_nothing(tmp_path):
    size = _big_create_size()
    if size is None:
        skip_or_fail("/dev/shm cannot hold three 1 GiB segments")
    # Not ephemeral: a clean stop keeps segments, so whatever is left of
    # the create would stay.
    d = Daemon(tmp_path, ephemeral=False)
    try:
        creator = pybridge.connect(d.socket)
        thread, outcome = _start_big_create(creator, "big", size)
        _wait_until(lambda: _staging_objects(d) or not thread.is_alive(), timeout=30 * TIME_SCALE)
        assert _staging_objects(d), f"the create finished before it was seen under way: {outcome}"
        assert d.stop() == 0, d.log()
        thread.join()
        assert isinstance(outcome.get("error"), pybridge.BridgeError), outcome
        creator.close()
    finally:
        d.stop()
    assert d.leftover_shm() == [], "a create cut short by the stop left its object"
