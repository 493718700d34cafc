# SPDX-License-Identifier: MIT
"""Exceptions: one class per shmbridge error code.

Every failure libbridge or the daemon reports carries a stable code (the wire
name, e.g. ``"not_found"``); ``pybridge`` raises the subclass of
:class:`BridgeError` named after it in CamelCase, with ``.code`` set to the
wire name. Codes with a matching built-in also derive from it, so generic
handlers keep working: ``InvalidArgument`` is a ``ValueError``,
``TypeMismatch`` a ``TypeError``, ``NotFound`` a ``KeyError`` (and so a
``LookupError``), ``PermissionDenied`` a ``PermissionError``, ``Timeout`` a
``TimeoutError``.
"""
from __future__ import annotations

from typing import Dict, Optional, Type


class BridgeError(Exception):
    """Base class of every error pybridge raises for a shmbridge error code."""

    #: The wire name of the error code, e.g. ``"not_found"``.
    code: Optional[str] = None

    def __init__(self, message: str = "", code: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        # KeyError would show repr(message); OSError subclasses their errno.
        return self.message

    def __reduce__(self):  # keep .code across pickling (multiprocessing)
        return (type(self), (self.message, self.code))


class InvalidArgument(BridgeError, ValueError):
    """A malformed name, shape, dtype, metadata or option."""

    code = "invalid_argument"


class NotFound(BridgeError, KeyError):
    """No segment of that name."""

    code = "not_found"


class AlreadyExists(BridgeError):
    """A segment of that name exists."""

    code = "already_exists"


class PermissionDenied(BridgeError, PermissionError):
    """The caller may not do this."""

    code = "permission_denied"


class NoSpace(BridgeError):
    """Shared memory (or the daemon's budget) is full."""

    code = "no_space"


class DaemonUnavailable(BridgeError):
    """No daemon answers on the socket, or the connection to it was lost."""

    code = "daemon_unavailable"


class ProtocolError(BridgeError):
    """A frame or message that does not follow the protocol."""

    code = "protocol_error"


class ProtocolMismatch(BridgeError):
    """Client and daemon speak different protocol versions."""

    code = "protocol_mismatch"


class TypeMismatch(BridgeError, TypeError):
    """A requested element type is not the segment's dtype."""

    code = "type_mismatch"


class CorruptSegment(BridgeError):
    """A segment header or metadata that does not validate."""

    code = "corrupt_segment"


class LimitExceeded(BridgeError):
    """Too many segments, connections or bytes."""

    code = "limit_exceeded"


class IoError(BridgeError):
    """An OS call failed for a reason not listed above."""

    code = "io_error"


class Internal(BridgeError):
    """A bug in shmbridge: please report it."""

    code = "internal"


class Closed(BridgeError):
    """The segment or client was closed by this process."""

    code = "closed"


class Timeout(BridgeError, TimeoutError):
    """A wait or a lock did not succeed before its timeout."""

    code = "timeout"


class TornRead(BridgeError):
    """A write overlapped a read that asked to be consistent."""

    code = "torn_read"


#: Wire name -> exception class, for every code this package knows.
ERRORS_BY_CODE: Dict[str, Type[BridgeError]] = {
    cls.code: cls  # type: ignore[misc]
    for cls in (InvalidArgument, NotFound, AlreadyExists, PermissionDenied, NoSpace,
                DaemonUnavailable, ProtocolError, ProtocolMismatch, TypeMismatch,
                CorruptSegment, LimitExceeded, IoError, Internal, Closed, Timeout, TornRead)
}
