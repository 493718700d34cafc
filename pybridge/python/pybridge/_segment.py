# SPDX-License-Identifier: MIT
"""pybridge.Segment: one attachment to a named shared-memory segment."""
from __future__ import annotations

import functools
import json
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from . import _pybridge
from ._mutation import ReadGuard, WriteGuard, warn_owner_died


class Segment(_pybridge.Segment):
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

    The members used per frame or per attach (``name``, ``id``, ``shape``,
    ``strides``, ``nbytes``, ``page_size``, ``writable``, ``closed``,
    ``version``, ``meta_version``, ``array``, ``wait``, ``mark_changed``,
    ``last_writer_pid``, ``last_commit_time``, ``close`` and the ``with``
    protocol) are compiled, inherited from ``_pybridge.Segment``; the rest
    are defined here. Instances come from the client only.
    """

    __slots__ = ()

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._dtype)

    @property
    def meta(self) -> Dict[str, Any]:
        """The current metadata (a fresh dict each time). Raises Closed after close()."""
        return json.loads(self._meta_json())

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
        guard = WriteGuard(self._write(timeout))
        warn_owner_died(guard, self.name, stacklevel=2)
        return guard

    def read(self) -> ReadGuard:
        """Opens a zero-copy read window: ``with seg.read() as arr`` gives a
        read-only array and raises TornRead on exit if a locked write
        overlapped the block (see :class:`ReadGuard`)."""
        return ReadGuard(self._read())

    def snapshot(self, timeout: Optional[float] = None,
                 with_version: bool = False) -> Union[np.ndarray, Tuple[np.ndarray, int]]:
        """A consistent private copy of the array, never mixing two locked
        writes: a new writable ndarray that does not alias the segment.
        ``with_version=True`` returns ``(array, version)``, the version the
        copy holds. Waits while a locked write is in progress, up to
        ``timeout`` seconds (a writer that died mid-write keeps the segment
        "in progress" until the next write ends); raises Timeout."""
        array, version = self._snapshot(timeout)
        return (array, version) if with_version else array

    async def wait_async(self, newer_than: int, timeout: Optional[float] = None) -> int:
        """:meth:`wait` for asyncio: blocks a thread of the loop's default
        executor, not the event loop. Cancelling the awaiting task wakes that
        thread at once, so it does not stay blocked. Each pending wait holds
        one executor thread: for many concurrent waits give the loop a larger
        default executor (``loop.set_default_executor``)."""
        import asyncio

        token = _pybridge.CancelToken()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            None, functools.partial(self._wait, newer_than, timeout, token))
        try:
            return await future
        except asyncio.CancelledError:
            self._cancel(token)
            raise

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

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.shape)) or "scalar"
        if self.closed:
            return f"<pybridge.Segment {self.name!r} {self._dtype} {shape} closed>"
        access = "read-write" if self.writable else "read-only"
        meta = json.dumps(self.meta, separators=(",", ":"))
        if len(meta) > 80:
            meta = meta[:77] + "..."
        return (f"<pybridge.Segment {self.name!r} {self._dtype} {shape} "
                f"version={self.version} {access} meta={meta}>")

    def _repr_html_(self) -> str:
        """Jupyter: a small table, and a thumbnail of 2-D and 3-D uint8 data."""
        from ._notebook import segment_html

        return segment_html(self)


# create() and attach() return this class, made in C++ with no __init__ call.
_pybridge._set_segment_class(Segment)
