# SPDX-License-Identifier: MIT
"""What a segment looks like in Jupyter: a table and, for images, a thumbnail."""
from __future__ import annotations

import base64
import html
import json
import struct
import zlib
from typing import TYPE_CHECKING, List, Tuple

import numpy as np

if TYPE_CHECKING:
    from ._segment import Segment

#: The longest side of a thumbnail, in pixels (every n-th pixel is kept).
THUMBNAIL_PX = 256

_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit PNG of an H×W (grey) or H×W×{1,3,4} uint8 array: the
    standard's minimal form (IHDR, one IDAT, IEND), no filtering."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError("png_bytes takes an H×W or H×W×C uint8 array")
    if image.ndim == 2:
        image = image[:, :, None]
    height, width, channels = image.shape
    if channels not in _COLOR_TYPES or height == 0 or width == 0:
        raise ValueError(f"cannot make a PNG of shape {image.shape}")
    rows = np.ascontiguousarray(image).reshape(height, width * channels)
    raw = np.zeros((height, width * channels + 1), dtype=np.uint8)  # filter byte 0 per row
    raw[:, 1:] = rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, _COLOR_TYPES[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def thumbnail(array: np.ndarray) -> np.ndarray:
    """Every n-th pixel of an image so that neither side exceeds THUMBNAIL_PX."""
    step = max(1, -(-max(array.shape[0], array.shape[1]) // THUMBNAIL_PX))
    return np.ascontiguousarray(array[::step, ::step])


def is_image(dtype: np.dtype, shape: Tuple[int, ...]) -> bool:
    return (dtype == np.uint8 and len(shape) in (2, 3) and shape[0] > 0 and shape[1] > 0
            and (len(shape) == 2 or shape[2] in _COLOR_TYPES))


def segment_html(seg: "Segment") -> str:
    esc = html.escape
    rows: List[Tuple[str, str]] = [("name", esc(seg.name)), ("dtype", esc(str(seg.dtype))),
                                   ("shape", esc(str(seg.shape)))]
    image = ""
    if seg.closed:
        rows.append(("state", "closed"))
    else:
        meta = json.dumps(seg.meta, indent=1)
        if len(meta) > 2000:
            meta = meta[:2000] + "\n..."
        rows += [("version", str(seg.version)),
                 ("access", "read-write" if seg.writable else "read-only"),
                 ("bytes", f"{seg.nbytes:,}"), ("page size", f"{seg.page_size:,}"),
                 ("meta", f"<pre style='margin:0'>{esc(meta)}</pre>")]
        if is_image(seg.dtype, seg.shape):
            # A copy of what is there now: a frame written meanwhile may tear
            # the thumbnail, never the segment.
            encoded = base64.b64encode(png_bytes(thumbnail(seg.array))).decode("ascii")
            image = (f"<td style='vertical-align:top'><img src='data:image/png;base64,{encoded}' "
                     f"style='image-rendering:pixelated;max-width:{THUMBNAIL_PX}px'/></td>")
    table = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}"
                    f"</td></tr>" for k, v in rows)
    return (f"<table><tr><td style='vertical-align:top'><table>{table}</table></td>{image}"
            f"</tr></table>")
