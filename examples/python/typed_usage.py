# SPDX-License-Identifier: MIT
"""Every public pybridge call once, with types that `mypy --strict` checks
(the package ships py.typed and stubs). It also runs:

    python examples/python/typed_usage.py [SOCKET]

against a daemon at SOCKET (default: the per-user socket, started if none
answers), and prints "typed usage: ok".
"""
from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

import pybridge


def segments(client: pybridge.Client) -> List[str]:
    return [str(info["name"]) for info in client.list()]


def frames(client: pybridge.Client) -> None:
    seg: pybridge.Segment = client.create("typed-frames", (4, 3), np.uint8, {"fps": 30})
    name: str = seg.name
    shape: Tuple[int, ...] = seg.shape
    strides: Tuple[int, ...] = seg.strides
    dtype: np.dtype[Any] = seg.dtype
    assert (name, shape, strides) == ("typed-frames", (4, 3), (3, 1)) and dtype == np.dtype(np.uint8)
    assert seg.nbytes == 12 and seg.page_size >= 4096 and seg.writable and not seg.closed
    meta_version: int = seg.meta_version
    assert isinstance(seg.id, int) and meta_version >= 0 and seg.meta == {"fps": 30}

    array: npt.NDArray[Any] = seg.array
    array[...] = 1
    version: int = seg.mark_changed()
    with seg.write(timeout=1.0) as guard_array:
        guard_array[0, 0] = 9
    after_write: int = seg.version
    assert after_write == version + 1

    guard: pybridge.WriteGuard = seg.write()
    guard.array[1, 1] = 5
    assert guard.active and not guard.owner_died
    committed: int = guard.commit()
    assert guard.version == committed

    with seg.read() as view:
        total = int(view.sum())
    assert total == 9 + 5 + 10 * 1
    reader: pybridge.ReadGuard = seg.read()
    with reader:
        assert reader.consistent and reader.version == committed
    reader.check()

    copy = seg.snapshot()
    assert isinstance(copy, np.ndarray) and copy[0, 0] == 9
    snap = seg.snapshot(timeout=1.0, with_version=True)
    assert isinstance(snap, tuple) and snap[1] == committed

    # Waiting: a thread commits while this one waits, then asyncio does the same.
    def commit_soon() -> None:
        with client.attach("typed-frames") as other:
            other.mark_changed()

    thread = threading.Thread(target=commit_soon)
    thread.start()
    newer: int = seg.wait(newer_than=committed, timeout=10.0)
    thread.join()
    assert newer > committed

    async def wait_for_one() -> int:
        task = asyncio.ensure_future(seg.wait_async(newer, timeout=10.0))
        await asyncio.sleep(0)
        seg.mark_changed()
        return await task

    assert asyncio.run(wait_for_one()) > newer
    pid: Optional[int] = seg.last_writer_pid
    when: Optional[float] = seg.last_commit_time
    assert pid == os.getpid() and when is not None

    # NumPy and DLPack see the same pages.
    alias = np.asarray(seg)
    assert np.shares_memory(alias, seg.array)
    assert np.from_dlpack(seg)[0, 0] == 9
    assert "typed-frames" in repr(seg) and "<table>" in seg._repr_html_()

    info: Dict[str, Any] = client.set_meta("typed-frames", {"fps": 60})
    assert info["meta"] == {"fps": 60} and client.info("typed-frames")["meta"] == {"fps": 60}
    seg.close()


def streams(client: pybridge.Client) -> None:
    cam: pybridge.Stream = client.create_stream("typed-cam", (2, 3), "uint16", slots=4,
                                                overflow="drop_oldest", meta={"fps": 60})
    assert (cam.name, cam.shape, cam.slots, cam.overflow) == ("typed-cam", (2, 3), 4, "drop_oldest")
    assert cam.dtype == np.dtype(np.uint16) and cam.meta == {"fps": 60} and cam.head == 0
    sub: pybridge.Subscription = client.subscribe("typed-cam", mode="all", history=0)

    with cam.publish(timeout=1.0) as loan:
        loaned: pybridge.Loan = loan
        pixels: npt.NDArray[Any] = loaned.array
        pixels[...] = 7
        loaned.meta = {"t": 1.5}
        assert loaned.seq == 1 and not loaned.owner_died
    second: int = cam.publish_from(np.full((2, 3), 8, dtype=np.uint16), meta={"t": 2.0})
    assert second == 2 and cam.head == 2
    aborted = cam.publish()
    aborted.abort()
    with client.open_stream("typed-cam") as again:
        assert again.head == 2

    with sub.next(timeout=1.0) as frame:
        received: pybridge.Frame = frame
        values: npt.NDArray[Any] = received.array
        assert int(values.sum()) == 6 * 7 and received.meta == {"t": 1.5}
        seq: int = received.seq
        dropped: int = received.dropped
        when: float = received.time
        when_ns: int = received.time_ns
        assert (seq, dropped) == (1, 0) and when > 0 and when_ns > 0
    for frame in sub:
        assert frame.seq == 2 and frame.array[0, 0] == 8
        frame.release()
        break
    totals: Tuple[int, int] = (sub.received, sub.dropped)
    assert totals == (2, 0) and sub.mode == "all" and sub.name == "typed-cam"
    sub.close()
    cam.close()


def main(argv: List[str]) -> int:
    socket: Optional[str] = argv[1] if len(argv) > 1 else None
    client: pybridge.Client = pybridge.connect(socket)
    print(pybridge.default_socket_path(), client.socket_path, client.reconnects)
    daemon: Dict[str, Any] = client.daemon
    stats: Dict[str, Any] = client.stats()
    assert daemon["pid"] == stats["pid"]

    with client.events("typed-frames") as events:
        frames(client)
        first: Dict[str, Any] = events.next(timeout=10.0)
        assert first["event"] == "created" and events.name == "typed-frames"

    source: npt.NDArray[np.float32] = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    with client.create_from("typed-from", source, huge_pages=False) as made:
        assert made.array.tolist() == source.tolist()
    assert "typed-from" in segments(client)
    granted: Dict[str, Any] = client.grant("typed-from", 65534, "read")  # uid 65534: nobody
    assert granted["grants"] == [{"uid": 65534, "access": "read"}]
    client.grant("typed-from", 65534, "none")
    cache: Dict[str, Any] = client.map_cache()
    client.set_map_cache(entries=cache["max_entries"])

    streams(client)
    for doomed in ("typed-frames", "typed-from", "typed-cam"):
        client.destroy(doomed)
    try:
        client.attach("typed-frames")
    except pybridge.NotFound as exc:
        code: Optional[str] = exc.code
        assert code == "not_found" and isinstance(exc, pybridge.BridgeError)
    assert pybridge.ERRORS_BY_CODE["not_found"] is pybridge.NotFound
    assert "uint8" in pybridge.SUPPORTED_DTYPES and pybridge.__version__
    try:
        print("C++ SDK:", pybridge.cmake_dir())
    except pybridge.NotFound:
        print("C++ SDK: none (not installed from the wheel)")
    client.close()
    assert client.closed
    print("typed usage: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
