# SPDX-License-Identifier: MIT
"""pybridge streams: :class:`Stream` (publish), :class:`Loan`,
:class:`Subscription` and :class:`Frame` (README, Streams)."""
from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from . import _pybridge
from ._convert import host_array, meta_json
from .errors import Closed, InvalidArgument, NotFound, TypeMismatch

#: Bytes of JSON one frame's metadata may take.
MAX_FRAME_META_BYTES: int = _pybridge.MAX_FRAME_META_BYTES

OVERFLOWS = ("drop_oldest", "block")
MODES = ("all", "latest")


def overflow_name(overflow: Any) -> str:
    if not isinstance(overflow, str) or overflow not in OVERFLOWS:
        raise InvalidArgument(f"overflow must be 'drop_oldest' or 'block', not {overflow!r}")
    return overflow


def mode_name(mode: Any) -> str:
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidArgument(f"mode must be 'all' or 'latest', not {mode!r}")
    return mode


def count(value: Any, what: str) -> int:
    """A non-negative int that fits in 32 bits (ranges beyond are libbridge's)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgument(f"{what} must be an int, not {value!r}")
    if not 0 <= int(value) < 2**32:
        raise InvalidArgument(f"{what} {int(value)} is out of range")
    return int(value)


class Loan:
    """A free slot of the stream, loaned to this publisher (from
    :meth:`Stream.publish`). Nothing is copied: ``array`` is the slot itself.

    As a context manager it yields itself::

        with cam.publish() as frame:
            frame.array[...] = image       # write in place
            frame.meta = {"t": 12.5}       # optional, per frame
        # normal exit: published; an exception: nothing published (re-raised)

    Or end it with :meth:`publish` / :meth:`abort`. A loan dropped while
    still active publishes, as a C++ ``bridge::Loan`` going out of scope does.

    The loan holds the stream's publisher lock (one loan at a time, in any
    process) and must end on the thread that took it: ``publish()`` and
    ``abort()`` elsewhere raise InvalidArgument.
    """

    __slots__ = ("_core", "_array", "_meta", "_published")

    def __init__(self, core: _pybridge.Loan) -> None:
        self._core = core
        self._array: Optional[np.ndarray] = None
        self._meta: Dict[str, Any] = {}
        self._published = False

    @property
    def seq(self) -> int:
        """The seq this frame gets when published."""
        return self._core.seq

    @property
    def active(self) -> bool:
        """True until the frame is published or the loan aborted."""
        return self._core.active

    @property
    def published(self) -> bool:
        return self._published

    @property
    def owner_died(self) -> bool:
        """The previous publisher died during its loan; its frame was
        discarded (never delivered) and the sequence continues here. (A
        wait on the main thread runs in 0.1 s slices for Ctrl-C: if the
        recovered lock was let go again because no slot was free yet, the
        loan finally taken reports False.)"""
        return self._core.owner_died

    @property
    def array(self) -> np.ndarray:
        """A writable C-order array over the loaned slot (the same object on
        every access). Raises Closed once the loan ended; an array obtained
        before is then made read-only, since the slot belongs to the
        subscribers (views made from it are not: do not write through them)."""
        if not self._core.active:
            raise Closed("this loan already ended")
        if self._array is None:
            self._array = self._core.array()
        return self._array

    @property
    def meta(self) -> Dict[str, Any]:
        """This frame's metadata (``{}`` unless set)."""
        return dict(self._meta)

    @meta.setter
    def meta(self, value: Optional[Mapping[str, Any]]) -> None:
        """A dict of JSON values, at most 4 KiB of JSON (InvalidArgument)."""
        text = meta_json(value)
        self._core.set_meta_json(text)
        self._meta = json.loads(text)

    def publish(self) -> int:
        """Publishes the frame (with :attr:`meta`) and returns its seq.
        Raises Closed if the loan already ended."""
        seq = self._core.publish()
        self._published = True
        self._end()
        return seq

    def abort(self) -> None:
        """Ends the loan without publishing: subscribers never see this
        frame. Does nothing if the loan already ended."""
        self._core.abort()
        self._end()

    def _end(self) -> None:
        if self._array is not None:
            self._array.flags.writeable = False
            self._array = None

    def __enter__(self) -> "Loan":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._core.active:
            return  # ended inside the block
        if exc_type is not None:
            self.abort()
            return
        try:
            self.publish()
        except BaseException:
            self.abort()
            raise

    def __repr__(self) -> str:
        state = "active" if self.active else ("published" if self._published else "aborted")
        return f"<pybridge.Loan seq={self.seq} {state}>"


