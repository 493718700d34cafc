# SPDX-License-Identifier: MIT
"""pybridge.Segment: one attachment to a named shared-memory segment."""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

import numpy as np

from . import _pybridge


class Segment:
    """One attachment to a named segment, from :meth:`Client.create`,
    :meth:`Client.create_from` or :meth:`Client.attach`.

    ``array`` is a NumPy array over the shared pages: writes through it are
    seen by every process attached to the segment, with no copy. The array
    keeps the mapping alive on its own, so it stays valid after ``close()``,
    after this object is garbage-collected and after the name is destroyed.
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
        state = "closed" if self.closed else "open"
        return (f"<pybridge.Segment {self.name!r} {self._handle.dtype}{list(self.shape)} "
                f"id={self.id} {state}>")
