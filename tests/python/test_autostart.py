# SPDX-License-Identifier: MIT
"""Zero set-up: connect() on the default per-user socket starts a daemon
when none answers (README "The two commands" / "bridged": autostart)."""
import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pybridge
from conftest import TIME_SCALE, binary


@pytest.fixture
def user_env(tmp_path):
    """An environment whose default socket is under tmp_path (as
    $XDG_RUNTIME_DIR would put it), with the daemon of this build; yields
    (env, socket path) and stops whatever daemon serves that socket after."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items()
           if k not in ("BRIDGE_SOCKET", "BRIDGE_AUTOSTART", "BRIDGE_DAEMON")}
    env["XDG_RUNTIME_DIR"] = str(run)
    env["BRIDGE_DAEMON"] = binary("bridged")
    socket = run / "shmbridge" / "bridged.sock"
    yield env, socket
    for pid in daemons_serving(socket):
        stop(pid)


def daemons_serving(socket):
    """Pids of bridged processes started for `socket` (by their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"bridged") and str(socket).encode() in argv:
            pids.append(int(entry.name))
    return pids


def stop(pid):
    """SIGTERM, then wait for the process to be gone (a pidfd: no polling)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        ready, _, _ = select.select([fd], [], [], 10 * TIME_SCALE)
        assert ready, f"bridged {pid} did not stop on SIGTERM"
    finally:
        os.close(fd)


def python(code, env, **kwargs):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60 * TIME_SCALE, **kwargs)


def test_connect_starts_a_daemon_that_outlives_the_script(user_env):
    env, socket = user_env
    assert not socket.exists()
    script = python("""
        import os, pybridge
        c = pybridge.connect()
        with c.create("kept", (3,), "int64") as s:
            s.array[:] = [1, 2, 3]
        print(c.stats()["pid"], c.socket_path)
    """, env)
    assert script.returncode == 0, script.stderr
    pid_text, path = script.stdout.split()
    pid = int(pid_text)
    assert path == str(socket)
    # The script is gone; its daemon is not, and is nobody's child here: its
    # own session, so a terminal's hang-up or ^C does not reach it.
    assert daemons_serving(socket) == [pid]
    assert os.getsid(pid) != os.getsid(0)
    assert (socket.parent / "bridged.log").exists()
    assert oct(socket.parent.stat().st_mode & 0o777) == "0o700"
    with pybridge.connect(socket) as c:
        assert c.stats()["pid"] == pid
        with c.attach("kept") as seg:
            assert seg.array.tolist() == [1, 2, 3]
        c.destroy("kept")
    # A second connect() finds it and starts nothing.
    again = python("import pybridge; print(pybridge.connect().stats()['pid'])", env)
    assert again.returncode == 0, again.stderr
    assert int(again.stdout) == pid and daemons_serving(socket) == [pid]


def test_ten_processes_connecting_at_once_start_one_daemon(user_env):
    env, socket = user_env
    code = """
        import sys, pybridge
        print("waiting", flush=True)
        sys.stdin.read(1)
        print(pybridge.connect().stats()["pid"], flush=True)
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(10)]
    try:
        for p in procs:  # every one imported and waiting at the line
            assert p.stdout.readline().strip() == "waiting"
        for p in procs:
            p.stdin.write("go")
            p.stdin.close()
        pids = set()
        for p in procs:
            out = p.stdout.read()
            assert p.wait(timeout=60 * TIME_SCALE) == 0, p.stderr.read()
            pids.add(int(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert len(pids) == 1
    assert daemons_serving(socket) == list(pids)


@pytest.mark.parametrize("how", ["argument", "environment", "explicit path", "BRIDGE_SOCKET"])
def test_no_daemon_is_started_when_told_not_to(user_env, how):
    env, socket = user_env
    call = "pybridge.connect()"
    if how == "argument":
        call = "pybridge.connect(autostart=False)"
    elif how == "environment":
        env["BRIDGE_AUTOSTART"] = "0"
    elif how == "explicit path":
        call = f"pybridge.connect({str(socket)!r})"
    else:
        env["BRIDGE_SOCKET"] = str(socket)
    script = python(f"""
        import pybridge
        try:
            {call}
        except pybridge.DaemonUnavailable as e:
            print("unavailable")
    """, env)
    assert script.returncode == 0, script.stderr
    assert script.stdout.strip() == "unavailable"
    assert daemons_serving(socket) == []
    assert not (socket.parent / "bridged.log").exists()


def test_a_daemon_that_cannot_start_says_why(user_env, tmp_path):
    env, socket = user_env
    broken = tmp_path / "bridged"
    broken.write_text("#!/bin/sh\necho 'bridged: cannot serve: disk on fire' >&2\nexit 3\n")
    broken.chmod(0o755)
    env["BRIDGE_DAEMON"] = str(broken)
    script = python("""
        import pybridge
        try:
            pybridge.connect()
        except pybridge.DaemonUnavailable as e:
            print(e)
    """, env)
    assert script.returncode == 0, script.stderr
    assert "disk on fire" in script.stdout
    assert "bridged.log" in script.stdout


def test_bridgectl_never_starts_one_but_says_how(user_env):
    env, socket = user_env
    proc = subprocess.run([binary("bridgectl"), "ls"], env=env, capture_output=True, text=True,
                          timeout=60 * TIME_SCALE)
    assert proc.returncode == 16  # daemon_unavailable
    assert "never starts a daemon" in proc.stderr and "bridged --socket" in proc.stderr
    assert daemons_serving(socket) == []
