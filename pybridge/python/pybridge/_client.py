# SPDX-License-Identifier: MIT
"""pybridge.Client: a connection to the bridged daemon."""
from __future__ import annotations

import json
import os
import sysconfig
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from . import _pybridge
from ._convert import DTypeLike, ShapeLike, dtype_name, host_array, meta_json, shape_list
from ._events import EventStream
from ._segment import Segment
from ._stream import Stream, Subscription, count, mode_name, overflow_name
from .errors import Closed, InvalidArgument

PathLike = Union[str, "os.PathLike[str]"]


def segment_name(name: Any) -> str:
    """A name the extension can take: anything else is InvalidArgument, like
    a malformed name (the daemon checks the characters)."""
    if type(name) is str and name.isascii():
        return name  # the usual name: nothing to check here
    if not isinstance(name, str):
        raise InvalidArgument(f"segment name must be a str, not {type(name).__name__}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"segment name {name!r} is not valid UTF-8") from None
    return name


class Client:
    """A connection to bridged; make one with :func:`pybridge.connect`.

    Thread-safe: requests from several threads are serialized on the one
    connection, and every request releases the GIL while it waits.
    """

    __slots__ = ("_core", "_closed")

    def __init__(self, core: _pybridge.Client) -> None:
        self._core = core
        self._closed = False

    def _client(self) -> _pybridge.Client:
        if self._closed:
            raise Closed("the client is closed")
        return self._core

    # ---- segments -----------------------------------------------------------
    def create(self, name: str, shape: ShapeLike, dtype: DTypeLike,
               meta: Optional[Mapping[str, Any]] = None, *,
               huge_pages: Optional[bool] = None) -> Segment:
        """Creates a zero-filled C-contiguous array segment and attaches to it.

        ``huge_pages=True`` backs it with huge pages (InvalidArgument when the
        daemon was started without ``--huge-dir``: never a silent fallback),
        ``False`` with 4 KiB pages, ``None`` as the daemon's ``--huge-pages``
        default says. ``Segment.page_size`` tells what it got."""
        if huge_pages is not None and not isinstance(huge_pages, bool):
            raise InvalidArgument(f"huge_pages must be True, False or None, not {huge_pages!r}")
        core = self._client()
        dtype = dtype_name(dtype)
        meta = "{}" if meta is None else meta_json(meta)
        try:
            # The usual arguments (a str name, a tuple or list of ints) go to
            # the extension as they are: a create is a few µs, and each
            # Python-level step here was a tenth of one.
            return core.create(name, shape, dtype, meta, huge_pages)
        except TypeError:
            # One the extension could not take: converted here, or refused
            # with the reason (InvalidArgument).
            return core.create(segment_name(name), shape_list(shape), dtype, meta, huge_pages)

    def create_from(self, name: str, array: Any,
                    meta: Optional[Mapping[str, Any]] = None, *,
                    huge_pages: Optional[bool] = None) -> Segment:
        """Creates a segment holding a copy of ``array`` (the one explicit copy
        in pybridge). ``array`` is anything NumPy can view without a copy: an
        ndarray, an object with ``__dlpack__`` (a CPU torch tensor, a JAX or
        CuPy host array) or ``__array_interface__``/the buffer protocol, or a
        nested sequence. Any layout is accepted; the segment is C-contiguous
        and does not alias ``array``. ``huge_pages`` as for :meth:`create`."""
        source = host_array(array)
        segment = self.create(name, source.shape, source.dtype, meta, huge_pages=huge_pages)
        try:
            if source.flags.c_contiguous and source.nbytes == segment.nbytes:
                # Large copies on a few threads, without the GIL.
                segment._fill_from(source)
            else:
                np.copyto(segment.array, source, casting="no")
        except BaseException:
            # Don't leave a half-filled segment behind under the user's name.
            segment.close()
            try:
                self.destroy(name)
            except Exception:
                pass
            raise
        return segment

    def attach(self, name: str) -> Segment:
        """Attaches to an existing segment: maps the same pages, no copy."""
        core = self._client()
        try:
            return core.attach(name)
        except TypeError:  # not a str the extension can take: InvalidArgument
            return core.attach(segment_name(name))

    def destroy(self, name: str) -> None:
        """Unlinks the name. Mappings (and arrays) that processes hold stay valid."""
        core = self._client()
        try:
            core.destroy(name)
        except TypeError:  # not a str the extension can take: InvalidArgument
            core.destroy(segment_name(name))

    # ---- streams ------------------------------------------------------------
    def create_stream(self, name: str, shape: ShapeLike, dtype: DTypeLike, slots: int = 8,
                      overflow: str = "drop_oldest",
                      meta: Optional[Mapping[str, Any]] = None, *,
                      huge_pages: Optional[bool] = None) -> Stream:
        """Creates a stream: a ring of ``slots`` (2-1024) frames of ``shape``
        and ``dtype`` in one segment, and opens it to publish (see
        :class:`Stream`). ``overflow`` is what publishing does when no slot
        is free: ``"drop_oldest"`` overwrites the oldest frame no subscriber
        holds, ``"block"`` also waits until every ``all`` subscriber has
        taken it. ``meta`` describes the whole stream; ``huge_pages`` as for
        :meth:`create`."""
        if huge_pages is not None and not isinstance(huge_pages, bool):
            raise InvalidArgument(f"huge_pages must be True, False or None, not {huge_pages!r}")
        core = self._client()
        return Stream(core.create_stream(segment_name(name), shape_list(shape), dtype_name(dtype),
                                         meta_json(meta), count(slots, "slots"),
                                         overflow_name(overflow), huge_pages))

    def open_stream(self, name: str) -> Stream:
        """Opens an existing stream to publish (needs write access). Seqs
        continue where the last publisher left off; one loan at a time
        across every publisher."""
        return Stream(self._client().open_stream(segment_name(name)))

    def subscribe(self, name: str, mode: str = "all", history: int = 0) -> Subscription:
        """Subscribes to stream ``name`` (see :class:`Subscription`):
        ``mode="all"`` for every frame in order, ``"latest"`` for the newest
        one not yet seen. The subscription starts at the newest frame, or
        with ``history=k`` up to k older frames still in the ring (``all``).
        A plain segment is InvalidArgument."""
        return Subscription(self._client().subscribe(segment_name(name), mode_name(mode),
                                                     count(history, "history")))

    # ---- catalog ------------------------------------------------------------
    def list(self) -> List[Dict[str, Any]]:
        """Every segment, as the protocol's SegmentInfo objects (without meta)."""
        return json.loads(self._client().list_json())

    def info(self, name: str) -> Dict[str, Any]:
        """One segment's SegmentInfo, with ``meta``."""
        return json.loads(self._client().info_json(segment_name(name)))

    def set_meta(self, name: str, meta: Mapping[str, Any]) -> Dict[str, Any]:
        """Replaces a segment's metadata (a dict, at most 64 KiB of JSON);
        returns the updated SegmentInfo."""
        if meta is None:
            raise InvalidArgument("meta must be a dict, not None")
        return json.loads(self._client().set_meta_json(segment_name(name), meta_json(meta)))

    def grant(self, name: str, user: Union[int, str], access: str) -> Dict[str, Any]:
        """Lets another user use segment ``name``: ``access`` is ``"read"``
        (attach gives a read-only mapping and non-writable arrays),
        ``"write"`` (attach read-write, lock, set_meta, destroy) or ``"none"``
        (revoke). ``user`` is a uid or a user name. Only the segment's owner
        (or the daemon's user) may grant; returns the updated SegmentInfo,
        whose ``grants`` lists every grant."""
        if isinstance(user, str):
            import pwd

            try:
                uid = pwd.getpwnam(user).pw_uid
            except KeyError:
                raise InvalidArgument(f"no user named {user!r}") from None
        elif isinstance(user, int) and not isinstance(user, bool):
            uid = user
        else:
            raise InvalidArgument(f"user must be a uid or a user name, not {user!r}")
        return json.loads(self._client().grant_json(segment_name(name), uid, access))

    @property
    def reconnects(self) -> int:
        """How many times this client reconnected after the daemon went away."""
        return self._client().reconnects

    def map_cache(self) -> Dict[str, Any]:
        """This client's mapping cache: ``entries``, mapped ``bytes``, ``hits``,
        ``misses``, ``evictions``, ``direct`` (first attaches made without a
        round trip: the object opened by name, vouched for by the daemon's
        slot table) and its bounds (``max_entries``, ``max_bytes``,
        ``idle_s``, ``max_mapping_bytes``).

        A name this client created or attached before is attached again from
        the cache, with no daemon round trip and no mmap, for as long as the
        daemon's slot table says it is still the same segment with the same
        rights (a destroy, a re-create or a grant change ends that before
        its call returns)."""
        return json.loads(self._client().map_cache_json())

    def set_map_cache(self, entries: Optional[int] = None, bytes: Optional[int] = None,
                      idle: Optional[float] = None,
                      max_mapping_bytes: Optional[int] = None) -> None:
        """Bounds the mapping cache: at most ``entries`` mappings (0 turns it
        off) and ``bytes`` of mapped address space; a mapping unused for
        ``idle`` seconds is released; mappings larger than
        ``max_mapping_bytes`` (128 MiB) are not kept, since freeing the pages
        of a destroyed segment falls to whoever drops its last mapping.
        Arguments left out keep their value."""
        core = self._client()
        now = json.loads(core.map_cache_json())
        core.set_map_cache(
            now["max_entries"] if entries is None else int(entries),
            now["max_bytes"] if bytes is None else int(bytes),
            now["idle_s"] if idle is None else float(idle),
            now["max_mapping_bytes"] if max_mapping_bytes is None else int(max_mapping_bytes))

    def stats(self) -> Dict[str, Any]:
        """The daemon's counters (pid, segments, bytes, clients, shm_prefix ...)."""
        return json.loads(self._client().stats_json())

    # ---- events -------------------------------------------------------------
    def events(self, name: Optional[str] = None) -> EventStream:
        """Subscribes to the daemon's events (created, destroyed, meta_changed,
        committed) about every segment, or only those named ``name`` (which
        need not exist yet): an iterator of dicts, see :class:`EventStream`.
        Events are those after this call returns. The stream has a
        connection of its own, so this client keeps working meanwhile."""
        return EventStream(self._client().events(None if name is None else segment_name(name)))

    # ---- connection ---------------------------------------------------------
    @property
    def socket_path(self) -> str:
        return self._core.socket_path

    @property
    def daemon(self) -> Dict[str, Any]:
        """What the daemon said in the hello exchange (protocol, daemon, pid)."""
        return json.loads(self._core.daemon_json)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Closes the connection. Segments already attached stay mapped (the
        daemon stops counting them as attached). Idempotent."""
        if not self._closed:
            self._closed = True
            self._core.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<pybridge.Client {self.socket_path!r} {state}>"


def _installed_daemon() -> Optional[str]:
    """The bridged installed with this package (the wheel puts it beside the
    interpreter's scripts), if there is one."""
    candidate = os.path.join(sysconfig.get_path("scripts"), "bridged")
    return candidate if os.access(candidate, os.X_OK) else None


def connect(socket_path: Optional[PathLike] = None, *, autostart: bool = True) -> Client:
    """Connects to bridged at ``socket_path`` (default:
    :func:`default_socket_path`). Raises DaemonUnavailable when none answers.

    With no ``socket_path`` and no ``$BRIDGE_SOCKET``, a missing daemon is
    started for this user first (``autostart``; ``$BRIDGE_AUTOSTART=0`` turns
    it off everywhere): detached, so it outlives this process, logging to
    ``bridged.log`` next to the socket. Processes that connect at once start
    one daemon between them. The executable is ``$BRIDGE_DAEMON``, else the
    one installed with pybridge, else ``bridged`` on ``$PATH``."""
    if not isinstance(autostart, bool):
        raise InvalidArgument(f"autostart must be True or False, not {autostart!r}")
    path = None if socket_path is None else os.fspath(socket_path)
    if path is None and autostart:
        installed = _installed_daemon()
        if installed is not None:
            _pybridge.set_daemon_executable(installed)
    return Client(_pybridge.Client.connect(path, autostart))
