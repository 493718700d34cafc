#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Wake latency "one process commits, another wakes", side by side in one run.

Two processes ping-pong N round trips with each method; the one-way latency
is half a round trip. Methods:

  futex                  bare futex on a shared word (the floor; C++)
  futex, asleep          the same, each side waking only once the other is
                         waiting: the floor of "shmbridge C++, asleep"
  pipe                   a byte over a pipe each way (C++)
  shmbridge C++          Segment::mark_changed() -> Segment::wait() on two segments
  shmbridge C++, asleep  the same, each commit made only once the other side
                         is registered as a waiter (past wait()'s spin), so
                         every turn wakes a sleeping process
  shmbridge Python       seg.mark_changed() -> seg.wait() via pybridge, both sides

Each method runs with both processes pinned to one core, and pinned to two
cores: unpinned, the scheduler's choice (and whether wait()'s spin catches
the reply) decides the figure more than the method does.

Starts its own bridged (--ephemeral, private socket), runs every method once
per repetition (in rotating order), and prints the median over repetitions of
each method's p50 and p99, and the ratio of its p50 to the futex floor's in
the same placement. Absolute times depend on the machine (an idle vCPU takes
~20 us to wake); the ratios are what to compare. Usage (or `make bench`):

  PYTHONPATH=build/cmake/python python bench/wake_latency.py --bin-dir build/cmake/bin
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Bridged, machine, percentile  # noqa: E402  (bench/common.py)

CPP_METHODS = {"futex": "futex", "futex, asleep": "futex-asleep", "pipe": "pipe",
               "shmbridge C++": "shmbridge",
               "shmbridge C++, asleep": "shmbridge-asleep"}
PYTHON_METHOD = "shmbridge Python"
METHODS = [*CPP_METHODS, PYTHON_METHOD]
WAIT_TIMEOUT_S = 10.0  # a partner that died fails the run instead of hanging it


def placements():
    """Placement name -> (CPU of the measuring process, CPU of its partner)."""
    cpus = sorted(os.sched_getaffinity(0))
    found = {"same core": (cpus[0], cpus[0])}
    if len(cpus) > 1:
        found["across cores"] = (cpus[0], cpus[1])
    return found