class Stream:
    """A stream opened to publish, from :meth:`Client.create_stream` or
    :meth:`Client.open_stream`: a ring of ``slots`` frames of ``shape`` and
    ``dtype`` in one shared-memory segment::

        cam = client.create_stream("cam", (1080, 1920, 3), "uint8", slots=8)
        with cam.publish() as frame:     # a free slot, no copy
            frame.array[...] = image
        cam.publish_from(image)          # or one copy in

    Publishing never talks to the daemon. Closing detaches; loans already
    taken stay valid.
    """

    __slots__ = ("_core", "__weakref__")

    def __init__(self, core: _pybridge.Stream) -> None:
        self._core = core

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def id(self) -> int:
        """Distinguishes re-creations of one name."""
        return self._core.id

    @property
    def dtype(self) -> np.dtype:
        """One frame's dtype."""
        return np.dtype(self._core.dtype)

    @property
    def shape(self) -> Tuple[int, ...]:
        """One frame's shape."""
        return tuple(self._core.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of one frame."""
        return self._core.nbytes

    @property
    def slots(self) -> int:
        return self._core.slots

    @property
    def overflow(self) -> str:
        """``"drop_oldest"`` or ``"block"`` (README, Streams)."""
        return self._core.overflow

    @property
    def meta(self) -> Dict[str, Any]:
        """The stream's metadata (given at create). Raises Closed after close()."""
        meta: Dict[str, Any] = json.loads(self._core.meta_json())
        return meta

    @property
    def head(self) -> int:
        """The newest published seq (0 before the first). Raises Closed after close()."""
        return self._core.head()

    @property
    def closed(self) -> bool:
        return not self._core.is_open

    def publish(self, timeout: Optional[float] = None) -> Loan:
        """Loans a free slot: ``with stream.publish() as frame:`` (see
        :class:`Loan`). Waits up to ``timeout`` seconds (None: forever) for
        the publisher lock, which another publisher may hold, and for room
        (subscribers hold every slot, or with ``block`` the slowest ``all``
        subscriber has not taken the oldest frame); raises Timeout. A second
        loan on the thread that holds one raises InvalidArgument."""
        return Loan(self._core.loan(timeout))

    def publish_from(self, array: Any, meta: Optional[Mapping[str, Any]] = None,
                     timeout: Optional[float] = None) -> int:
        """Publishes a copy of ``array`` (the frame's shape and dtype, any
        layout; anything :meth:`Client.create_from` takes) and returns its
        seq. TypeMismatch for another dtype, InvalidArgument for another
        shape (no broadcasting)."""
        source = host_array(array)
        if source.dtype != self.dtype:
            raise TypeMismatch(f"stream {self.name!r} holds {self.dtype}, not {source.dtype}")
        if source.shape != self.shape:
            raise InvalidArgument(f"stream {self.name!r} has frames of shape {self.shape}, "
                                  f"not {source.shape}")
        text = meta_json(meta)
        with self.publish(timeout) as loan:
            if meta is not None:
                loan._core.set_meta_json(text)
            np.copyto(loan.array, source, casting="no")
            seq = loan.seq
        return seq

    def info(self) -> Dict[str, Any]:
        """What the daemon said when this handle was opened (SegmentInfo,
        with ``"kind": "stream"`` and ``"stream"``)."""
        info: Dict[str, Any] = json.loads(self._core.info_json())
        return info

    def close(self) -> None:
        """Detaches. Loans already taken stay valid. Idempotent; never
        destroys the stream (see Client.destroy)."""
        self._core.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.shape)) or "scalar"
        if self.closed:
            return f"<pybridge.Stream {self.name!r} {self._core.dtype} {shape} closed>"
        return (f"<pybridge.Stream {self.name!r} {self._core.dtype} {shape} slots={self.slots} "
                f"overflow={self.overflow} head={self.head}>")


