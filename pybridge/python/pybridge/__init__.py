# SPDX-License-Identifier: MIT
"""pybridge: zero-copy NumPy arrays over shmbridge shared-memory segments.

    import pybridge
    client = pybridge.connect()
    seg = client.create("frames", (480, 640, 3), "uint8", meta={"camera": "front"})
    seg.array[0, 0, 0] = 255          # the same bytes every attached process sees

Segments live in the daemon, not in this process: nothing here unlinks a
segment when the process exits (use Client.destroy).
"""
from . import _pybridge
from ._client import Client, connect
from ._convert import SUPPORTED_DTYPES
from ._segment import Segment
from .errors import (ERRORS_BY_CODE, AlreadyExists, BridgeError, Closed, CorruptSegment,
                     DaemonUnavailable, Internal, InvalidArgument, IoError, LimitExceeded,
                     NoSpace, NotFound, PermissionDenied, ProtocolError, ProtocolMismatch,
                     Timeout, TornRead, TypeMismatch)

__version__: str = _pybridge.__version__

#: Wire names of every error code libbridge defines, in numeric order.
ERROR_CODES = tuple(_pybridge.error_codes())

_pybridge._set_error_classes(
    {code: ERRORS_BY_CODE.get(code, BridgeError) for code in ERROR_CODES})


def default_socket_path() -> str:
    """$BRIDGE_SOCKET, else $XDG_RUNTIME_DIR/shmbridge/bridged.sock, else
    /tmp/shmbridge-$UID/bridged.sock."""
    return _pybridge.default_socket_path()


__all__ = [
    "AlreadyExists", "BridgeError", "Client", "Closed", "CorruptSegment", "DaemonUnavailable",
    "ERRORS_BY_CODE", "ERROR_CODES", "Internal", "InvalidArgument", "IoError", "LimitExceeded",
    "NoSpace", "NotFound", "PermissionDenied", "ProtocolError", "ProtocolMismatch",
    "SUPPORTED_DTYPES", "Segment", "Timeout", "TornRead", "TypeMismatch", "connect",
    "default_socket_path",
]
