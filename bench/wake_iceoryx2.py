#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""iceoryx2 events, ping-pong between two Python processes, as in
bench/wake_latency.py: notifier.notify() on one event service, the partner's
listener.blocking_wait() on it, then back on a second service. Prints one JSON
line {"rtt_p50_ns": .., "rtt_p99_ns": ..}. Several notifications pending at one
wake arrive together, so each side waits for one notification and replies:
there is exactly one in flight per direction.

  python bench/wake_iceoryx2.py --cpus A,B [--round-trips N] [--warmup W]
"""
import argparse
import json
import os
import subprocess
import sys
import time


def services(tag):
    import iceoryx2 as iox2
    iox2.set_log_level_from_env_or(iox2.LogLevel.Warn)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    ping = node.service_builder(iox2.ServiceName.new(f"bench-ping-{tag}")).event().open_or_create()
    pong = node.service_builder(iox2.ServiceName.new(f"bench-pong-{tag}")).event().open_or_create()
    return node, ping, pong


def wait_one(listener):
    while not listener.blocking_wait():
        pass


def partner(tag, total, cpu):
    os.sched_setaffinity(0, {cpu})
    node, ping, pong = services(tag)
    listener = ping.listener_builder().create()
    notifier = pong.notifier_builder().create()
    print("ready", flush=True)
    for _ in range(total):
        wait_one(listener)
        notifier.notify()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cpus", required=True)
    p.add_argument("--round-trips", type=int, default=20_000)
    p.add_argument("--warmup", type=int, default=2_000)
    p.add_argument("--partner", nargs=3)
    a = p.parse_args()
    if a.partner:
        partner(a.partner[0], int(a.partner[1]), int(a.partner[2]))
        return
    mine, theirs = (int(c) for c in a.cpus.split(","))
    os.sched_setaffinity(0, {mine})
    tag = f"{os.getpid()}"
    total = a.warmup + a.round_trips
    node, ping, pong = services(tag)
    notifier = ping.notifier_builder().create()
    listener = pong.listener_builder().create()
    child = subprocess.Popen([sys.executable, __file__, "--cpus", a.cpus, "--partner", tag,
                              str(total), str(theirs)], stdout=subprocess.PIPE)
    if child.stdout.readline() != b"ready\n":
        raise SystemExit("iceoryx2 partner did not start")
    time.sleep(0.05)
    samples = []
    clock = time.perf_counter_ns
    for i in range(total):
        t = clock()
        notifier.notify()
        wait_one(listener)
        if i >= a.warmup:
            samples.append(clock() - t)
    child.wait(timeout=30)
    samples.sort()
    pick = lambda q: samples[int(q * (len(samples) - 1) + 0.5)]  # noqa: E731
    print(json.dumps({"rtt_p50_ns": pick(0.5), "rtt_p99_ns": pick(0.99)}))


if __name__ == "__main__":
    main()
