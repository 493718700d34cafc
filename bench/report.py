# SPDX-License-Identifier: MIT
"""bench/RESULTS.md and bench/results.png from the rows of bench/sections.py."""
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from common import machine  # noqa: F401  (run.py reports it as report.machine)

TITLES = {
    1: "Attach an existing array → ndarray",
    2: "Create + attach + read + destroy of 4 KiB (rates, higher is better)",
    3: "1 GiB handoff to another process",
    4: "Wake: one process commits, another wakes",
    5: "First touch: another process reads every page of 1 GiB",
    6: "Memory: the daemon's resident memory per segment, a client's per cached mapping",
    7: "C++ attach against a bare round trip + mmap (Google Benchmark)",
    8: "No stalls: attach while another client creates + destroys 4 GiB arrays",
    9: "Streams: publish → receive latency and throughput, 1 and 3 readers",
}
EXPLAIN = {
    1: "A worker process attaches arrays the driver created: *fresh* = an array that process "
       "never mapped (one attach each), *re-attach* = attach → ndarray → read byte 0 → close "
       "in a loop on one array. Each attach ends with a read of the first byte, so a lazy "
       "mapping pays its first fault. vineyard: `client.get(object_id)`; its arena is mapped "
       "once per client, so every get after the first is 'fresh' only for the object. "
       "Ratio = p50 ÷ the bare round trip (Python client, blocking Python echo server in "
       "another process, 200 B, same run).",
    2: "Each client process (spawned, its own connection) loops create → attach → read byte 0 → "
       "destroy → close both handles on fresh names for a fixed time; the rate is all "
       "processes' cycles ÷ the longest process's elapsed time. p50 column = median over "
       "rounds, p99 column = the slowest round. Baseline: the bare round trips per second "
       "of section 1 (one client), a ceiling for a protocol with one round trip per cycle.",
    3: "The driver creates a 1 GiB array and fills it from a ready source (np.copyto), then "
       "a worker process attaches it and reads one byte of every 4 KiB page; total = create "
       "through the consumer's reply, consumer side = its attach + read. Baseline: one warm "
       "memcpy of 1 GiB into an already-touched buffer, in the same rounds. *Producer* = "
       "the create + fill (or create_from) alone. *huge pages*: shmbridge with "
       "`huge_pages=True` against a second daemon of this run whose `--huge-dir` is a "
       "`huge=always` tmpfs in a private mount namespace (root only; the row says why when "
       "it could not run), started with `--pool 1G` (1 GiB of faulted huge pages kept "
       "ready, rebuilt in the background after each use, as vineyardd keeps its arena); "
       "before each of its creates the driver waits, untimed, until the pool is ready again "
       "(a create right after another 1 GiB create costs what it does without the pool). "
       "Target (issue 9): producer ≤ 1.5 × the memcpy.",
    4: "bench/wake_latency.py (ping-pong round trip ÷ 2), run from this driver. Baseline: "
       "the bare futex in the same placement. iceoryx2 events are not in it yet.",
    5: "From section 3's consumer: the read of every page right after attach (first touch, "
       "one minor fault per 4 KiB page), against the same read repeated in that process "
       "(pages already mapped). 4 KiB pages: one minor fault each; huge pages (the "
       "*huge pages* rows, see section 3): one fault per 2 MiB. Target (issue 9): ≤ 10 ms "
       "with huge pages.",
    6: "A fresh-ish daemon (the one of this run) before, with, and after 1,000 live 4 KiB "
       "segments created by one client; /proc/<pid>/status. Then the driver's own client "
       "with 1,000 mappings in its mapping cache (handles closed) against the same client "
       "once they are released. The ratio is bytes per segment (or mapping) ÷ the "
       "segment's 4 KiB payload.",
    7: "bench/attach_bench.cpp against the daemon of this run: *fresh* = a segment this "
       "process has no mapping of (created and its handle closed, untimed); the floor = a "
       "bare C++ round trip to a blocking echo server in a forked process + shm_open + fstat "
       "+ mmap + first byte + munmap + close of an existing POSIX shm object.",
    8: "A worker process attaches a 4 KiB array (attach → ndarray → first byte → close, "
       "as section 1's re-attach) on the idle daemon, then again while another client "
       "process loops create → close → destroy of 4 GiB arrays (2 or 1 GiB where /dev/shm "
       "is smaller). Reserving or freeing gigabytes of pages takes the kernel about a "
       "second; a daemon doing it on its io thread makes every other request wait. The "
       "figure to watch: p99 while churning ÷ idle p99.",
    9: "bench/streams.py: one publisher process, 1 or 3 reader processes, the same protocol "
       "for every method. The publisher fills the whole frame from a ready source frame, "
       "stamps (seq, CLOCK_MONOTONIC) into its first 16 bytes and publishes; a reader "
       "records now − stamp and reads nothing else (zero-copy readers pay nothing per "
       "byte). Latency: 1 reader, publisher on CPU 0 and reader on CPU 1, frames paced so "
       "the reader is asleep when each comes; baseline: a bare futex wake with the same "
       "pacing and CPUs (`bridge_stream_bench floor`: a vCPU idle for milliseconds takes "
       "tens of µs to wake on this VM, more than in section 4's back-to-back ping-pong), "
       "same rounds. "
       "Throughput: frames as fast as the publisher goes, lossless modes (shmbridge "
       "`block`, iceoryx2 RetryUntilDelivered, zmq XPUB_NODROP, bounded queues); rate = "
       "frames the slowest reader received ÷ time from go to the last reader's last "
       "frame; baseline: the publisher's own fill + stamp of one frame in a loop, alone "
       "(the ceiling for a zero-copy stream). shmbridge Python/C++ publish into a `block` "
       "ring of 8 slots on this run's daemon.",
}


