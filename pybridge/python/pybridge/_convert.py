# SPDX-License-Identifier: MIT
"""Turning Python arguments into what the extension takes (and back)."""
from __future__ import annotations

import json
import operator
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _pybridge
from .errors import InvalidArgument

DTypeLike = Union[str, np.dtype, type]
ShapeLike = Union[int, Sequence[int]]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
SUPPORTED_DTYPES: Tuple[str, ...] = tuple(_pybridge.DTYPES)


# dtype-like -> name, for the hashable ones already seen: NumPy computes
# ``dtype.name`` in Python code, which cost ~10 µs of every create.
_DTYPE_NAMES: Dict[Any, str] = {}


def dtype_name(dtype: Any) -> str:
    """The shmbridge name of a NumPy dtype-like, or InvalidArgument."""
    cacheable = isinstance(dtype, (str, type, np.dtype))
    if cacheable:
        known = _DTYPE_NAMES.get(dtype)
        if known is not None:
            return known
    name = _dtype_name(dtype)
    if cacheable and len(_DTYPE_NAMES) < 256:
        _DTYPE_NAMES[dtype] = name
    return name


def _dtype_name(dtype: Any) -> str:
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"unknown dtype {dtype!r}: {exc}") from None
    if not dt.isnative:
        raise InvalidArgument(f"dtype {dt.str!r} is not in native byte order")
    if dt.name not in SUPPORTED_DTYPES or dt.fields is not None or dt.subdtype is not None:
        raise InvalidArgument(
            f"unsupported dtype {dt!s}; supported: {', '.join(SUPPORTED_DTYPES)}")
    return dt.name


def shape_list(shape: Any) -> list:
    """A list of int64 extents; range checks beyond int64 are libbridge's."""
    try:
        if type(shape) is tuple or type(shape) is list:
            # The common case first: no exception raised and caught per create.
            dims = [operator.index(d) for d in shape]
        else:
            try:
                dims = [operator.index(shape)]
            except TypeError:
                dims = [operator.index(d) for d in shape]
    except TypeError:
        raise InvalidArgument(f"shape must be an int or a sequence of ints, not {shape!r}") from None
    for d in dims:
        if not _INT64_MIN <= d <= _INT64_MAX:
            raise InvalidArgument(f"extent {d} in shape {tuple(dims)} does not fit in int64")
    return dims


def meta_json(meta: Optional[Mapping[str, Any]]) -> str:
    """Metadata as JSON text; it must be a dict of JSON-serializable values."""
    if meta is None:
        return "{}"
    if not isinstance(meta, Mapping):
        raise InvalidArgument(f"meta must be a dict, not {type(meta).__name__}")
    try:
        return json.dumps(dict(meta), allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"meta is not JSON-serializable: {exc}") from None


def host_array(value: Any) -> np.ndarray:
    """A NumPy view of ``value`` where one exists: through DLPack for objects
    that speak it (so a torch tensor is read where it lies, with no
    intermediate copy), else ``np.asarray``. InvalidArgument for memory that
    is not in this process (a GPU tensor) or that cannot be an array."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__dlpack__") and not isinstance(value, type):
        try:
            return np.from_dlpack(value)
        except (BufferError, RuntimeError, TypeError, ValueError) as exc:
            device = getattr(value, "device", None)
            raise InvalidArgument(
                f"cannot read {type(value).__name__}"
                f"{f' on {device}' if device is not None else ''} through DLPack: {exc} "
                "(copy it to host memory first, e.g. tensor.detach().cpu())") from None
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidArgument(f"cannot make an array of {type(value).__name__}: {exc}") from None
