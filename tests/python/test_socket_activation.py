# SPDX-License-Identifier: MIT
"""Socket activation (issue 10, part 6): bridged started by a service manager
on a listening socket it passes with the LISTEN_FDS protocol (sd_listen_fds(3)).

The end-to-end tests use `systemd-socket-activate` (Debian's systemd
package), which does what a systemd .socket unit does without systemd as
PID 1: it binds and listens on the path, waits for the first connection,
then execs the daemon in its own place (same pid) with LISTEN_PID and
LISTEN_FDS set and the socket on descriptor 3. The connecting client's
request waits in the socket's backlog until the daemon answers it: its
connect is what starts the daemon.

The refusals run bridged through a small Python launcher that puts whatever
the test wants on descriptor 3, sets LISTEN_PID to its own pid and execs
bridged (so the pid matches, as with a real service manager).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import pybridge
from conftest import TIME_SCALE, Daemon, binary, skip_or_fail

#: bridged's exit status for invalid_argument / already_exists (10 + code).
EXIT_INVALID_ARGUMENT = 11
EXIT_ALREADY_EXISTS = 13
#: bridgectl's exit status for daemon_unavailable.
EXIT_DAEMON_UNAVAILABLE = 16
TIMEOUT_S = 30 * TIME_SCALE


def shm_prefix_for(path):
    """registry.cpp's shm_prefix_for_socket: the prefix a daemon serving
    `path` names its objects with (FNV-1a 64 of the path, 12 hex digits)."""
    value = 0xCBF29CE484222325
    for byte in str(path).encode():
        value = ((value ^ byte) * 0x100000001B3) % (1 << 64)
    return f"shmbridge.{value:016x}"[:22] + "."


def activator():
    found = shutil.which("systemd-socket-activate")
    if found is None:
        skip_or_fail("systemd-socket-activate is not installed (Debian package systemd; "
                     "scripts/install-deps.sh installs it)")
    return found


def sanitizer_env_args():
    """systemd-socket-activate passes on only PATH, TERM, USER and HOME (and
    what -E names): the sanitizer settings of `make test-asan` must be named."""
    args = []
    for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"):
        if name in os.environ:
            args += ["-E", name]
    return args


class Activated:
    """systemd-socket-activate listening on `socket`, ready to exec bridged
    with `args` at the first connection. Its stderr (then the daemon's, the
    same process after the exec) is collected in `lines`."""

    def __init__(self, socket_path, *args):
        self.socket = str(socket_path)
        # A bridged that ignored the passed socket would serve this private
        # path, not the user's default one.
        fallback = "BRIDGE_SOCKET=" + str(Path(self.socket).parent.parent / "fallback.sock")
        self.proc = subprocess.Popen(
            [activator(), "-l", self.socket, "-E", fallback, *sanitizer_env_args(),
             binary("bridged"), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        self.lines = []
        # Its own signal that the socket listens: "Listening on PATH as 3."
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("Listening on"):
                break
        else:
            self.proc.wait(timeout=TIMEOUT_S)
            raise AssertionError(f"systemd-socket-activate did not listen:\n{self.log()}")
        self._drain = threading.Thread(target=self._collect, daemon=True)
        self._drain.start()

    def _collect(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def log(self):
        return "".join(self.lines)

    def exe(self):
        return os.path.basename(os.readlink(f"/proc/{self.proc.pid}/exe"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=TIMEOUT_S)
        self._drain.join(timeout=TIMEOUT_S)
        return code


@pytest.fixture
def activated_dirs(tmp_path):
    # The directory does not exist yet: the service manager creates it.
    sock = tmp_path / "run" / "bridged.sock"
    yield sock
    for name in Path("/dev/shm").glob(shm_prefix_for(sock) + "*"):
        name.unlink()


def run_bounded(argv, **kwargs):
    """subprocess.run, but a process still running at the timeout is killed
    (a daemon that should have refused to start must not outlive the test)."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"{argv[0]} still ran after {TIMEOUT_S} s:\n{err}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def ctl(socket_path, *args):
    return run_bounded([binary("bridgectl"), "--socket", str(socket_path), *args])


