#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""shmbridge beside its peers, every figure and its baseline measured in one run.

Sections (bench/README.md): 1 attach an existing array, 2 create/attach/read/
destroy rates with 1, 4, 8, 16 client processes, 3 1 GiB handoff, 4 wake latency
(bench/wake_latency.py), 5 first touch of 1 GiB in another process, 6 the
daemon's memory per segment, 7 C++ attach against a bare round trip + mmap
(Google Benchmark, bench/attach_bench.cpp), 8 no stalls: attach while another
client creates + destroys 4 GiB arrays. Methods are interleaved in rounds (rotating
order); every round starts once the 1-minute load average is below a
threshold (or a capped wait ran out) and the load seen is recorded. Figures
are medians over rounds. Writes bench/RESULTS.md and bench/results.png.

  PYTHONPATH=build/cmake/python build/bench-venv/bin/python bench/run.py \
      --bin-dir build/cmake/bin [--quick] [--sections 1,2,3,4,5,6,7,8]
"""
import argparse
import datetime
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import methods  # noqa: E402
import report  # noqa: E402
import sections  # noqa: E402

HERE = Path(__file__).resolve().parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin-dir", type=Path,
                   default=Path(os.environ.get("BRIDGE_BIN_DIR", "build/cmake/bin")))
    p.add_argument("--quick", action="store_true",
                   help="fewer rounds, iterations and client counts (a first look, ~3 min)")
    p.add_argument("--rounds", type=int, help="rounds per section (default 7, quick 3)")
    p.add_argument("--sections", default="1,2,3,4,5,6,7,8,9")
    p.add_argument("--methods", default=",".join(methods.METHODS),
                   help="comma-separated subset of " + ", ".join(methods.METHODS))
    p.add_argument("--big", action="store_true", help="also attach a 1 GiB array in section 1")
    p.add_argument("--load-threshold", type=float, default=1.5,
                   help="start a round once the 1-minute load average is below this")
    p.add_argument("--load-wait", type=float, default=None,
                   help="longest wait for a quiet machine per round, s (default 60, quick 5)")
    p.add_argument("--clients", default=None, help="client counts of section 2 (default 1,4,8,16)")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--png", type=Path, default=HERE / "results.png")
    a = p.parse_args()
    a.rounds = a.rounds or (3 if a.quick else 7)
    a.load_wait = a.load_wait if a.load_wait is not None else (5.0 if a.quick else 60.0)
    a.clients = [int(c) for c in (a.clients or "1,4,8,16").split(",")]
    a.sections = {int(s) for s in a.sections.split(",")}
    a.methods = [m for m in a.methods.split(",") if m]
    return a


def main():
    args = parse_args()
    ctx = multiprocessing.get_context("spawn")
    quiet = common.Quiet(args.load_threshold, args.load_wait)
    started = time.monotonic()
    load_before = os.getloadavg()
    workdir = common.new_workdir()
    bridged = common.Bridged(args.bin_dir, workdir.name)
    huge, huge_reason = None, "not asked for (sections 3 and 5 with method shmbridge)"
    if "shmbridge" in args.methods and args.sections & {3, 5}:
        huge, huge_reason = common.huge_bridged(args.bin_dir, workdir.name)
    vineyardd = None
    if "vineyard" in args.methods and args.sections & {1, 2, 3, 5}:
        vineyardd = common.Vineyardd(workdir.name)
    elif "vineyard" in args.methods:
        # No section asked for needs it (and without vineyardd it cannot even connect).
        args.methods = [m for m in args.methods if m != "vineyard"]
    env = {"bridge_socket": bridged.socket,
           "bridge_huge_socket": huge.socket if huge else None,
           "bridge_huge_pool_dir": huge.pool_dir if huge else None,
           "vineyard_socket": vineyardd.socket if vineyardd else None}
    results = []
    notes = []
    pool = None
    echo = None
    try:
        n_workers = max(args.clients) if 2 in args.sections else 1
        pool = methods.WorkerPool(ctx, env, n_workers)
        # Import every peer in every worker once, before anything is timed
        # (import vineyard alone takes seconds: pyarrow, pandas).
        pool.gather([pool.send(i, "warm", names=args.methods) for i in range(n_workers)])
        local = {name: methods.METHODS[name](env) for name in args.methods}
        echo_path = os.path.join(workdir.name, "echo.sock")
        parent, child = ctx.Pipe()
        echo = ctx.Process(target=methods.echo_server, args=(echo_path, child), daemon=True)
        echo.start()
        parent.recv()
        s = sections.Sections(args, pool, local, quiet, echo_path, bridged,
                              huge=methods.ShmbridgeHuge(env) if huge else None,
                              huge_reason=huge_reason)
        for number, fn in ((1, s.attach), (7, s.cpp_attach), (2, s.cycles), (3, s.handoff),
                           (4, s.wake), (5, s.first_touch), (6, s.memory), (8, s.no_stalls),
                           (9, s.streams)):
            if number in args.sections:
                t = time.monotonic()
                print(f"section {number} ...", file=sys.stderr, flush=True)
                try:
                    results.extend(fn())
                except Exception as e:  # a broken peer must not lose the other sections
                    notes.append(f"section {number} failed: {type(e).__name__}: {e}")
                    print(notes[-1], file=sys.stderr)
                print(f"section {number}: {time.monotonic() - t:.0f} s", file=sys.stderr)
        notes.extend(s.notes)
    finally:
        if pool:
            pool.close()
        if echo:
            echo.kill()
        bridged.stop()
        if huge:
            huge.stop()
        if vineyardd:
            vineyardd.stop()
        workdir.cleanup()

    header = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": report.machine(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "quiet": quiet.summary(),
        "duration_s": time.monotonic() - started,
        "args": " ".join(sys.argv[1:]) or "(defaults)",
        "rounds": args.rounds,
        "versions": report.versions(args.methods),
        "notes": notes,
    }
    report.write_markdown(args.out, header, results)
    report.plot(args.png, results)
    print(args.out.read_text())


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