def run_cpp(bin_dir, method, cpus, socket, args):
    out = subprocess.run(
        [str(bin_dir / "bridge_wake_latency"), "--method", CPP_METHODS[method],
         "--socket", socket, "--round-trips", str(args.round_trips),
         "--warmup", str(args.warmup), "--cpus", f"{cpus[0]},{cpus[1]}"],
        check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    return result["rtt_p50_ns"], result["rtt_p99_ns"]


def run_python(cpus, socket, args):
    import pybridge

    tag = os.getpid()
    total = args.warmup + args.round_trips
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    try:
        return ping_python(pybridge, tag, total, cpus[1], socket, args)
    finally:
        os.sched_setaffinity(0, affinity)


def ping_python(pybridge, tag, total, partner_cpu, socket, args):
    with pybridge.connect(socket) as client:
        ping = client.create(f"bench-pyping-{tag}", (1,), "uint8")
        pong = client.create(f"bench-pypong-{tag}", (1,), "uint8")
        seen_pong = pong.version
        partner = subprocess.Popen(
            [sys.executable, __file__, "--partner", socket, ping.name, pong.name,
             str(ping.version), str(total), str(partner_cpu)],
            stdout=subprocess.PIPE)
        try:
            if partner.stdout.readline() != b"ready\n":
                raise RuntimeError("the Python partner did not start")
            samples = []
            clock = time.perf_counter_ns
            for i in range(total):
                start = clock()
                ping.mark_changed()
                seen_pong = pong.wait(newer_than=seen_pong, timeout=WAIT_TIMEOUT_S)
                if i >= args.warmup:
                    samples.append(clock() - start)
        finally:
            if partner.wait(timeout=30) != 0:
                raise RuntimeError("the Python partner failed")
        ping.close()
        pong.close()
        client.destroy(f"bench-pyping-{tag}")
        client.destroy(f"bench-pypong-{tag}")
    samples.sort()
    return percentile(samples, 0.50), percentile(samples, 0.99)


def partner_main(socket, ping_name, pong_name, ping_start, total, cpu):
    """The other process of the Python method: wait for ping, commit pong."""
    import pybridge

    os.sched_setaffinity(0, {int(cpu)})
    with pybridge.connect(socket) as client:
        ping = client.attach(ping_name)
        pong = client.attach(pong_name)
        print("ready", flush=True)
        seen = int(ping_start)
        for _ in range(int(total)):
            seen = ping.wait(newer_than=seen, timeout=WAIT_TIMEOUT_S)
            pong.mark_changed()
        ping.close()
        pong.close()


def python_unavailable():
    """Why the Python method cannot run, or None."""
    try:
        import pybridge
    except ImportError as e:
        return f"pybridge not importable ({e}); set PYTHONPATH to <build>/python"
    if not (hasattr(pybridge.Segment, "wait") and hasattr(pybridge.Segment, "mark_changed")):
        return "this pybridge has no Segment.commit/wait"
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", type=Path,
                        default=Path(os.environ.get("BRIDGE_BIN_DIR", "build/cmake/bin")),
                        help="folder with bridged and bridge_wake_latency ($BRIDGE_BIN_DIR)")
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--repetitions", type=int, default=9)
    parser.add_argument("--partner", nargs=6, metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.partner:
        partner_main(*args.partner)
        return

    skip_python = python_unavailable()
    methods = [m for m in METHODS if not (m == PYTHON_METHOD and skip_python)]
    where = placements()
    runs = [(place, method) for place in where for method in methods]
    results = {run: [] for run in runs}
    load = os.getloadavg()[0]
    started = time.monotonic()
    workdir = tempfile.TemporaryDirectory(prefix="bridge-bench.")
    daemon = Bridged(args.bin_dir, workdir.name)
    try:
        for rep in range(args.repetitions):
            # Rotating the order spreads any drift (frequency, noise) over all methods.
            for place, method in runs[rep % len(runs):] + runs[:rep % len(runs)]:
                cpus = where[place]
                if method == PYTHON_METHOD:
                    sample = run_python(cpus, daemon.socket, args)
                else:
                    sample = run_cpp(args.bin_dir, method, cpus, daemon.socket, args)
                results[(place, method)].append(sample)
    finally:
        daemon.stop()
        workdir.cleanup()

    print(f"wake latency, one-way = round trip / 2; {args.round_trips} round trips "
          f"after {args.warmup} warm-up; median of {args.repetitions} repetitions")
    print(f"{datetime.date.today()}, {machine()}, load average {load:.1f} before, "
          f"{time.monotonic() - started:.0f} s")
    for place, cpus in where.items():
        print(f"\n{place} (CPU {cpus[0]} and CPU {cpus[1]}):\n")
        print(f"| {'method':<22}| {'p50 µs':>7} | {'p99 µs':>7} | {'p50 / futex':>11} "
              f"| {'p50 range µs':>13} |")
        print(f"|{'-' * 23}|{'-' * 9}|{'-' * 9}|{'-' * 13}|{'-' * 15}|")
        floor = statistics.median(p50 for p50, _ in results[(place, "futex")])
        for method in methods:
            p50s = [p50 / 2e3 for p50, _ in results[(place, method)]]
            p99s = [p99 / 2e3 for _, p99 in results[(place, method)]]
            p50 = statistics.median(p50s)
            print(f"| {method:<22}| {p50:7.1f} | {statistics.median(p99s):7.1f} "
                  f"| {p50 * 2e3 / floor:10.2f}x | {min(p50s):5.1f} – {max(p50s):5.1f} |")
    if skip_python:
        print(f"\n{PYTHON_METHOD}: not run: {skip_python}")


if __name__ == "__main__":
    main()