def test_the_first_connect_starts_the_daemon_on_the_passed_socket(activated_dirs):
    sock = activated_dirs
    act = Activated(sock)  # not --ephemeral: segments must survive into the next start
    try:
        # Nothing runs yet: the activator waits, no daemon took the lock or
        # made its slot table.
        assert act.exe() == "systemd-socket-activate"
        assert not Path(str(sock) + ".lock").exists()
        assert list(Path("/dev/shm").glob(shm_prefix_for(sock) + "*")) == []

        # bridgectl's connect starts it; the request waits in the backlog.
        first = ctl(sock, "--json", "stats")
        assert first.returncode == 0, f"{first.stderr}\n{act.log()}"
        stats = json.loads(first.stdout)
        # Exec'd in place: the activator's pid is the daemon's.
        assert stats["pid"] == act.proc.pid
        assert act.exe() == "bridged"
        # It learned its path from the passed socket: the same names a
        # daemon given --socket on that path uses (so either re-adopts the
        # other's segments), the lock beside it.
        assert stats["shm_prefix"].lstrip("/") == shm_prefix_for(sock)
        assert Path(str(sock) + ".lock").read_text().strip() == str(act.proc.pid)

        with pybridge.connect(sock) as writer, pybridge.connect(sock) as reader:
            seg = writer.create("kept", (4, 4), "int32", meta={"by": "activated"})
            seg.array[:] = np.arange(16, dtype=np.int32).reshape(4, 4)
            seg.mark_changed()
            other = reader.attach("kept")
            assert other.array.tolist() == seg.array.tolist()
            other.array[0, 0] = -1
            assert seg.array[0, 0] == -1
            seg.close()
            other.close()

        # A second daemon on that path is refused (the lock), and leaves
        # the activated one's socket alone.
        second = run_bounded([binary("bridged"), "--socket", str(sock)])
        assert second.returncode == EXIT_ALREADY_EXISTS, second.stderr
        assert f"pid {act.proc.pid}" in second.stderr
        assert ctl(sock, "ls").returncode == 0

        assert act.stop() == 0, act.log()
    finally:
        if act.proc.poll() is None:
            act.proc.kill()
            act.proc.wait()
    assert "socket passed by the service manager" in act.log()
    # The socket is the service manager's: still there after the daemon
    # stopped, though nothing listens on it now that the activator (which
    # was the daemon) is gone. Under systemd the .socket unit keeps
    # listening and the next connect starts the daemon again.
    assert sock.is_socket(), "bridged removed a socket it did not create"
    gone = ctl(sock, "ls")
    assert gone.returncode == EXIT_DAEMON_UNAVAILABLE, gone.stderr

    # The next activation on the same path (the service manager binds it
    # again) re-adopts what the last one kept.
    again = Activated(sock, "--ephemeral")
    try:
        with pybridge.connect(sock) as client:
            assert client.stats()["pid"] == again.proc.pid
            seg = client.attach("kept")
            assert seg.meta == {"by": "activated"}
            assert seg.array[0, 0] == -1 and seg.array[3, 3] == 15
            seg.close()
        assert again.stop() == 0, again.log()
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
            again.proc.wait()
    assert [p.name for p in Path("/dev/shm").glob(shm_prefix_for(sock) + "*")] == []


def test_a_daemon_started_by_hand_leaves_a_waiting_socket_alone(activated_dirs):
    # The service manager listens, no bridged runs yet (the lock is free): a
    # bridged started by hand on that path must not replace the socket file,
    # which would cut the service manager off from its clients.
    sock = activated_dirs
    act = Activated(sock, "--ephemeral")
    try:
        by_hand = run_bounded([binary("bridged"), "--socket", str(sock), "--ephemeral"])
        assert by_hand.returncode == EXIT_ALREADY_EXISTS, by_hand.stderr
        assert "listens on " + str(sock) in by_hand.stderr
        # Nothing was started by its check, and the socket still works.
        assert act.exe() == "systemd-socket-activate"
        with pybridge.connect(sock) as client:
            assert client.stats()["pid"] == act.proc.pid
        assert act.stop() == 0, act.log()
    finally:
        if act.proc.poll() is None:
            act.proc.kill()
            act.proc.wait()


LAUNCHER = textwrap.dedent("""
    import os, socket, sys
    kind, path = sys.argv[1], sys.argv[2]
    if kind == "file":
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    else:
        s = socket.socket(socket.AF_UNIX,
                          socket.SOCK_DGRAM if kind == "datagram" else socket.SOCK_STREAM)
        s.bind(path)
        if kind == "listening":
            s.listen(8)
        fd = s.fileno()
    if fd != 3:
        os.dup2(fd, 3)
    os.set_inheritable(3, True)  # Python opens everything close-on-exec
    os.environ["LISTEN_PID"] = os.environ.get("LAUNCH_PID") or str(os.getpid())
    os.execv(sys.argv[3], sys.argv[3:])
""")


def launch(kind, fd3_path, *bridged_args, listen_fds="1", listen_pid=None, pass_fds=(),
           run=False):
    """Runs bridged with LISTEN_FDS=`listen_fds` and, on descriptor 3, a
    `kind` of object at `fd3_path`: "file", "datagram", "bound" (a stream
    socket not listening) or "listening". LISTEN_PID is bridged's own pid
    unless `listen_pid` names another. A bridged that ignored all this would
    serve BRIDGE_SOCKET, a path in the test's directory, instead of the
    user's default one. `run`: wait for it (run_bounded), else a Popen."""
    env = dict(os.environ, LISTEN_FDS=listen_fds,
               BRIDGE_SOCKET=str(Path(fd3_path).parent / "fallback.sock"))
    env.pop("LISTEN_PID", None)
    if listen_pid is not None:
        env["LAUNCH_PID"] = listen_pid
    assert 3 not in pass_fds
    argv = [sys.executable, "-c", LAUNCHER, kind, str(fd3_path), binary("bridged"),
            *bridged_args]
    if run:
        return run_bounded(argv, env=env)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, pass_fds=pass_fds)


