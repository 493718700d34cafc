# SPDX-License-Identifier: MIT
"""pybridge: zero-copy NumPy arrays over shmbridge shared-memory segments.

    import pybridge
    client = pybridge.connect()
    seg = client.create("frames", (480, 640, 3), "uint8", meta={"camera": "front"})
    seg.array[0, 0, 0] = 255          # the same bytes every attached process sees

    v = seg.version
    with seg.write() as arr:          # the segment's writer lock (robust to crashes)
        arr[...] = 7                  # on exit: version += 1, waiters wake

    # in another process, after client.attach("frames"):
    v = seg.wait(newer_than=v, timeout=1.0)    # blocks without polling; Timeout
    frame = seg.snapshot()            # a consistent copy, never two writes mixed

    for event in client.events("frames"):      # created, committed, meta_changed, ...
        print(event["event"], event["version"])

    cam = client.create_stream("cam", (480, 640, 3), "uint8", slots=8)
    with cam.publish() as frame:      # a ring of frames: write a free slot in place
        frame.array[...] = image
    sub = client.subscribe("cam")     # in another process; mode="latest" skips ahead
    with sub.next(timeout=1.0) as frame:       # read-only, aliases the slot
        print(frame.seq, frame.meta, frame.array.mean())

Segments live in the daemon, not in this process: nothing here unlinks a
segment when the process exits (use Client.destroy).
"""
from pathlib import Path

from . import _pybridge
from ._client import Client, connect
from ._convert import SUPPORTED_DTYPES
from ._events import EventStream
from ._mutation import OwnerDiedWarning, ReadGuard, WriteGuard
from ._segment import Segment
from ._stream import MAX_FRAME_META_BYTES, Frame, Loan, Stream, Subscription
from .errors import (ERRORS_BY_CODE, AlreadyExists, BridgeError, Closed, CorruptSegment,
                     DaemonUnavailable, Internal, InvalidArgument, IoError, LimitExceeded,
                     NoSpace, NotFound, PermissionDenied, ProtocolError, ProtocolMismatch,
                     Timeout, TornRead, TypeMismatch)

__version__: str = _pybridge.__version__

#: Wire names of every error code libbridge defines, in numeric order.
ERROR_CODES = tuple(_pybridge.error_codes())

_pybridge._set_error_classes(
    {code: ERRORS_BY_CODE.get(code, BridgeError) for code in ERROR_CODES})


_SDK = Path(__file__).resolve().parent / "sdk"


def cmake_dir() -> str:
    """The directory of the C++ SDK's CMake package (shmbridgeConfig.cmake)
    that came with this package, for ``shmbridge_DIR`` or
    ``CMAKE_PREFIX_PATH``; also ``python -m pybridge --cmake-dir``. Raises
    NotFound where pybridge was not installed from the shmbridge wheel (a
    build tree: use ``cmake --install`` there)."""
    found = sorted(_SDK.glob("lib*/cmake/shmbridge/shmbridgeConfig.cmake"))
    if not found:
        raise NotFound(f"no C++ SDK in {_SDK} (this pybridge was not installed from the "
                       "shmbridge wheel; in a source build, `cmake --install` installs it)")
    return str(found[0].parent)


def include_dir() -> str:
    """The directory holding the SDK's ``bridge/bridge.hpp`` (see :func:`cmake_dir`)."""
    cmake_dir()  # the same NotFound when there is no SDK
    return str(_SDK / "include")


def default_socket_path() -> str:
    """$BRIDGE_SOCKET, else $XDG_RUNTIME_DIR/shmbridge/bridged.sock, else
    /tmp/shmbridge-$UID/bridged.sock."""
    return _pybridge.default_socket_path()


__all__ = [
    "AlreadyExists", "BridgeError", "Client", "Closed", "CorruptSegment", "DaemonUnavailable",
    "ERRORS_BY_CODE", "ERROR_CODES", "EventStream", "Frame", "Internal", "InvalidArgument",
    "IoError", "LimitExceeded", "Loan", "MAX_FRAME_META_BYTES", "NoSpace", "NotFound",
    "OwnerDiedWarning", "PermissionDenied", "ProtocolError", "ProtocolMismatch", "ReadGuard",
    "SUPPORTED_DTYPES", "Segment", "Stream", "Subscription", "Timeout", "TornRead",
    "TypeMismatch", "WriteGuard", "cmake_dir", "connect", "default_socket_path", "include_dir",
]
