# SPDX-License-Identifier: MIT
"""Fixtures shared by the Python, cross-process and CLI tests.

Every test that needs a daemon gets a real `bridged` on a socket in its own
temporary directory, started with --ready-fd (no polling) and stopped with
SIGTERM; afterwards no shm object of that daemon may remain in /dev/shm.

Two environment variables change how the suite judges what it cannot do or
how long things take:

- CI=true (as CI sets it): a test that backs a README guarantee and cannot
  run here (no binary, no `unshare`, not root, no torch ...) fails instead of
  skipping; see skip_or_fail(). Elsewhere it skips, saying why.
- SHMBRIDGE_EXPECT_SANITIZED (set by `make test-asan`, which runs this suite
  against ASan+UBSan builds of bridged, bridgectl and bridge_peer): every
  wall-clock upper bound is multiplied by TIME_SCALE, so that a slow
  sanitized binary on a busy core is not reported as a bug. Lower bounds
  ("waited at least the timeout") are never scaled, nor is anything in the
  normal run.
"""
import importlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest


def _bin_dir():
    env = os.environ.get("BRIDGE_BIN_DIR")
    if env:
        return Path(env)
    found = shutil.which("bridged")
    if found:
        return Path(found).parent
    pytest.exit("set BRIDGE_BIN_DIR to the folder holding bridged, bridgectl and bridge_peer")


BIN_DIR = _bin_dir()

#: Whether this is a CI run (CI=true, as CI services and .ci/run set it).
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

#: Multiplies every wall-clock upper bound when the binaries are the
#: sanitized ones (`make test-asan`); 1 in the normal run.
TIME_SCALE = 10 if os.environ.get("SHMBRIDGE_EXPECT_SANITIZED") else 1


def skip_or_fail(reason):
    """Skips the current test with `reason`, except in CI (CI=true), where it
    fails: a test that backs a README guarantee must run there, and a skip
    would let the guarantee go unchecked without anyone noticing."""
    if IN_CI:
        pytest.fail(f"cannot run in CI (CI={os.environ.get('CI')}), and this test backs a "
                    f"guarantee so it may not skip there: {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name):
    """pytest.importorskip(name), through skip_or_fail (so fatal in CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        skip_or_fail(f"Python module {name!r} is not installed ({e})")


def binary(name):
    path = BIN_DIR / name
    if not path.exists():
        skip_or_fail(f"{name} is not built in {BIN_DIR}")
    return str(path)


#: The daemon's slot table, its prefix + this (bridge/detail/slot_table.hpp):
#: one object that lives as long as the daemon, not a segment.
SLOT_TABLE = ".slots"


class Daemon:
    """A running bridged on a private socket.

    Keyword options (all optional): `ephemeral=False` keeps segments in
    /dev/shm after a stop so that a later Daemon on the same directory
    re-adopts them; `env` replaces the daemon's environment (e.g. with
    BRIDGED_FAULT); `wrapper` is a command that execs the daemon's argv
    appended to it (e.g. unshare); the log is appended to, so a restarted
    daemon's log follows its predecessor's. `socket` and `log_path` default
    to bridged.sock and bridged.log in `directory`; `popen` holds further
    subprocess.Popen arguments (user, group, umask ...).
    """

    def __init__(self, directory, *extra_args, ephemeral=True, env=None, wrapper=(),
                 socket=None, log_path=None, popen=None):
        self.directory = Path(directory)
        self.socket = str(socket or self.directory / "bridged.sock")
        self.log_path = Path(log_path or self.directory / "bridged.log")
        read_fd, write_fd = os.pipe()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*wrapper, binary("bridged"), "--socket", self.socket,
             *(["--ephemeral"] if ephemeral else []),
             "--ready-fd", str(write_fd), *extra_args],
            stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(write_fd,), env=env,
            **(popen or {}))
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as ready:
            line = ready.readline()  # EOF without "ready" means it failed to start
        if not line.startswith(b"ready"):
            self.proc.wait(timeout=10)
            raise RuntimeError(f"bridged failed to start:\n{self.log()}")
        self.shm_prefix = self._stats()["shm_prefix"]

    def _stats(self):
        import pybridge

        with pybridge.connect(self.socket) as c:
            return c.stats()

    def log(self):
        return self.log_path.read_text(errors="replace")

    def leftover_shm(self):
        name = self.shm_prefix.lstrip("/")
        return sorted(p.name for p in Path("/dev/shm").glob(name + "*"))

    def segment_objects(self):
        """What leftover_shm lists but for the slot table, which lives as long
        as the daemon (bridge/detail/slot_table.hpp): for a running daemon."""
        table = self.shm_prefix.lstrip("/") + SLOT_TABLE
        return [name for name in self.leftover_shm() if name != table]

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    code = d.stop()
    assert code == 0, f"bridged exited with {code}:\n{d.log()}"
    assert d.leftover_shm() == [], "segments left in /dev/shm"


@pytest.fixture
def client(daemon):
    import pybridge

    c = pybridge.connect(daemon.socket)
    yield c
    c.close()


def run_peer(daemon, *args, check=True, stdin=None):
    """Runs the C++ bridge_peer against `daemon`; returns the CompletedProcess."""
    proc = subprocess.run([binary("bridge_peer"), "--socket", daemon.socket, *map(str, args)],
                          capture_output=True, text=True, timeout=60, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"bridge_peer {args} failed ({proc.returncode}): {proc.stderr}")
    return proc


def run_ctl(daemon, *args, check=False):
    """Runs bridgectl against `daemon` (socket passed with --socket)."""
    proc = subprocess.run([binary("bridgectl"), "--socket", daemon.socket, *map(str, args)],
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"bridgectl {args} failed ({proc.returncode}): {proc.stderr}")
    return proc