@pytest.mark.parametrize("kind, listen_fds, extra, message", [
    ("file", "1", (), "descriptor 3 passed by the service manager is a regular file"),
    ("datagram", "1", (), "is not a stream socket"),
    ("bound", "1", (), "is not listening"),
    ("listening", "2", (), "passed 2 descriptors (LISTEN_FDS); bridged serves exactly one"),
    ("listening", "0", (), "LISTEN_FDS='0' is not a positive count"),
    ("listening", "1", ("--socket", "elsewhere.sock"),
     "differs from the socket the service manager passed"),
    ("listening", "1", ("--group", "root"), "set SocketGroup=root and SocketMode=0660"),
])
def test_a_bad_passed_socket_is_refused_saying_why(tmp_path, kind, listen_fds, extra, message):
    fd3 = tmp_path / "fd3"
    extra = [str(tmp_path / a) if a.endswith(".sock") else a for a in extra]
    proc = launch(kind, fd3, *extra, listen_fds=listen_fds, run=True)
    err = proc.stderr
    assert proc.returncode == EXIT_INVALID_ARGUMENT, err
    assert "cannot start: invalid_argument" in err and message in err, err
    # Refused before serving anything: no lock taken beside the socket,
    # nothing named after it, the passed socket file left as it was.
    assert not Path(str(fd3) + ".lock").exists()
    assert list(Path("/dev/shm").glob(shm_prefix_for(fd3) + "*")) == []
    assert fd3.exists()


def test_variables_meant_for_another_process_are_ignored(tmp_path):
    # LISTEN_PID names someone else (inherited from an activated parent):
    # bridged binds its --socket as usual and leaves descriptor 3 alone.
    sock = tmp_path / "own.sock"
    read_fd, write_fd = os.pipe()
    proc = launch("listening", tmp_path / "fd3", "--socket", str(sock), "--ephemeral",
                  "--ready-fd", str(write_fd), listen_pid="1", pass_fds=(write_fd,))
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as ready:
            assert ready.readline() == b"ready\n"
        with pybridge.connect(sock) as client:
            assert client.stats()["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 0, err
    assert "service manager" not in err
    assert not sock.exists(), "its own socket is removed on a clean stop"


UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"


def test_the_user_units_verify_and_listen_where_clients_look(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skip_or_fail("systemd-analyze is not installed (Debian package systemd)")
    socket_unit = (UNITS / "shmbridge.socket").read_text()
    service_unit = (UNITS / "shmbridge.service").read_text()
    # libbridge's default_socket_path() without BRIDGE_SOCKET; %t is
    # $XDG_RUNTIME_DIR in a user unit.
    assert "\nListenStream=%t/shmbridge/bridged.sock\n" in socket_unit
    assert "\nRestart=on-failure\n" in service_unit
    assert "\nExecStart=/usr/local/bin/bridged\n" in service_unit
    # verify checks that ExecStart's binary exists: use the built one.
    (tmp_path / "shmbridge.socket").write_text(socket_unit)
    (tmp_path / "shmbridge.service").write_text(
        service_unit.replace("/usr/local/bin/bridged", binary("bridged")))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    proc = subprocess.run(
        [analyze, "--user", "verify", "--man=no", "shmbridge.socket", "shmbridge.service"],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S,
        env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)))
    # Unknown keys are only warnings: any output is a finding.
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stderr


def test_on_the_journals_stream_lines_carry_their_priority(tmp_path):
    # What systemd does for StandardError=journal: stderr is a stream the
    # journal reads, named by JOURNAL_STREAM=device:inode. A file stands in
    # for it here; the daemon only compares device and inode.
    log_path = tmp_path / "journal.log"
    log_path.touch()
    st = log_path.stat()
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    daemon = Daemon(tmp_path, "--max-clients", "1", env=env, log_path=log_path)
    held = []
    try:
        # Connections past --max-clients are refused, a warning. Within two
        # for sure: the fixture's own first connection may still count.
        with pytest.raises(pybridge.LimitExceeded):
            for _ in range(2):
                held.append(pybridge.connect(daemon.socket))
    finally:
        for client in held:
            client.close()
        assert daemon.stop() == 0
    lines = daemon.log().splitlines()
    assert lines and all(line[:3] in ("<6>", "<4>", "<7>") for line in lines), lines
    assert any(line.startswith("<6>info: bridged ") and "serving" in line for line in lines)
    assert any(line.startswith("<4>warn: refused a connection") for line in lines), lines

    # A JOURNAL_STREAM naming some other descriptor (inherited, stderr
    # redirected since) changes nothing: lines keep their own time stamp.
    other = Daemon(tmp_path, env=env, log_path=tmp_path / "plain.log")
    assert other.stop() == 0
    assert all(line[:2] == "20" and " bridged " in line for line in other.log().splitlines())