def versions(names):
    out = [f"Python {platform.python_version()}"]
    for dist in ("numpy", "SharedArray", "vineyard", "iceoryx2", "pyzmq", "matplotlib"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def fmt(v, unit):
    if v is None:
        return "–"
    if unit == "bytes":
        return f"{v:,.0f}"
    if unit == "cycles/s":
        return f"{v:,.0f}"
    return f"{v:,.1f}" if v >= 10 else f"{v:.2f}"


def ratio(r):
    if r["baseline"] in (None, 0) or r["p50"] is None:
        return None
    return r["p50"] / r["baseline"]


def shmbridge_value(rows, r):
    for x in rows:
        if x["section"] == r["section"] and x["metric"] == r["metric"] \
                and x["method"].startswith("shmbridge") and x["method"] != "shmbridge Python":
            return x["p50"]
    return None


def write_markdown(path, header, rows):
    L = ["# Benchmark results", "",
         "Written by `bench/run.py` (`make bench`); nothing here is a test. Compare the "
         "ratios, measured in one run; absolute times move between runs and machines.", "",
         f"- run: {header['date']}, {header['machine']}, {header['duration_s']:.0f} s, "
         f"arguments: `{header['args']}`, rounds per section: {header['rounds']}",
         "- load average (1, 5, 15 min) before: "
         + ", ".join(f"{x:.2f}" for x in header["load_before"])
         + "; after: " + ", ".join(f"{x:.2f}" for x in header["load_after"]),
         f"- {header['quiet']}",
         f"- {header['versions']}",
         "- ÷ shmbridge: the method's p50 ÷ shmbridge's in the same row group (times: < 1 "
         "means the peer is faster; rates: > 1 means the peer is faster).", ""]
    for sec in sorted({r["section"] for r in rows}):
        L += [f"## {sec}. {TITLES[sec]}", "", EXPLAIN[sec], ""]
        L += ["| metric | method | p50 | p99 | unit | baseline (p50) | ÷ baseline | "
              "÷ shmbridge | what limits it |",
              "|---|---|---:|---:|---|---:|---:|---:|---|"]
        sec_rows = [r for r in rows if r["section"] == sec]
        for r in sec_rows:
            rr = ratio(r)
            s = shmbridge_value(sec_rows, r)
            vs = "" if (s in (None, 0) or r["p50"] is None or r["method"] == "baseline") \
                else f"{r['p50'] / s:.2f}"
            base = "" if r["baseline"] is None else f"{fmt(r['baseline'], r['unit'])} " \
                f"({r['baseline_label']})"
            L.append(f"| {r['metric']} | {r['method']} | {fmt(r['p50'], r['unit'])} | "
                     f"{fmt(r['p99'], r['unit'])} | {r['unit']} | {base} | "
                     f"{'' if rr is None else f'{rr:.2f}'} | {vs} | {r['limits']} |")
        L.append("")
    if header["notes"]:
        L += ["## Notes", ""] + [f"- {n}" for n in header["notes"]] + [""]
    Path(path).write_text("\n".join(L))


def plot(path, rows):
    try:
        import matplotlib
    except ImportError:  # e.g. a run of a few sections from the project's .venv
        print(f"matplotlib is not installed: {path} not written", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sorted((r for r in rows if ratio(r) and not r["method"].startswith("baseline")),
                   key=lambda r: r["section"])
    if not shown:
        return

    def short(text, n=72):
        return text if len(text) <= n else text[:n - 1] + "…"

    labels = [f"§{r['section']} {short(r['metric'])} — {r['method']}" for r in shown]
    values = [ratio(r) for r in shown]
    colors = ["tab:blue" if r["method"].startswith("shmbridge") else "tab:gray" for r in shown]
    fig, ax = plt.subplots(figsize=(14, 0.28 * len(shown) + 1.5))
    y = range(len(shown))
    ax.barh(list(y), values, color=colors)
    ax.set_yticks(list(y))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("p50 ÷ the section's baseline measured in the same run (log; blue = shmbridge; "
                  "times: lower is better, §2 rates: higher is better)")
    ax.set_title("shmbridge and peers, ratio to baseline (bench/RESULTS.md)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
