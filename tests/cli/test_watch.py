# SPDX-License-Identifier: MIT
"""`bridgectl watch` against a real daemon, with commits made by other processes.

Every hand-off is a real signal, never a sleep: the watcher prints a
"watching" line on stderr once it follows changes, and the test reads that
line (or a printed change) before it makes the next commit.
"""
import json
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import binary, run_ctl, run_peer

EXIT_NOT_FOUND = 12
EXIT_TIMEOUT = 25
EXIT_USAGE = 2
EVENT_KEYS = {"event", "name", "segment_id", "version", "meta_version", "pid", "time_unix_ms"}
LINE_TIMEOUT_S = 30


class Lines:
    """Reads whole lines from a pipe, failing (not hanging) after a timeout."""

    def __init__(self, pipe):
        self.fd = pipe.fileno()
        self.buffer = b""

    def next(self, timeout=LINE_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no line within {timeout} s (so far: {self.buffer!r})")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"EOF before a whole line (so far: {self.buffer!r})")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def rest(self):
        """Everything until EOF (the process has exited)."""
        chunks = [self.buffer]
        while chunk := os.read(self.fd, 65536):
            chunks.append(chunk)
        self.buffer = b""
        return b"".join(chunks).decode()


class Watch:
    """A running `bridgectl watch`, started and followed until it says "watching"."""

    def __init__(self, daemon, *args):
        self.proc = subprocess.Popen(
            [binary("bridgectl"), "--socket", daemon.socket, "watch", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout = Lines(self.proc.stdout)
        self.stderr = Lines(self.proc.stderr)
        first = self.stderr.next()
        assert "watching" in first, first

    def finish(self, timeout=LINE_TIMEOUT_S):
        """Waits for the exit; returns (status, remaining stdout)."""
        status = self.proc.wait(timeout=timeout)
        return status, self.stdout.rest()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def watches():
    started = []

    def start(daemon, *args):
        w = Watch(daemon, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


def peer(daemon, *args):
    """bridge_peer as a child whose pid we know; returns (pid, stdout)."""
    proc = subprocess.Popen([binary("bridge_peer"), "--socket", daemon.socket, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"bridge_peer {args} failed ({proc.returncode}): {err}"
    return proc.pid, out


def create(daemon, name, dtype="uint8", shape="4"):
    return json.loads(run_peer(daemon, "create", name, dtype, shape).stdout)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line]


# ---- one segment's versions ---------------------------------------------------

def test_watch_name_json_count_shows_commits_from_another_process(daemon, watches):
    seg = create(daemon, "frames")
    watch = watches(daemon, "frames", "--json", "--count", 3)
    pid, out = peer(daemon, "mark_changed", "frames", 3)
    assert out.split() == ["3"]
    status, rest = watch.finish()
    assert status == 0
    lines = json_lines(rest)
    assert lines, "no version printed"
    for line in lines:
        assert set(line) == EVENT_KEYS | {"coalesced"}
        assert line["event"] == "committed"
        assert line["name"] == "frames"
        assert line["segment_id"] == seg["id"]
        assert line["pid"] == pid
    versions = [line["version"] for line in lines]
    assert versions == sorted(set(versions)), "versions only increase"
    assert versions[-1] == 3
    # Every version is accounted for: printed, or counted as coalesced.
    assert sum(1 + line["coalesced"] for line in lines) == 3


def test_watch_name_text_prints_each_version_with_its_writer(daemon, watches):
    create(daemon, "frames", "float32", "2,3")
    watch = watches(daemon, "frames", "--count", 2)
    first_pid, out = peer(daemon, "write", "frames", 1.5)
    assert out.split() == ["1"]
    first = watch.stdout.next()  # printed before the next commit exists
    assert "version 1" in first and f"pid {first_pid}" in first
    assert "coalesced" not in first
    second_pid, _ = peer(daemon, "write", "frames", 2.5)
    status, rest = watch.finish()
    assert status == 0
    assert f"version 2  pid {second_pid}" in rest


def test_watch_name_says_how_many_commits_were_coalesced(daemon, watches):
    create(daemon, "frames")
    watch = watches(daemon, "frames", "--json", "--count", 500)
    pid, _ = peer(daemon, "mark_changed", "frames", 500)
    status, rest = watch.finish()
    assert status == 0
    lines = json_lines(rest)
    assert lines[-1]["version"] == 500
    assert sum(1 + line["coalesced"] for line in lines) == 500
    assert {line["pid"] for line in lines} == {pid}


def test_watch_name_timeout_exits_with_the_timeout_code(daemon):
    create(daemon, "frames")
    proc = run_ctl(daemon, "watch", "frames", "--timeout", "0.05", "--json")
    assert proc.returncode == EXIT_TIMEOUT, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["error"]["code"] == "timeout"
    assert "no new version of 'frames'" in proc.stderr


def test_watch_missing_segment_is_not_found(daemon):
    proc = run_ctl(daemon, "watch", "nothing", "--json")
    assert proc.returncode == EXIT_NOT_FOUND
    assert json.loads(proc.stdout)["error"]["code"] == "not_found"


# ---- daemon events --------------------------------------------------------------

def test_watch_name_says_the_segment_was_destroyed_and_exits(daemon, watches):
    create(daemon, "frames")
    w = watches(daemon, "frames")
    run_ctl(daemon, "rm", "frames", check=True)
    status, _ = w.finish()
    assert status == EXIT_NOT_FOUND
    message = w.stderr.rest()
    assert "'frames' was destroyed while being watched" in message, message


def test_watch_daemon_events_json_shows_created_and_destroyed(daemon, watches):
    watch = watches(daemon, "--json", "--count", 2)
    pid, out = peer(daemon, "create", "frames", "uint8", "4")
    seg = json.loads(out)
    run_ctl(daemon, "rm", "frames", check=True)
    status, rest = watch.finish()
    assert status == 0
    created, destroyed = json_lines(rest)
    assert set(created) == EVENT_KEYS and set(destroyed) == EVENT_KEYS
    assert (created["event"], created["name"], created["segment_id"]) == \
        ("created", "frames", seg["id"])
    assert created["pid"] == pid
    assert created["version"] == 0 and created["meta_version"] == 1
    assert (destroyed["event"], destroyed["name"], destroyed["segment_id"]) == \
        ("destroyed", "frames", seg["id"])


def test_watch_daemon_events_include_commits_of_other_processes(daemon, watches):
    create(daemon, "frames")
    watch = watches(daemon, "--count", 1)
    pid, _ = peer(daemon, "mark_changed", "frames", 1)
    status, rest = watch.finish()
    assert status == 0
    assert "committed  frames  version 1" in rest and f"pid {pid}" in rest


def test_watch_daemon_events_timeout(daemon):
    proc = run_ctl(daemon, "watch", "--timeout", "0.05")
    assert proc.returncode == EXIT_TIMEOUT
    assert "bridgectl: timeout:" in proc.stderr


# ---- stopping, usage --------------------------------------------------------------

@pytest.mark.parametrize("target", [["frames"], []], ids=["segment", "daemon"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_watch_stops_cleanly_on_signal(daemon, watches, target, sig):
    create(daemon, "frames")
    watch = watches(daemon, *target, "--json")
    watch.proc.send_signal(sig)
    status, rest = watch.finish()
    assert status == 0
    assert rest == ""


def test_watch_help_has_examples():
    proc = subprocess.run([binary("bridgectl"), "watch", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for text in ["Usage:", "Examples:", "--json", "--socket", "--count", "--timeout", "SIGINT"]:
        assert text in proc.stdout


@pytest.mark.parametrize("args", [["--count", "0"], ["--timeout", "-1"], ["--count", "x"]])
def test_watch_usage_errors_exit_2(args):
    proc = subprocess.run([binary("bridgectl"), "watch", "frames", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == EXIT_USAGE
