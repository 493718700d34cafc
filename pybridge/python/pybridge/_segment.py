# SPDX-License-Identifier: MIT
"""pybridge.Segment: one attachment to a named shared-memory segment."""
from __future__ import annotations

import functools
import json
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import _pybridge
from ._mutation import ReadGuard, WriteGuard, warn_owner_died


class Segment:
    """One attachment to a named segment, from :meth:`Client.create`,
    :meth:`Client.create_from` or :meth:`Client.attach`.

    ``array`` is a NumPy array over the shared pages: writes through it are
    seen by every process attached to the segment, with no copy. The array
    keeps the mapping alive on its own, so it stays valid after ``close()``,
    after this object is garbage-collected and after the name is destroyed.

    Mutation (the state lives in the segment header, so none of these talks
    to the daemon; every blocking call releases the GIL)::

        with seg.write() as arr:        # the writer lock, robust against crashes
            arr[...] = frame            # normal exit: version += 1, waiters wake
        v = seg.wait(newer_than=v, timeout=1.0)   # futex wait; raises Timeout
        snap = seg.snapshot()           # a consistent private copy
        with seg.read() as arr:         # zero-copy, read-only; TornRead on exit
            total = arr.sum()           # if a locked write overlapped
        seg.mark_changed()              # version += 1 without the lock
        v = await seg.wait_async(v)     # asyncio
    """

    __slots__ = ("_handle", "_array", "__weakref__")

    def __init__(self, handle: _pybridge.Segment) -> None:
        self._handle = handle
        self._array: Optional[np.ndarray] = None

    # ---- what the segment is (fixed at attach time) ------------------------
    @property
    def name(self) -> str:
        return self._handle.name

    @property
    def id(self) -> int:
        """Distinguishes re-creations of one name."""
        return self._handle.id

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._handle.dtype)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self._handle.shape)

    @property
    def strides(self) -> Tuple[int, ...]:
        """Byte strides, as NumPy counts them."""
        return tuple(self._handle.strides)

    @property
    def nbytes(self) -> int:
        return self._handle.nbytes

    @property
    def page_size(self) -> int:
        """Bytes of the pages backing the data: 4096, or 2 MiB for a segment
        created with huge pages."""
        return self._handle.page_size

    @property
    def writable(self) -> bool:
        return self._handle.writable

    @property
    def closed(self) -> bool:
        return not self._handle.is_open

    # ---- live state, read from the shared header (no daemon round trip) ----
    @property
    def version(self) -> int:
        """The current data version. Raises Closed after close()."""
        return self._handle.version()

    @property
    def meta(self) -> Dict[str, Any]:
        """The current metadata (a fresh dict each time). Raises Closed after close()."""
        return json.loads(self._handle.meta_json())

    @property
    def meta_version(self) -> int:
        return self._handle.meta_version()

    @property
    def array(self) -> np.ndarray:
        """The segment's pages as a NumPy array (the same object on every access).

        Read-only when the mapping is. Raises Closed after close(); arrays
        obtained before close() stay valid.
        """
        if self._array is None:
            self._array = self._handle.array()
        return self._array

    # ---- mutation -------------------------------------------------------------
    def write(self, timeout: Optional[float] = None) -> WriteGuard:
        """Takes the segment's writer lock, exclusive among writers in every
        process, waiting up to ``timeout`` seconds (None: forever); raises
        Timeout. Returns a :class:`WriteGuard`: ``with seg.write() as arr``.

        If the previous holder died holding the lock, the guard's
        ``owner_died`` is True and an :class:`OwnerDiedWarning` is issued;
        the dead writer's unfinished write never became a version.
        Raises PermissionDenied on a read-only mapping.
        """
        guard = WriteGuard(self._handle.write(timeout))
        warn_owner_died(guard, self.name, stacklevel=2)
        return guard

    def read(self) -> ReadGuard:
        """Opens a zero-copy read window: ``with seg.read() as arr`` gives a
        read-only array and raises TornRead on exit if a locked write
        overlapped the block (see :class:`ReadGuard`)."""
        return ReadGuard(self._handle.read())

    def snapshot(self, timeout: Optional[float] = None,
                 with_version: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, int]]:
        """A consistent private copy of the array, never mixing two locked
        writes: a new writable ndarray that does not alias the segment.
        ``with_version=True`` returns ``(array, version)``, the version the
        copy holds. Waits while a locked write is in progress, up to
        ``timeout`` seconds (a writer that died mid-write keeps the segment
        "in progress" until the next write ends); raises Timeout."""
        array, version = self._handle.snapshot(timeout)
        return (array, version) if with_version else array

    def wait(self, newer_than: int, timeout: Optional[float] = None) -> int:
        """Blocks until the version is greater than ``newer_than`` (the
        version you last saw) and returns the new version; raises Timeout
        after ``timeout`` seconds (None: forever). A futex wait on the shared
        segment: no polling, no daemon, the GIL released. Raises Closed if
        another thread closes the segment meanwhile.

        ``newer_than`` is required, as in C++: reading the version inside the
        call would miss a commit that lands between your last look and the
        call (the lost-wakeup race).
        """
        return self._handle.wait(newer_than, timeout)

    async def wait_async(self, newer_than: int, timeout: Optional[float] = None) -> int:
        """:meth:`wait` for asyncio: blocks a thread of the loop's default
        executor, not the event loop. Cancelling the awaiting task wakes that
        thread at once, so it does not stay blocked. Each pending wait holds
        one executor thread: for many concurrent waits give the loop a larger
        default executor (``loop.set_default_executor``)."""
        import asyncio

        handle = self._handle
        token = _pybridge.CancelToken()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            None, functools.partial(handle.wait, newer_than, timeout, token))
        try:
            return await future
        except asyncio.CancelledError:
            handle.cancel(token)
            raise

    def mark_changed(self) -> int:
        """version += 1 and wakes waiters, without the writer lock: for a
        single writer, or one that coordinates some other way; returns the
        new version. Such writes are invisible to snapshot() and read()
        torn-read detection. (``WriteGuard.commit`` ends a locked write.)"""
        return self._handle.mark_changed()

    @property
    def last_writer_pid(self) -> Optional[int]:
        """The pid of the process that made the last commit (None before the first)."""
        return self._handle.last_writer_pid() or None

    @property
    def last_commit_time(self) -> Optional[float]:
        """When the last commit happened, in seconds since the epoch (None
        before the first)."""
        ns = self._handle.last_commit_unix_ns()
        return ns / 1e9 if ns else None

    # ---- NumPy: np.asarray(seg) aliases the pages, np.array(seg) copies them
    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        """NumPy 2's contract: ``copy=None`` aliases when it can, ``False``
        must alias (ValueError when a dtype change needs a copy), ``True``
        copies. Read-only attachments give non-writable arrays (copies are
        the caller's and writable)."""
        array = self.array
        if dtype is not None and np.dtype(dtype) != array.dtype:
            if copy is False:
                raise ValueError(f"segment {self.name!r} is {array.dtype}: "
                                 f"a {np.dtype(dtype)} array of it needs a copy")
            return array.astype(dtype)
        return array.copy() if copy else array

    # ---- DLPack: numpy.from_dlpack(seg), torch.from_dlpack(seg) alias the pages
    def __dlpack__(self, **kwargs: Any) -> Any:
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Tuple[int, int]:
        return self.array.__dlpack_device__()

    # ---- lifetime -----------------------------------------------------------
    def close(self) -> None:
        """Detaches from the segment and drops this object's reference to the
        mapping. Arrays already handed out keep the pages mapped until they
        are gone. Idempotent. Never unlinks the segment (see Client.destroy)."""
        self._array = None
        self._handle.close()

    def __enter__(self) -> "Segment":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.shape)) or "scalar"
        if self.closed:
            return f"<pybridge.Segment {self.name!r} {self._handle.dtype} {shape} closed>"
        access = "read-write" if self.writable else "read-only"
        meta = json.dumps(self.meta, separators=(",", ":"))
        if len(meta) > 80:
            meta = meta[:77] + "..."
        return (f"<pybridge.Segment {self.name!r} {self._handle.dtype} {shape} "
                f"version={self.version} {access} meta={meta}>")

    def _repr_html_(self) -> str:
        """Jupyter: a small table, and a thumbnail of 2-D and 3-D uint8 data."""
        from ._notebook import segment_html

        return segment_html(self)
