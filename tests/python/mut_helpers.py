# SPDX-License-Identifier: MIT
"""Helpers for the mutation tests: long-running peers driven line by line.

Processes synchronize through lines they print ("ready", "locked",
"waiting"), never through sleeps.
"""
import os
import platform
import signal
import subprocess
import time

from conftest import TIME_SCALE, binary
from pb_helpers import popen_python

#: bridge_peer's exit status for Error(timeout): kExitCodeBase (10) + 15.
PEER_TIMEOUT_EXIT = 25


def popen_peer(daemon, *args):
    return subprocess.Popen([binary("bridge_peer"), "--socket", daemon.socket, *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def expect_line(proc, expected):
    """Reads one line from `proc` and checks it (EOF means it died: say why)."""
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        raise AssertionError(f"child exited ({proc.returncode}) before printing {expected!r}:\n"
                             f"{proc.stderr.read()}")
    assert line.strip() == expected
    return line


def send(proc, line):
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def finish(proc, timeout=60):
    """Closes stdin, waits, checks the exit status; returns stdout's rest."""
    if proc.stdin is not None and proc.stdin.closed:
        proc.stdin = None  # communicate() would flush it
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err}"
    return out


def kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def child_cpu_seconds(proc):
    """Waits for `proc` and returns the CPU time (user + system) it used."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def popen_child(script, daemon, *args):
    """A Python child; `script` gets argv[1] = socket, then `args`."""
    return popen_python(script, daemon.socket, *args)


_SYSCALLS = {"x86_64": {"futex": 202, "ppoll": 271},
             "aarch64": {"futex": 98, "ppoll": 73}}.get(platform.machine())


def wait_until_blocked_in(syscall, pid, tid=None, timeout=10.0):
    """Waits until a thread (default: `pid`'s main thread) sleeps in
    `syscall` ("futex": a lock or a version wait, "ppoll": an event stream),
    read from /proc: proof that what the test does next meets the blocked
    call, not the code before it."""
    if _SYSCALLS is None:
        return
    number = str(_SYSCALLS[syscall])
    path = f"/proc/{pid}/task/{tid or pid}/syscall"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            if f.read().split(" ", 1)[0] == number:
                return
        os.sched_yield()
    raise AssertionError(f"thread {tid or pid} of process {pid} never blocked in {syscall}()")


def wait_until_blocked_in_futex(pid, tid=None, timeout=10.0):
    wait_until_blocked_in("futex", pid, tid, timeout)


def assert_ctrl_c_ends(child):
    """`child` (a popen_child that printed "blocking") is asleep in a futex:
    SIGINT must end it promptly with a KeyboardInterrupt."""
    wait_until_blocked_in_futex(child.pid)
    sent_at = time.monotonic()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert time.monotonic() - sent_at < 5 * TIME_SCALE
    assert child.returncode != 0 and "KeyboardInterrupt" in err, err
