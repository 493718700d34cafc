# SPDX-License-Identifier: MIT
"""The guards behind :meth:`Segment.write` and :meth:`Segment.read`."""
from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from . import _pybridge
from .errors import Closed


class OwnerDiedWarning(RuntimeWarning):
    """The previous holder of a segment's writer lock died while holding it.

    The lock was recovered and handed to this writer; the dead writer's
    half-done bytes may still be in the array, but they were never committed
    as a version (readers see a write in progress until this write ends).
    """


class WriteGuard:
    """The segment's writer lock, held (from :meth:`Segment.write`).

    Use it as a context manager: ``with seg.write() as arr:`` gives the
    writable array; a normal exit commits (version += 1, waiters wake), an
    exception aborts (no new version) and propagates. Or end it explicitly
    with :meth:`commit` / :meth:`abort`. A guard dropped while still held
    commits, as a C++ ``bridge::WriteGuard`` does when it goes out of scope
    (the one rule: commit unless an exception ends the write).

    It must end on the thread that took it (the kernel lets only that thread
    release the lock): ``commit()``/``abort()`` elsewhere raise
    InvalidArgument; dropped elsewhere it warns (RuntimeWarning) and the lock
    passes to the next writer, with ``owner_died``, when the owning thread
    ends. While a thread holds it, its own ``write()`` or ``snapshot()`` of
    the segment raises InvalidArgument instead of deadlocking.
    """

    __slots__ = ("_core", "_array", "_version")

    def __init__(self, core: _pybridge.WriteGuard) -> None:
        self._core = core
        self._array: Optional[np.ndarray] = None
        self._version: Optional[int] = None

    @property
    def owner_died(self) -> bool:
        """True when the previous holder died holding the lock (see
        :class:`OwnerDiedWarning`)."""
        return self._core.owner_died

    @property
    def active(self) -> bool:
        """True until the write is committed or aborted."""
        return self._core.active

    @property
    def array(self) -> np.ndarray:
        """The writable array over the shared pages (raises Closed once the
        write ended; arrays obtained before stay valid, but writes through
        them are no longer covered by the lock)."""
        if not self._core.active:
            self._array = None
            raise Closed("this write already ended")
        if self._array is None:
            self._array = self._core.array()
        return self._array

    @property
    def version(self) -> Optional[int]:
        """The version this write committed, or None (not committed)."""
        return self._version

    def commit(self) -> int:
        """Ends the write: version += 1, waiters wake, lock released. Returns
        the new version. Raises Closed if the write already ended."""
        self._version = self._core.commit()
        return self._version

    def abort(self) -> None:
        """Ends the write without a new version (the bytes written stay).
        Does nothing if the write already ended."""
        self._core.abort()

    def __enter__(self) -> np.ndarray:
        return self.array

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._core.active:
            return  # ended inside the block
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "held" if self.active else f"ended, version={self._version}"
        return f"<pybridge.WriteGuard {state} owner_died={self.owner_died}>"


class ReadGuard:
    """A zero-copy read window (from :meth:`Segment.read`).

    ``with seg.read() as arr:`` gives a read-only array over the shared
    pages; on a normal exit it raises :class:`pybridge.TornRead` if a locked
    write started, or was in progress, while the window was open (the values
    read may mix two versions). Writers that skip the lock
    (:meth:`Segment.mark_changed`) are not detected.
    """

    __slots__ = ("_core", "_array")

    def __init__(self, core: _pybridge.ReadGuard) -> None:
        self._core = core
        self._array: Optional[np.ndarray] = None

    @property
    def array(self) -> np.ndarray:
        """A read-only array over the shared pages (no copy)."""
        if self._array is None:
            self._array = self._core.array()
        return self._array

    @property
    def version(self) -> int:
        """The version when the window opened."""
        return self._core.version

    @property
    def consistent(self) -> bool:
        """False once a locked write overlapped the window (so far)."""
        return self._core.consistent()

    def check(self) -> None:
        """Raises TornRead unless the window is still consistent."""
        self._core.check()

    def __enter__(self) -> np.ndarray:
        return self.array

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.check()

    def __repr__(self) -> str:
        return f"<pybridge.ReadGuard version={self.version} consistent={self.consistent}>"


def warn_owner_died(guard: WriteGuard, name: str, stacklevel: int) -> None:
    if guard.owner_died:
        warnings.warn(
            f"the previous writer of segment {name!r} died holding its writer lock; "
            "its unfinished write was not committed", OwnerDiedWarning, stacklevel=stacklevel + 1)
