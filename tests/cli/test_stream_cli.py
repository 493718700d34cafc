# SPDX-License-Identifier: MIT
"""bridgectl's stream commands and the daemon's stream figures and events,
against a real daemon, with frames published and taken by another process
(bridge_stream_peer, tests/support/stream_peer.cpp).

Every hand-off is a line a process prints ("subscribed", "watching", a taken
frame, an event), never a sleep.
"""
import json
import signal
import subprocess

import pytest

from conftest import Daemon, binary, run_ctl
from test_prometheus import scrape, values
from test_watch import Lines

EXIT_NOT_FOUND = 12
EXIT_TIMEOUT = 25


def stream_peer(daemon, *args):
    """Runs bridge_stream_peer to its end; returns its stdout."""
    proc = subprocess.run(
        [binary("bridge_stream_peer"), "--socket", daemon.socket, *map(str, args)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"bridge_stream_peer {args} failed: {proc.stderr}"
    return proc.stdout


def create_stream(daemon, name, dtype="uint8", shape="2,3", slots=4):
    return json.loads(stream_peer(daemon, "create", name, dtype, shape, slots))


def publish(daemon, name, count):
    return int(stream_peer(daemon, "publish", name, count))


class Peer:
    """A bridge_stream_peer that runs on, driven line by line on stdin."""

    def __init__(self, daemon, *args, ready):
        self.proc = subprocess.Popen(
            [binary("bridge_stream_peer"), "--socket", daemon.socket, *map(str, args)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout = Lines(self.proc.stdout)
        line = self.stdout.next()
        assert line == ready, (line, self.proc.stderr.read() if self.proc.poll() else "")

    def ask(self, command):
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.stdout.next()

    def finish(self):
        """Closes stdin (the peer's signal to stop); returns its last line."""
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr.read()
        rest = self.stdout.rest()
        return rest.strip().splitlines()[-1] if rest.strip() else ""

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            pipe.close()


class Ctl:
    """A bridgectl that runs on (watch), its stdout and stderr read by line."""

    def __init__(self, daemon, *args):
        self.proc = subprocess.Popen(
            [binary("bridgectl"), "--socket", daemon.socket, *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout = Lines(self.proc.stdout)
        self.stderr = Lines(self.proc.stderr)
        first = self.stderr.next()
        assert "watching" in first, first

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def running():
    started = []

    def start(cls, *args, **kwargs):
        thing = cls(*args, **kwargs)
        started.append(thing)
        return thing

    yield start
    for thing in started:
        thing.close()


def ctl_json(daemon, *args, expect=0):
    proc = run_ctl(daemon, *args, "--json")
    assert proc.returncode == expect, proc.stderr
    return json.loads(proc.stdout)


# ---- ls, info, stats ---------------------------------------------------------

def test_ls_shows_kind_and_a_streams_live_figures(daemon):
    created = create_stream(daemon, "cam", slots=4)
    subprocess.run([binary("bridge_peer"), "--socket", daemon.socket, "create", "plain",
                    "float32", "3"], check=True, capture_output=True, timeout=60)
    assert publish(daemon, "cam", 5) == 5

    listed = {entry["name"]: entry for entry in ctl_json(daemon, "ls")}
    cam = listed["cam"]
    assert cam["kind"] == "stream"
    assert cam["segment_id"] == created["id"]
    stream = cam["stream"]
    assert stream["slots"] == 4 and stream["overflow"] == "drop_oldest"
    assert stream["frame_bytes"] == 6
    assert stream["head"] == 5
    assert stream["readers"] == 0
    assert stream["last_publish_unix_ns"] > 0
    assert stream["publish_rate"] >= 0
    assert "subscribers" not in stream, "the per-subscriber list is info's"
    assert "kind" not in listed["plain"] and "stream" not in listed["plain"]

    header, *rows = run_ctl(daemon, "ls", check=True).stdout.splitlines()
    assert header.split() == ["NAME", "KIND", "DTYPE", "SHAPE", "SIZE", "PAGES", "ATTACHED",
                              "VERSION", "SLOTS", "SEQ", "RATE", "READERS", "AGE"]
    cam_row = next(r.split() for r in rows if r.startswith("cam "))
    plain_row = next(r.split() for r in rows if r.startswith("plain "))
    # cam stream uint8 2x3 6 B 4K 0 - 4 5 RATE 0 AGE
    assert cam_row[1] == "stream"
    assert cam_row[cam_row.index("-") + 1:cam_row.index("-") + 3] == ["4", "5"]
    assert cam_row[-2] == "0"
    assert plain_row[1] == "segment"
    assert plain_row.count("-") == 4


def test_ls_without_streams_has_no_stream_columns(daemon):
    subprocess.run([binary("bridge_peer"), "--socket", daemon.socket, "create", "plain",
                    "float32", "3"], check=True, capture_output=True, timeout=60)
    header = run_ctl(daemon, "ls", check=True).stdout.splitlines()[0]
    assert header.split() == ["NAME", "KIND", "DTYPE", "SHAPE", "SIZE", "PAGES", "ATTACHED",
                              "VERSION", "AGE"]


def test_info_shows_each_subscribers_position_lag_and_drops(daemon, running):
    create_stream(daemon, "cam", slots=4)
    every = running(Peer, daemon, "subscribe", "cam", "all", ready="subscribed")
    newest = running(Peer, daemon, "subscribe", "cam", "latest", ready="subscribed")
    assert publish(daemon, "cam", 10) == 10

    stream = ctl_json(daemon, "info", "cam")["stream"]
    assert stream["head"] == 10 and stream["readers"] == 2
    by_pid = {r["pid"]: r for r in stream["subscribers"]}
    assert set(by_pid) == {every.proc.pid, newest.proc.pid}
    a, b = by_pid[every.proc.pid], by_pid[newest.proc.pid]
    assert (a["mode"], a["alive"], a["position"], a["lag"]) == ("all", True, 1, 10)
    assert (a["received"], a["dropped"], a["held"]) == (0, 0, 0)
    assert (b["mode"], b["position"], b["lag"], b["held"]) == ("latest", None, None, 0)

    # drop_oldest with 4 slots: seqs 7..10 are left, 1..6 are dropped.
    assert json.loads(every.ask("next")) == {"seq": 7, "dropped": 6}
    assert json.loads(newest.ask("next"))["seq"] == 10
    by_pid = {r["pid"]: r for r in ctl_json(daemon, "info", "cam")["stream"]["subscribers"]}
    a, b = by_pid[every.proc.pid], by_pid[newest.proc.pid]
    assert (a["position"], a["lag"], a["received"], a["dropped"], a["held"]) == (8, 3, 1, 6, 1)
    assert (b["position"], b["lag"], b["received"], b["held"]) == (10, 0, 1, 1)

    text = run_ctl(daemon, "info", "cam", check=True).stdout
    assert "kind:" in text and "stream" in text
    assert "latest seq:" in text and "readers:" in text
    table = text.split("subscribers:\n", 1)[1].splitlines()
    assert table[0].split() == ["PID", "MODE", "ALIVE", "POSITION", "LAG", "RECEIVED",
                                "DROPPED", "HELD"]
    row = next(line.split() for line in table[1:] if line.split()[0] == str(every.proc.pid))
    assert row == [str(every.proc.pid), "all", "yes", "8", "3", "1", "6", "1"]

    # A latest subscriber that gave its frame back keeps its place.
    assert newest.ask("release") == "released"
    assert publish(daemon, "cam", 2) == 12
    b = {r["pid"]: r for r in ctl_json(daemon, "info", "cam")["stream"]["subscribers"]}[
        newest.proc.pid]
    assert (b["position"], b["lag"], b["held"]) == (10, 2, 0)

    every.finish()
    newest.finish()
    stream = ctl_json(daemon, "info", "cam")["stream"]
    assert stream["readers"] == 0 and stream["subscribers"] == []
    assert "no subscribers" in run_ctl(daemon, "info", "cam", check=True).stdout


def test_prometheus_has_stream_series(daemon):
    create_stream(daemon, "cam")
    publish(daemon, "cam", 3)
    text = run_ctl(daemon, "stats", "--prometheus", check=True).stdout
    assert "# TYPE shmbridge_stream_head_seq gauge\n" in text
    assert 'shmbridge_stream_head_seq{stream="cam"} 3\n' in text
    assert "# TYPE shmbridge_stream_readers gauge\n" in text
    assert 'shmbridge_stream_readers{stream="cam"} 0\n' in text
    # Prometheus' own parser reads it, the stream a segment too.
    _, families = scrape(daemon)
    assert values(families["shmbridge_stream_head_seq"], "stream") == {"cam": 3}
    assert values(families["shmbridge_stream_readers"], "stream") == {"cam": 0}
    assert "cam" in values(families["shmbridge_segment_bytes"])


# ---- watch -------------------------------------------------------------------

def test_watch_stream_prints_seq_rate_and_drops_as_they_happen(daemon, running):
    create_stream(daemon, "cam", slots=4)
    watch = running(Ctl, daemon, "watch", "cam", "--json", "--interval", "0.1")
    publisher = running(Peer, daemon, "publish-until-eof", "cam", ready="publishing")
    # Lines come as the seq moves; a rate appears within the daemon's window.
    seen = []
    while not seen or seen[-1]["publish_rate"] <= 0:
        seen.append(json.loads(watch.stdout.next()))
        assert len(seen) < 200, seen[-3:]
    heads = [line["head"] for line in seen]
    assert heads == sorted(set(heads)), "one line per change, seq only grows"
    assert set(seen[-1]) == {"name", "segment_id", "head", "publish_rate", "readers", "dropped",
                             "last_publish_unix_ns", "time_unix_ms"}
    assert seen[-1]["name"] == "cam" and seen[-1]["readers"] == 0

    # A subscriber that falls behind shows up, and so do its drops.
    behind = running(Peer, daemon, "subscribe", "cam", "all", ready="subscribed")
    line = json.loads(watch.stdout.next())
    while line["readers"] != 1:
        line = json.loads(watch.stdout.next())
    taken = json.loads(behind.ask("next"))
    # Once the publisher is a ring and more ahead, the next frame skips some.
    while line["head"] < taken["seq"] + 8:
        line = json.loads(watch.stdout.next())
    taken = json.loads(behind.ask("next"))
    assert taken["dropped"] > 0
    while line["dropped"] < taken["dropped"]:
        line = json.loads(watch.stdout.next())

    last = int(publisher.finish())
    while line["head"] != last:
        line = json.loads(watch.stdout.next())
    watch.proc.send_signal(signal.SIGINT)
    assert watch.proc.wait(timeout=30) == 0


def test_watch_stream_text_then_destroy_ends_it(daemon, running):
    create_stream(daemon, "cam")
    watch = running(Ctl, daemon, "watch", "cam", "--interval", "0.1")
    publish(daemon, "cam", 2)
    line = watch.stdout.next()
    while " seq 2 " not in line:
        line = watch.stdout.next()
    assert "cam" in line and "0 readers" in line and "dropped" in line
    run_ctl(daemon, "rm", "cam", check=True)
    assert watch.proc.wait(timeout=30) == EXIT_NOT_FOUND
    assert "destroyed while being watched" in watch.stderr.rest()


def test_watch_stream_timeout_without_change(daemon):
    create_stream(daemon, "cam")
    proc = run_ctl(daemon, "watch", "cam", "--interval", "0.05", "--timeout", "0.3")
    assert proc.returncode == EXIT_TIMEOUT, proc.stderr
    assert "no change to stream 'cam'" in proc.stderr


# ---- show --------------------------------------------------------------------

def test_show_stream_previews_the_newest_frame(daemon, tmp_path):
    create_stream(daemon, "cam", "uint8", "2,3")
    publish(daemon, "cam", 5)
    proc = run_ctl(daemon, "show", "cam", check=True)
    header, _, body = proc.stdout.partition("\n")
    assert header == "cam: uint8 (2, 3), frame seq 5"
    assert body.strip() == "[[5 5 5]\n [5 5 5]]"

    shown = ctl_json(daemon, "show", "cam")
    assert shown["seq"] == 5 and shown["meta"] == {"k": 5}
    assert shown["values"] == [[5, 5, 5], [5, 5, 5]]
    assert shown["time_unix_ns"] > 0 and "version" not in shown

    png = tmp_path / "cam.png"
    proc = run_ctl(daemon, "show", "cam", "--png", png, check=True)
    assert proc.stdout.startswith(f"wrote {png}: 3x2 L from cam (2, 3), frame seq 5;")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # show's subscription is gone with it.
    assert ctl_json(daemon, "info", "cam")["stream"]["subscribers"] == []


def test_show_stream_with_nothing_published_says_so(daemon):
    create_stream(daemon, "cam")
    proc = run_ctl(daemon, "show", "cam", "--timeout", "0.2")
    assert proc.returncode == EXIT_TIMEOUT
    assert "no frame published to stream 'cam' yet" in proc.stderr


# ---- events ------------------------------------------------------------------

def test_events_report_a_streams_create_and_destroy_but_no_frames(daemon, running):
    events = running(Ctl, daemon, "watch", "--json")
    created = create_stream(daemon, "cam")
    event = json.loads(events.stdout.next())
    assert (event["event"], event["name"], event["kind"]) == ("created", "cam", "stream")
    assert event["segment_id"] == created["id"]
    publish(daemon, "cam", 50)
    run_ctl(daemon, "rm", "cam", check=True)
    # The very next event: no frame made one.
    event = json.loads(events.stdout.next())
    assert (event["event"], event["name"], event["kind"]) == ("destroyed", "cam", "stream")
    # A plain segment's events stay as they were: no kind.
    subprocess.run([binary("bridge_peer"), "--socket", daemon.socket, "create", "plain",
                    "float32", "3"], check=True, capture_output=True, timeout=60)
    event = json.loads(events.stdout.next())
    assert event["event"] == "created" and "kind" not in event

    text = running(Ctl, daemon, "watch")
    create_stream(daemon, "cam2")
    assert "created  cam2 (stream)" in text.stdout.next()


# ---- daemon restart ------------------------------------------------------------

def test_attached_count_of_a_stream_survives_a_daemon_restart(tmp_path, running):
    first = Daemon(tmp_path, ephemeral=False)
    try:
        create_stream(first, "cam")
        publish(first, "cam", 3)
        sub = running(Peer, first, "subscribe", "cam", "all", ready="subscribed")
        assert ctl_json(first, "info", "cam")["attached"] == 1
        assert first.stop() == 0
        second = Daemon(tmp_path)  # re-adopts cam; ephemeral: removes it at stop
        try:
            assert ctl_json(second, "info", "cam")["attached"] == 0
            # The subscriber's next request reconnects and counts it again.
            assert sub.ask("ping") == "pong"
            info = ctl_json(second, "info", "cam")
            assert info["attached"] == 1
            assert info["stream"]["head"] == 3 and info["stream"]["readers"] == 1
            sub.finish()
            assert ctl_json(second, "info", "cam")["attached"] == 0
        finally:
            assert second.stop() == 0
            assert second.leftover_shm() == []
    finally:
        first.stop()
