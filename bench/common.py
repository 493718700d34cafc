# SPDX-License-Identifier: MIT
"""Shared pieces of bench/run.py: private daemons, quiet-machine wait, statistics."""
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def machine():
    """'2 vCPU, <model name>, Linux <release>', for the reports' headers."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU, {cpu}, Linux {platform.release()}"


def percentile(values, p):
    s = sorted(values)
    return s[int(p * (len(s) - 1) + 0.5)]


def p50_p99(values):
    return percentile(values, 0.50), percentile(values, 0.99)


def median(values):
    return statistics.median(values)


class Bridged:
    """bridged --ephemeral on a socket in a private temporary directory (--ready-fd).
    `wrapper` execs the daemon's argv appended to it (unshare ...); `name` tells
    the sockets and logs of several daemons in one workdir apart."""

    def __init__(self, bin_dir, workdir, extra_args=(), wrapper=(), name="bridged"):
        self.socket = os.path.join(workdir, name + ".sock")
        read_fd, write_fd = os.pipe()
        log_path = os.path.join(workdir, name + ".log")
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [*wrapper, str(Path(bin_dir) / "bridged"), "--socket", self.socket, "--ephemeral",
             "--ready-fd", str(write_fd), *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(write_fd,))
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as ready:
            if not ready.readline().startswith(b"ready"):
                self.proc.wait(timeout=20)
                self.log.close()
                raise RuntimeError(f"{name} failed to start: "
                                   + Path(log_path).read_text(errors="replace").strip())

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        self.log.close()


def huge_bridged(bin_dir, workdir, size="4G", pool="1G"):
    """(Bridged, None) for a daemon whose every segment has 2 MiB pages: it runs
    in a private mount namespace (unshare -m, needs root) on a tmpfs mounted
    huge=always, with --huge-dir, --huge-pages always and --pool (1 GiB of
    faulted huge pages kept ready, as vineyardd keeps its arena); clients
    outside the namespace reach its socket as usual. (None, why) where that
    cannot be had."""
    huge_dir = os.path.join(workdir, "huge")
    mount = (f"mkdir -p '{huge_dir}' && mount -t tmpfs -o huge=always,size={size} none "
             f"'{huge_dir}'")
    wrapper = ("unshare", "-m", "sh", "-c", mount + ' && exec "$0" "$@"')
    try:
        daemon = Bridged(bin_dir, workdir,
                         ("--huge-dir", huge_dir, "--huge-pages", "always", "--pool", pool),
                         wrapper, name="bridged-huge")
        # The huge dir as seen from outside the namespace (the wrapper execs
        # the daemon, so its pid is the daemon's).
        daemon.pool_dir = f"/proc/{daemon.proc.pid}/root{os.path.abspath(huge_dir)}"
        return daemon, None
    except (RuntimeError, OSError) as e:
        return None, (f"no huge-page daemon (unshare -m + mount of a huge=always tmpfs, "
                      f"which needs root): {' '.join(str(e).split())[:300]}")


class Vineyardd:
    """vineyardd from the vineyard wheel, private socket, local metadata, no RPC port.

    `--rpc=false` must be written with '=': `--rpc false` is silently ignored and
    the RPC server then listens on 0.0.0.0:9600 (research/peers-measured.md)."""

    def __init__(self, workdir, size="4G", timeout_s=60):
        self.socket = os.path.join(workdir, "vineyard.sock")
        self.log = open(os.path.join(workdir, "vineyardd.log"), "wb")
        env = dict(os.environ, GLOG_log_dir=workdir)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vineyard", "--socket", self.socket, "--meta=local",
             f"--size={size}", "--rpc=false"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"vineyardd did not start (log in {workdir})")
            time.sleep(0.1)
        time.sleep(0.3)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


class Quiet:
    """Waits (capped) for the 1-minute load average to fall below a threshold and
    records the load seen at the start of every round."""

    def __init__(self, threshold, cap_s):
        self.threshold = threshold
        self.cap_s = cap_s
        self.seen = []
        self.waited_s = 0.0
        self.gave_up = 0

    def wait(self):
        start = time.monotonic()
        while os.getloadavg()[0] >= self.threshold:
            if time.monotonic() - start >= self.cap_s:
                self.gave_up += 1
                break
            time.sleep(1.0)
        self.waited_s += time.monotonic() - start
        load = os.getloadavg()[0]
        self.seen.append(load)
        return load

    def summary(self):
        if not self.seen:
            return "no rounds"
        s = sorted(self.seen)
        return (f"1-min load at round starts: min {s[0]:.2f}, median {median(s):.2f}, "
                f"max {s[-1]:.2f} over {len(s)} rounds (threshold {self.threshold}, "
                f"waited {self.waited_s:.0f} s in all, gave up waiting {self.gave_up}x "
                f"after {self.cap_s:.0f} s)")


def rotated(items, k):
    k %= max(1, len(items))
    return items[k:] + items[:k]


def new_workdir():
    return tempfile.TemporaryDirectory(prefix="bridge-bench.")
