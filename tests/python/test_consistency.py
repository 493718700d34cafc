# SPDX-License-Identifier: MIT
"""Torn reads are detectable: snapshot() never mixes two writes, read()
reports the writes that overlapped it, against writer processes.

The writers fill a big array with the write's number k, element by element
(write k is version start + k), so any mix of two writes shows as unequal
elements, and a snapshot's values tell which version they came from.
"""
import pytest

import pybridge
from conftest import run_peer
from mut_helpers import expect_line, finish, popen_child, popen_peer

ELEMENTS = 1 << 20  # 8 MiB of int64: a write or a copy takes about a millisecond

PY_CHURN = """
    import sys, threading, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    k = 0
    while not stop.is_set():
        k += 1
        w = s.write()
        with w as a:
            a[:] = k                          # NumPy fills it piece by piece
        if k == 1:
            print("started", flush=True)
    print(w.version, flush=True)
"""


def start_churn(kind, daemon, name):
    """A writer that rewrites `name` until its stdin closes."""
    if kind == "cpp":
        proc = popen_peer(daemon, "churn", name, 0)
    else:
        proc = popen_child(PY_CHURN, daemon, name)
    expect_line(proc, "started")
    return proc


@pytest.mark.parametrize("writer", ["cpp", "python"])
def test_snapshots_never_mix_two_writes(client, daemon, writer):
    seg = client.create("frames", (ELEMENTS,), "int64")
    start = seg.version
    churn = start_churn(writer, daemon, "frames")
    seen = set()
    try:
        while len(seen) < 5:
            snap, version = seg.snapshot(timeout=30, with_version=True)
            assert snap.min() == snap.max(), f"torn snapshot: {snap.min()}..{snap.max()}"
            assert snap[0] == version - start, "values from another version than reported"
            if version > start + 1:  # taken while the writer was running
                seen.add(version)
        # The control: a plain copy of the same pages meanwhile does get torn,
        # so the pattern would have shown a torn snapshot.
        plain_copies_torn = 0
        for _ in range(1000):
            copy = seg.array.copy()
            if copy.min() != copy.max():
                plain_copies_torn += 1
                break
        assert plain_copies_torn
    finally:
        churn.stdin.close()
    last = int(finish(churn))
    assert max(seen) <= last == seg.version


def test_read_flags_overlapping_writes_and_only_those(client, daemon):
    seg = client.create("frames", (ELEMENTS,), "int64")
    churn = start_churn("cpp", daemon, "frames")
    torn = clean = 0
    try:
        while torn == 0 and torn + clean < 1000:
            try:
                with seg.read() as arr:
                    copy = arr.copy()  # a long read, racing the writer
            except pybridge.TornRead:
                torn += 1
            else:
                clean += 1
                assert copy.min() == copy.max(), "a torn read was not reported"
    finally:
        churn.stdin.close()
    finish(churn)
    assert torn >= 1, f"no overlap reported in {clean} reads during continuous writes"

    # With no locked writer, no read is flagged, not even across commits
    # that skip the lock (they do not touch the seqlock).
    for k in range(200):
        with seg.read() as arr:
            total = int(arr[:1000].sum())
        if k % 50 == 0:
            run_peer(daemon, "mark_changed", "frames")
    assert total == 1000 * int(seg.array[0])


def test_read_reports_a_write_from_another_process(client, daemon):
    seg = client.create("frames", (8,), "int64")
    reader = seg.read()
    with pytest.raises(pybridge.TornRead):
        with reader as arr:
            assert arr.tolist() == [0] * 8
            run_peer(daemon, "write", "frames", 3)
            assert arr.tolist() == [3] * 8  # zero-copy: the write shows through
            assert not reader.consistent
    assert reader.version == 0