class Frame:
    """A received frame (from :meth:`Subscription.next`): a read-only window
    on its slot, which no publisher rewrites while the frame is held.

    ``array`` aliases the slot. The array holds the slot too: while it, or
    any view made from it, is alive the slot stays held, even after
    :meth:`release` or the end of a ``with`` block (which release the
    frame's own hold). A subscription may hold 8 frames at a time; drop
    arrays you keep, or copy them (``frame.array.copy()``).
    """

    __slots__ = ("_core", "_array", "_meta")

    def __init__(self, core: _pybridge.Frame) -> None:
        self._core = core
        self._array: Optional[np.ndarray] = None
        self._meta: Optional[Dict[str, Any]] = None

    @property
    def seq(self) -> int:
        return self._core.seq

    @property
    def dropped(self) -> int:
        """Frames skipped just before this one (``all`` after falling behind
        in ``drop_oldest``; ``latest``: the ones it jumped over)."""
        return self._core.dropped

    @property
    def meta(self) -> Dict[str, Any]:
        """The publisher's per-frame metadata (``{}`` when none); read on
        arrival, so it stays available after release()."""
        if self._meta is None:
            self._meta = json.loads(self._core.meta_json)
        return dict(self._meta)

    @property
    def time_ns(self) -> int:
        """When the frame was published, in nanoseconds since the epoch."""
        return self._core.time_unix_ns

    @property
    def time(self) -> float:
        """When the frame was published, in seconds since the epoch."""
        return self._core.time_unix_ns / 1e9

    @property
    def held(self) -> bool:
        """True until release() (arrays may hold the slot longer)."""
        return self._core.held

    @property
    def array(self) -> np.ndarray:
        """A read-only array over the slot (the same object on every access).
        Raises Closed after release(); an array obtained before stays valid
        and keeps the slot held."""
        if self._array is None:
            self._array = self._core.array()
        return self._array

    def release(self) -> None:
        """Gives the frame's hold on the slot back (arrays from it keep
        theirs until they go). Idempotent."""
        self._array = None
        self._core.release()

    def __enter__(self) -> "Frame":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<pybridge.Frame seq={self.seq} dropped={self.dropped} {state}>"


class Subscription:
    """A subscription to a stream (from :meth:`Client.subscribe`)::

        with client.subscribe("cam", mode="all") as sub:
            with sub.next(timeout=1.0) as frame:     # raises Timeout
                detect(frame.array)
            for frame in sub:                        # ends once the stream is
                detect(frame.array)                  # destroyed and drained

    ``mode="all"``: every frame in order (with ``drop_oldest`` a slow
    subscriber skips frames, counted in ``frame.dropped``); ``"latest"``:
    the newest frame not yet seen. Waiting needs no daemon and releases the
    GIL; Ctrl-C interrupts it on the main thread. One thread reads at a
    time; :meth:`close` may be called from any thread and ends a wait in
    progress (Closed, or StopIteration when iterating) within 0.1 s.
    """

    __slots__ = ("_core",)

    def __init__(self, core: _pybridge.Subscription) -> None:
        self._core = core

    @property
    def name(self) -> str:
        return self._core.name

    @property
    def mode(self) -> str:
        return self._core.mode

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._core.dtype)

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self._core.shape)

    @property
    def dropped(self) -> int:
        """Frames this subscription skipped so far."""
        return self._core.dropped()

    @property
    def received(self) -> int:
        """Frames this subscription received so far."""
        return self._core.received()

    @property
    def closed(self) -> bool:
        return not self._core.is_open

    def next(self, timeout: Optional[float] = None) -> Frame:
        """The next frame, waiting up to ``timeout`` seconds (None: forever).
        Raises Timeout; NotFound once the stream is destroyed and no newer
        frame is left; Closed after close(); LimitExceeded while this
        subscription holds 8 frames (release one)."""
        return Frame(self._core.next(timeout))

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        try:
            return self.next()
        except (Closed, NotFound):
            raise StopIteration from None

    def close(self) -> None:
        """Ends the subscription (frames still held stay valid). Idempotent."""
        self._core.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<pybridge.Subscription {self.name!r} mode={self.mode} closed>"
        return (f"<pybridge.Subscription {self.name!r} mode={self.mode} "
                f"received={self.received} dropped={self.dropped}>")
