# SPDX-License-Identifier: MIT
"""The sections of bench/run.py. Each returns rows for bench/report.py:
dict(section, metric, method, p50, p99, unit, baseline_label, baseline, limits)
with times in the row's unit. p50 / p99 are medians over rounds of each
round's p50 / p99."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import common
import methods
import streams
from common import median, p50_p99

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
HERE = Path(__file__).resolve().parent


def size_name(n):
    return f"{n // GIB} GiB" if n >= GIB else f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"


def row(section, metric, method, p50, p99, unit, baseline_label=None, baseline=None, limits=""):
    return dict(section=section, metric=metric, method=method, p50=p50, p99=p99, unit=unit,
                baseline_label=baseline_label, baseline=baseline, limits=limits)


def variant_name(method, how):
    if method == "shmbridge":
        return f"shmbridge ({how})"
    if method == "shmbridge-huge":
        return f"shmbridge huge pages ({how})"
    return method


class Sections:
    def __init__(self, args, pool, local, quiet, echo_path, bridged, huge=None,
                 huge_reason=None):
        self.args = args
        #: methods.ShmbridgeHuge on the huge-page daemon (sections 3 and 5), or
        #: None and why not.
        self.huge = huge
        self.huge_reason = huge_reason
        self.pool = pool
        self.local = local  # method name -> instance in this (the driver's) process
        self.quiet = quiet
        self.echo_path = echo_path
        self.bridged = bridged
        self.notes = []
        self.rtt_us = None
        self.tag = 0

    def key(self, what):
        self.tag += 1
        return f"bench-{what}-{os.getpid()}-{self.tag}"

    # ---- 1 -------------------------------------------------------------------
    def attach(self):
        quick = self.args.quick
        sizes = [4 * KIB, 64 * MIB] + ([GIB] if self.args.big else [])
        fresh_n = {4 * KIB: 20 if quick else 50, 64 * MIB: 8 if quick else 20, GIB: 2}
        again_n = 100 if quick else 300
        rtt_n = 300 if quick else 1000
        names = list(self.local)
        runs = [("uds", None)] + [(m, s) for m in names for s in sizes]
        fresh = {r: [] for r in runs}
        again = {r: [] for r in runs}
        fill = {s: np.ones(s, np.uint8) for s in sizes}
        for rnd in range(self.args.rounds):
            self.quiet.wait()
            for method, size in common.rotated(runs, rnd):
                if method == "uds":
                    fresh[(method, size)].append(p50_p99(self.pool.call(
                        0, "uds", path=self.echo_path, n=rtt_n)))
                    continue
                m = self.local[method]
                made = [m.create(self.key("att"), size, fill[size]) for _ in range(fresh_n[size])]
                try:
                    fresh[(method, size)].append(p50_p99(self.pool.call(
                        0, "attach_fresh", method=method, refs=[r for r, _ in made])))
                    again[(method, size)].append(p50_p99(self.pool.call(
                        0, "attach_again", method=method, ref=made[0][0], n=again_n)))
                finally:
                    for ref, keep in made:
                        m.destroy(ref, keep)
                    made = None
        rtt = [median(p for p, _ in fresh[("uds", None)]) / 1e3,
               median(q for _, q in fresh[("uds", None)]) / 1e3]
        self.rtt_us = rtt[0]
        label = "bare UDS RTT (200 B, Python)"
        out = [row(1, "bare Unix-socket round trip, 200 B, blocking echo server",
                   "baseline", rtt[0], rtt[1], "µs", label, rtt[0],
                   "the kernel's socket wake-up of another process")]
        for kind, data in (("fresh", fresh), ("re-attach", again)):
            for size in sizes:
                for method in names:
                    v = data[(method, size)]
                    p50 = median(p for p, _ in v) / 1e3
                    p99 = median(q for _, q in v) / 1e3
                    limits = ""
                    if method == "shmbridge" and kind == "fresh":
                        limits = (f"≈ {p50 / rtt[0]:.1f} bare round trips, though no round "
                                  "trip is made (a direct attach: the daemon's user opens the "
                                  "object itself): open, fstat, mmap, mprotect of the header, "
                                  "faults of the header and sync pages, header validation, "
                                  "the slot-table check, the attach ledger's entry (no "
                                  "message), the ndarray and its first fault")
                    elif method == "shmbridge":
                        limits = ("a mapping-cache hit: no round trip, no mmap (slot table + "
                                  "header compare, or one stat while the daemon has not read "
                                  "the create yet); what is left is the client's bookkeeping and "
                                  "the ndarray")
                    out.append(row(1, f"attach {kind}, {size_name(size)} → ndarray + first byte",
                                   method, p50, p99, "µs", label, rtt[0], limits))
        return out

    # ---- 2 -------------------------------------------------------------------
    def cycles(self):
        seconds = 1.0 if self.args.quick else 2.0
        names = list(self.local)
        runs = [(m, n) for n in self.args.clients for m in names]
        rates = {r: [] for r in runs}
        for rnd in range(self.args.rounds):
            self.quiet.wait()
            for method, n in common.rotated(runs, rnd):
                start_at = time.monotonic() + 0.2
                ids = [self.pool.send(i, "cycles", method=method, tag=f"{rnd}-{i}-{n}",
                                      start_at=start_at, seconds=seconds) for i in range(n)]
                got = self.pool.gather(ids)
                rates[(method, n)].append(sum(c for c, _ in got) / max(e for _, e in got))
        base = 1e6 / self.rtt_us if self.rtt_us else None
        out = []
        for n in self.args.clients:
            for method in names:
                v = rates[(method, n)]
                limits = ""
                if method == "shmbridge" and base:
                    limits = (f"one cycle ≈ {base / median(v):.1f} bare round trips of time, "
                              "though none is made: the client creates the object itself as "
                              "the daemon would (open, fstat, fallocate, one pwrite of the "
                              "header, mmap, mprotect, rename, close: 9 system calls), destroy "
                              "claims it and unlinks it, the attach is a cache hit; whether a "
                              "daemon reads the journal is two words in shared memory, no "
                              "system call; the daemon reads the journal every 10 ms. Against "
                              "SharedArray (perf, 1 client, 60k cycles each): less kernel time "
                              "per cycle (42 µs against 52: the attach is a cache hit, no "
                              "system call) but more user time (37 µs against 25: Python 13.7 "
                              "against 12.7, our extension 10.5 against its module's 1.4, libc "
                              "8.2 against 6.2); from 4 clients on, 3 exclusive /dev/shm "
                              "directory operations (create, rename, unlink) where it has 2, "
                              "which queue on the directory's lock. Counted by callgrind, 1 "
                              "client: 38.5k user-space instructions per cycle against "
                              "SharedArray's 12.1k, spread over ~100 functions with no hot spot "
                              "(journal records, the mapping cache, the attach ledger, ~23 "
                              "uncontended mutex locks, the nanobind calls); pybridge.Segment "
                              "derives from the compiled class, so no Python frame runs to "
                              "make, read or close one. An unnamed staging object (O_TMPFILE + "
                              "linkat, one directory operation fewer) was tried and dropped: "
                              "the creator's own mapping would show in /proc/PID/maps as "
                              "'/dev/shm/#inode (deleted)'")
                out.append(row(2, f"create+attach+read+destroy 4 KiB, {n} client process"
                               + ("es" if n > 1 else ""), method, median(v), min(v),
                               "cycles/s", "bare UDS round trips/s, 1 client", base, limits))
        return out

    # ---- 3 and 5 ---------------------------------------------------------------
    def handoff(self):
        size = GIB
        src = np.full(size, 7, np.uint8)
        dst = np.empty(size, np.uint8)
        np.copyto(dst, src)
        variants = []
        for name in self.local:
            variants.append((name, "create + fill"))
            if name == "shmbridge":
                variants.append((name, "create_from"))
                if self.huge:
                    variants += [("shmbridge-huge", "create + fill"),
                                 ("shmbridge-huge", "create_from")]
        runs = [("memcpy", None)] + variants
        total = {r: [] for r in runs}
        produce = {r: [] for r in runs}
        consumer = {r: [] for r in runs}
        first_read = {r: [] for r in runs}
        warm_read = {r: [] for r in runs}
        rounds = max(2, self.args.rounds - (1 if self.args.quick else 2))
        for rnd in range(rounds):
            self.quiet.wait()
            for method, how in common.rotated(runs, rnd):
                if method == "memcpy":
                    t = time.perf_counter_ns()
                    np.copyto(dst, src)
                    total[(method, how)].append(time.perf_counter_ns() - t)
                    continue
                m = self.huge if method == "shmbridge-huge" else self.local[method]
                if method == "shmbridge-huge" and not m.wait_pool():
                    self.notes.append("Section 3: a huge create found --pool not rebuilt in 10 s.")
                t = time.perf_counter_ns()
                if how == "create_from":
                    ref, keep = m.create_from(self.key("h"), src)
                else:
                    ref, keep = m.create(self.key("h"), size, src)
                produce[(method, how)].append(time.perf_counter_ns() - t)
                attach_ns, read_ns, again_ns = self.pool.call(0, "consume", method=method, ref=ref)
                # The consumer's second (warm) read comes before its reply: not the handoff's.
                total[(method, how)].append(time.perf_counter_ns() - t - again_ns)
                consumer[(method, how)].append(attach_ns + read_ns)
                first_read[(method, how)].append(read_ns)
                warm_read[(method, how)].append(again_ns)
                m.destroy(ref, keep)
                keep = None
        del src, dst
        self.first_touch_data = (variants, first_read, warm_read, consumer)
        copy = median(total[("memcpy", None)]) / 1e6
        label = "one warm memcpy of 1 GiB (np.copyto)"
        out = [row(3, "1 GiB warm memcpy (already-touched destination)", "baseline",
                   copy, max(total[("memcpy", None)]) / 1e6, "ms", label, copy,
                   "memory bandwidth")]
        for method, how in variants:
            name = variant_name(method, how)
            t = total[(method, how)]
            c = consumer[(method, how)]
            p = produce[(method, how)]
            huge = method == "shmbridge-huge"
            out.append(row(3, "1 GiB handoff total: create + fill, other process attaches + "
                           "reads every page", name, median(t) / 1e6, max(t) / 1e6, "ms",
                           label, copy, "a copy into a resident arena" if method == "vineyard"
                           else "--pool's faulted 2 MiB pages: a memcpy and 512 mapping faults"
                           if huge
                           else "page allocation + faults of fresh shared memory"))
            out.append(row(3, "1 GiB producer alone: create + fill (or create_from)", name,
                           median(p) / 1e6, max(p) / 1e6, "ms", label, copy,
                           ("memcpy into --pool's already faulted 2 MiB pages, on up to 4 "
                            "threads (as many as there are CPUs; the pool's rebuild waits for "
                            "idle CPU) (target ≤ 1.5 × memcpy)" if how == "create_from" else
                            "one-thread memcpy (np.copyto) into --pool's already faulted 2 MiB "
                            "pages (target ≤ 1.5 × memcpy)") if huge
                           else "page allocation + faults + memcpy"))
            out.append(row(3, "1 GiB handoff, consumer side: attach + read every page",
                           name, median(c) / 1e6, max(c) / 1e6, "ms", label, copy,
                           "one fault per 2 MiB page" if huge
                           else "one minor fault per 4 KiB page"))
        if "shmbridge" in self.local and not self.huge:
            out.append(row(3, "1 GiB producer alone: create + fill (or create_from)",
                           "shmbridge huge pages", None, None, "ms", label, copy,
                           "not measured: " + str(self.huge_reason)))
        self.notes.append("Sections 3 and 5: the p99 column holds the slowest round "
                          f"({rounds} rounds of one handoff each).")
        return out

    def first_touch(self):
        if not hasattr(self, "first_touch_data"):
            self.handoff()
        variants, first_read, warm_read, _ = self.first_touch_data
        out = []
        warm = median([median(warm_read[v]) for v in variants]) / 1e6
        label = "the same read again in that process (pages mapped)"
        for v in variants:
            method, how = v
            out.append(row(5, "another process reads every 4 KiB page of 1 GiB (first touch)",
                           variant_name(method, how), median(first_read[v]) / 1e6,
                           max(first_read[v]) / 1e6, "ms", label, warm,
                           "512 faults of 2 MiB pages (target ≤ 10 ms)"
                           if method == "shmbridge-huge" else "262,144 minor faults (4 KiB pages)"))
        if "shmbridge" in self.local and not self.huge:
            out.append(row(5, "another process reads every 4 KiB page of 1 GiB (first touch)",
                           "shmbridge huge pages", None, None, "ms", label, warm,
                           "not measured: " + str(self.huge_reason)))
        return out

    # ---- 4 -------------------------------------------------------------------
    # What limits each wake row of bench/wake_latency.py (libbridge/src/sync.cpp).
    WAKE_LIMITS = {
        ("same core", "futex, asleep"):
            "the floor for the asleep rows: the futex, plus the sched_yield loop that "
            "waits for the partner to be asleep (extra switches on one core)",
        ("across cores", "futex, asleep"):
            "the floor for the asleep rows: waking the other, halted vCPU every turn",
        ("same core", "pipe"):
            "a pipe write and a blocking read per turn: the kernel's wake-up and switch",
        ("same core", "shmbridge C++"):
            "the floor's futex wake, sleep and switch: wait() stops spinning once its "
            "spins keep missing (the committer needs the CPU; one probe spin per ≤ 65 "
            "waits) + the commit's atomics and Segment's pin (mutex, shared_ptr)",
        ("same core", "shmbridge C++, asleep"):
            "as 'futex, asleep': the bench's sched_yield loop until the partner is "
            "registered costs switches the plain futex row does not pay",
        ("same core", "shmbridge Python"):
            "the C++ path + the interpreter on both sides: two bound calls per turn (a "
            "wait that finds the version newer returns under the GIL, no clock read), "
            "releasing and re-taking the GIL, the main thread's 100 ms signal-check slice "
            "(a futex timer per sleep)",
        ("across cores", "pipe"):
            "waking the other, halted vCPU (≈ 20 µs on this VM) on every turn",
        ("across cores", "shmbridge C++"):
            "wait()'s spin catches the reply: one cache-line transfer between cores, "
            "no syscall",
        ("across cores", "shmbridge C++, asleep"):
            "waking a sleeping waiter on the other, halted vCPU (the floor's wake); the spin "
            "is skipped once it keeps missing",
        ("across cores", "shmbridge Python"):
            "wait()'s spin catches the reply; the interpreter's per-call cost on both sides",
    }

    def wake(self):
        quick = self.args.quick
        cmd = [sys.executable, str(HERE / "wake_latency.py"), "--bin-dir", str(self.args.bin_dir),
               "--round-trips", "5000" if quick else "20000",
               "--warmup", "500" if quick else "2000",
               # 9: on this VM a row (the futex floor too) jumps between two levels
               # from one run to the next; a median of 5 can land on either.
               "--repetitions", "2" if quick else "9"]
        self.quiet.wait()
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        self.wake_text = text
        out = []
        place = None
        floors = {}
        for line in text.splitlines():
            if line.startswith("same core") or line.startswith("across cores"):
                place = line.split(" (")[0]
            m = re.match(r"\|\s*([^|]+?)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)x", line)
            if m and place:
                method, p50, p99 = m.group(1), float(m.group(2)), float(m.group(3))
                if method == "futex":
                    floors[place] = p50
                    continue
                out.append(row(4, f"wake one-way, {place} (pinned)", method, p50, p99, "µs",
                               "bare futex wake, same placement", floors.get(place),
                               self.WAKE_LIMITS.get((place, method), "")))
        out.extend(self.wake_iceoryx2(floors))
        self.notes.append("Section 4 is bench/wake_latency.py run as is; its own output:\n\n```\n"
                          + text.strip() + "\n```")
        return out

    def wake_iceoryx2(self, floors):
        """iceoryx2 events between two Python processes (bench/wake_iceoryx2.py), in the
        placements of wake_latency.py; ratio to that run's futex floor."""
        try:
            import iceoryx2  # noqa: F401
        except ImportError:
            self.notes.append("iceoryx2 not importable: no iceoryx2 row in section 4")
            return []
        cpus = sorted(os.sched_getaffinity(0))
        where = {"same core": (cpus[0], cpus[0])}
        if len(cpus) > 1:
            where["across cores"] = (cpus[0], cpus[1])
        quick = self.args.quick
        got = {p: [] for p in where}
        for rep in range(2 if quick else 5):
            for place, (a, b) in where.items():
                text = subprocess.run(
                    [sys.executable, str(HERE / "wake_iceoryx2.py"), "--cpus", f"{a},{b}",
                     "--round-trips", "5000" if quick else "20000",
                     "--warmup", "500" if quick else "2000"],
                    check=True, capture_output=True, text=True, timeout=300).stdout
                r = json.loads(text.strip().splitlines()[-1])
                got[place].append((r["rtt_p50_ns"] / 2e3, r["rtt_p99_ns"] / 2e3))
        return [row(4, f"wake one-way, {place} (pinned)", "iceoryx2 event (Python)",
                    median(x for x, _ in v), median(y for _, y in v), "µs",
                    "bare futex wake, same placement", floors.get(place),
                    "notify + blocking_wait, run after wake_latency.py (not interleaved)")
                for place, v in got.items()]

    # ---- 9 -------------------------------------------------------------------
    STREAM_LIMITS = {
        "shmbridge C++": "the ring's futex wake of a sleeping reader (no daemon, no copy); "
                         "throughput: the publisher's fill of each frame",
        "shmbridge Python": "as C++, plus the interpreter: publish()/next() context managers, "
                            "an ndarray per frame (NumPy's C API)",
        "iceoryx2 (Python)": "pub/sub has no blocking receive: an event notify + wait per frame; "
                             "ctypes payload wrapping",
        "pyzmq copy=False": "copy=False saves the user-space copy only: the frame still goes "
                            "through the ipc socket (kernel copy in and out, per reader)",
        "multiprocessing.Queue": "pickle + pipe write per reader, unpickle on the other side",
    }

    def streams(self):
        quick = self.args.quick
        bin_dir = self.args.bin_dir
        cases = []  # (kind, nbytes, frames, readers, interval_us, pinned)
        for nbytes, lat_frames, interval, tput_frames in (
                (streams.FRAME_4K, 100 if quick else 300, 2000, 1000 if quick else 3000),
                (streams.FRAME_1080P, 20 if quick else 60, 20000, 50 if quick else 150)):
            cases.append(("latency", nbytes, lat_frames, 1, interval, True))
            for readers in (1, 3):
                cases.append(("throughput", nbytes, tput_frames, readers, 0, False))
        available = [m for m in streams.METHODS if self._stream_method_ok(m)]
        runs = [(m, c) for c in cases for m in available]
        got = {r: [] for r in runs}
        floors = {c[4]: [] for c in cases if c[0] == "latency"}  # interval -> one-way µs
        writes = {streams.FRAME_4K: [], streams.FRAME_1080P: []}
        for rnd in range(self.args.rounds):
            self.quiet.wait()
            cpus = sorted(os.sched_getaffinity(0))
            for interval, v in floors.items():
                v.append(json.loads(subprocess.run(
                    [str(bin_dir / "bridge_stream_bench"), "floor", "--frames", "200",
                     "--interval-us", str(interval), "--cpus", f"{cpus[0]},{cpus[-1]}"],
                    check=True, capture_output=True, text=True).stdout)["p50_ns"] / 1e3)
            for nbytes in writes:
                writes[nbytes].append(streams.write_rate(nbytes))
            for method, case in common.rotated(runs, rnd):
                kind, nbytes, frames, readers, interval, pinned = case
                try:
                    results, go = streams.run_case(method, nbytes, frames, readers, interval,
                                                   pinned, self.bridged.socket, bin_dir,
                                                   f"{rnd}-{len(got[(method, case)])}")
                except Exception as e:  # one peer failing must not lose the others
                    self.notes.append(f"section 9: {method} {kind} {nbytes} B x{readers}: "
                                      f"{type(e).__name__}: {e}")
                    continue
                if kind == "latency":
                    r = results[0]
                    got[(method, case)].append((r["p50_ns"] / 1e3, r["p99_ns"] / 1e3))
                else:
                    slowest = min(r["received"] for r in results)
                    elapsed = (max(r["last_ns"] for r in results) - go) / 1e9
                    got[(method, case)].append((slowest / elapsed, sum(r["dropped"]
                                                                       for r in results)))
        out = []
        for case in cases:
            kind, nbytes, frames, readers, interval, pinned = case
            size = "4 KiB" if nbytes == streams.FRAME_4K else "1080p RGB"
            for method in available:
                v = got[(method, case)]
                if not v:
                    continue
                limits = self.STREAM_LIMITS.get(method, "")
                if kind == "latency":
                    out.append(row(9, f"publish → receive, {size} frame, 1 reader "
                                   f"(pinned across cores, one frame per {interval // 1000} ms)",
                                   method, median(x for x, _ in v), median(y for _, y in v),
                                   "µs", "bare futex wake, same pacing and CPUs",
                                   median(floors[interval]), limits))
                else:
                    drops = sum(d for _, d in v)
                    if drops:
                        limits += f"; {drops} frames dropped over all rounds"
                    out.append(row(9, f"throughput, {size} frames, {readers} reader"
                                   + ("s" if readers > 1 else ""), method,
                                   median(x for x, _ in v), min(x for x, _ in v), "frames/s",
                                   "the publisher's own fill of a frame, alone",
                                   median(writes[nbytes]), limits))
        return out

    @staticmethod
    def _stream_method_ok(method):
        module = {"iceoryx2 (Python)": "iceoryx2", "pyzmq copy=False": "zmq"}.get(method)
        if module is None:
            return True
        try:
            __import__(module)
            return True
        except ImportError:
            return False

    # ---- 6 -------------------------------------------------------------------
    def memory(self):
        n = 1000
        m = self.local["shmbridge"]

        def status():
            vals = {}
            for line in Path(f"/proc/{self.bridged.pid}/status").read_text().splitlines():
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                    vals[k] = int(v.split()[0]) * 1024
            return vals

        time.sleep(0.2)
        before = status()
        made = [m.create(self.key("mem"), 4 * KIB) for _ in range(n)]
        time.sleep(0.2)
        after = status()
        for ref, keep in made:
            m.destroy(ref, keep)
        made = None
        time.sleep(0.2)
        gone = status()
        out = []
        label = "the segment's own 4 KiB of data"
        for k in ("VmRSS", "RssAnon", "RssShmem", "RssFile"):
            per = (after[k] - before[k]) / n
            out.append(row(6, f"daemon {k} per live 4 KiB segment ({n} created)", "shmbridge",
                           per, None, "bytes", label, 4096.0,
                           f"{k}: {before[k] / MIB:.1f} MiB before, {after[k] / MIB:.1f} MiB "
                           f"with {n}, {gone[k] / MIB:.1f} MiB after destroying them"))
        out += self.client_cache_memory(m.client, n, label)
        return out

    def client_cache_memory(self, client, n, label):
        """This (driver) process's memory per mapping its client keeps in its
        mapping cache, after the handles closed: what re-attach costs to
        keep."""
        def status():
            vals = {}
            for line in Path("/proc/self/status").read_text().splitlines():
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssShmem", "VmPTE"):
                    vals[k] = int(v.split()[0]) * 1024
            return vals

        limits = client.map_cache()
        client.set_map_cache(entries=n, bytes=1 << 40, idle=3600)
        names = [self.key("cached") for _ in range(n)]
        before = status()
        for name in names:
            client.create(name, (4 * KIB,), "uint8").close()
        cached = status()
        entries = client.map_cache()["entries"]
        client.set_map_cache(entries=0)
        released = status()
        for name in names:
            client.destroy(name)
        client.set_map_cache(entries=limits["max_entries"], bytes=limits["max_bytes"],
                             idle=limits["idle_s"])
        out = []
        for k in ("VmRSS", "RssAnon", "RssShmem", "VmPTE"):
            per = (cached[k] - released[k]) / max(entries, 1)
            out.append(row(6, f"client {k} per cached 4 KiB mapping ({entries} cached)",
                           "shmbridge", per, None, "bytes", label, 4096.0,
                           f"{k}: {before[k] / MIB:.1f} MiB before, {cached[k] / MIB:.1f} MiB "
                           f"with {entries} cached, {released[k] / MIB:.1f} MiB once released; "
                           f"RssShmem is the header and sync pages the client read (shared "
                           f"with the daemon, not extra memory); the cache keeps 64 "
                           f"mappings by default"))
        return out

    # ---- 7: C++ (Google Benchmark) ---------------------------------------------
    def cpp_attach(self):
        binary = Path(self.args.bin_dir) / "bridge_attach_bench"
        if not binary.exists():
            self.notes.append(f"Section 7 not run: {binary} was not built (Google Benchmark "
                              "missing? scripts/install-deps.sh installs libbenchmark-dev).")
            return []
        reps = 3 if self.args.quick else max(3, self.args.rounds)
        self.quiet.wait()
        cmd = [str(binary), "--benchmark_format=json", f"--benchmark_repetitions={reps}",
               "--benchmark_min_time=" + ("0.1" if self.args.quick else "0.3")]
        env = dict(os.environ, SHMBRIDGE_BENCH_SOCKET=self.bridged.socket)
        data = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True,
                                         env=env).stdout)
        per = {}
        for b in data["benchmarks"]:
            if b.get("run_type") == "iteration":
                name = re.sub(r"/iterations:\d+", "", b["run_name"])
                per.setdefault(name, []).append(b["real_time"])
        rtt = median(per["uds_round_trip/manual_time"])
        names = {"attach_fresh": "C++ attach fresh (Client::attach + first byte), ",
                 "reattach": "C++ re-attach (attach + first byte + close), ",
                 "uds_rtt_mmap": "bare C++ round trip + shm_open + fstat + mmap + first byte, "}
        out = [row(7, "bare C++ Unix-socket round trip, 200 B, blocking echo server (forked)",
                   "baseline", rtt, max(per["uds_round_trip/manual_time"]), "µs",
                   "bare C++ UDS RTT", rtt, "the kernel's socket wake-up of another process")]
        for size in (4 * KIB, 64 * MIB):
            floor = median(per[f"uds_rtt_mmap/{size}/manual_time"])
            for key, label in names.items():
                v = per[f"{key}/{size}/manual_time"]
                method = "baseline (floor)" if key == "uds_rtt_mmap" else "shmbridge"
                limits = f"≈ {median(v) / rtt:.1f} bare round trips"
                if key == "attach_fresh":
                    limits += (", though none is made (a direct attach: open, fstat, mmap, "
                               "mprotect, 3 faults, a ledger entry; no message)")
                    if size == 64 * MIB:
                        limits += ("; the segments are made in batches of 8 before their "
                                   "attaches, as the floor's object exists before it is "
                                   "opened: right after its create (which zeroes 64 MiB) an "
                                   "attach ran on cold caches, ~60 µs")
                out.append(row(7, label + size_name(size), method, median(v), max(v), "µs",
                               "RTT + shm_open + mmap + first byte", floor, limits))
        self.notes.append(f"Section 7: Google Benchmark, mean time per iteration "
                          f"(manual timing) in each of {reps} repetitions; p50 column = median "
                          "over repetitions, p99 column = the slowest repetition.")
        return out

    # ---- 8: no stalls ------------------------------------------------------------
    def no_stalls(self):
        """Attach of a 4 KiB array by one worker process, on an idle daemon and
        while another client process creates and destroys 4 GiB arrays in a
        loop: a daemon that reserves (or frees) gigabytes on its io thread
        makes every other client wait for it."""
        import multiprocessing

        st = os.statvfs("/dev/shm")
        free = st.f_bavail * st.f_frsize
        big = next((b for b in (4 * GIB, 2 * GIB, GIB) if free >= 2 * b + GIB), None)
        if big is None:
            self.notes.append("Section 8 not run: /dev/shm cannot hold a 1 GiB array twice.")
            return []
        n = 300 if self.args.quick else 1000
        m = self.local["shmbridge"]
        ref, keep = m.create(self.key("stall"), 4 * KIB)
        ctx = multiprocessing.get_context("spawn")
        idle, during = [], []
        try:
            for rnd in range(self.args.rounds):
                self.quiet.wait()
                idle.append(p50_p99(self.pool.call(
                    0, "attach_again", method="shmbridge", ref=ref, n=n)))
                running, stop = ctx.Event(), ctx.Event()
                load = ctx.Process(target=methods.churn, daemon=True,
                                   args=(self.bridged.socket, big, running, stop))
                load.start()
                try:
                    if not running.wait(120):
                        raise RuntimeError("the churning client made no array in 120 s")
                    # Bounded in time: a daemon that stalls would take minutes.
                    during.append(p50_p99(self.pool.call(
                        0, "attach_again", method="shmbridge", ref=ref, n=n, max_seconds=10)))
                finally:
                    stop.set()
                    load.join(timeout=120)
                    if load.is_alive():
                        load.kill()
        finally:
            m.destroy(ref, keep)
        label = "the same attach, daemon idle"
        p50_idle = median(p for p, _ in idle) / 1e3
        p99_idle = median(q for _, q in idle) / 1e3
        p50_during = median(p for p, _ in during) / 1e3
        p99_during = median(q for _, q in during) / 1e3
        self.notes.append(
            f"Section 8: attach p99 while another client creates + destroys {size_name(big)} "
            f"arrays ÷ idle p99 = {p99_during / p99_idle:.1f} (p50: "
            f"{p50_during / p50_idle:.1f}). Ratio column = p50 ÷ idle p50.")
        return [row(8, "attach 4 KiB → ndarray + first byte + close, daemon idle", "shmbridge",
                    p50_idle, p99_idle, "µs", label, p50_idle, ""),
                row(8, f"the same while another client creates + destroys {size_name(big)} "
                    "arrays in a loop", "shmbridge", p50_during, p99_during, "µs", label,
                    p50_idle, f"p99 ÷ idle p99 = {p99_during / p99_idle:.1f}")]
