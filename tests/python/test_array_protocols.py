# SPDX-License-Identifier: MIT
"""A segment is an array to NumPy and torch: __array__ (NumPy 2's copy
contract), DLPack, create_from of anything array-like, repr and Jupyter's
_repr_html_ (README "Python"). The read-only case is in test_access_control
(test_a_read_grant_gives_non_writable_arrays)."""
import base64
import io
import re

import numpy as np
import pytest

import pybridge
from conftest import require_module


def test_asarray_aliases_the_pages(client):
    seg = client.create("a", (2, 3), "float32")
    view = np.asarray(seg)
    assert view.shape == (2, 3) and view.dtype == np.float32
    assert np.shares_memory(view, seg.array)
    view[1, 2] = 7.5
    with client.attach("a") as other:  # another attachment sees the write
        assert other.array[1, 2] == 7.5
    for alias in (np.array(seg, copy=False), np.asarray(seg, dtype=np.float32)):
        assert np.shares_memory(alias, seg.array)
    seg.close()


def test_array_copies_as_numpy_2_says(client):
    seg = client.create_from("c", np.arange(6, dtype=np.int32).reshape(2, 3))
    copied = np.array(seg)
    assert not np.shares_memory(copied, seg.array) and copied.flags.writeable
    copied[0, 0] = 100
    assert seg.array[0, 0] == 0
    # A dtype change is a copy; asked not to copy, it refuses.
    widened = np.asarray(seg, dtype=np.float64)
    assert widened.dtype == np.float64 and widened.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="needs a copy"):
        np.array(seg, dtype=np.float64, copy=False)
    # np.asarray of a segment is not the 0-d object array it used to be.
    assert np.asarray([seg, seg]).shape == (2, 2, 3)
    seg.close()


def test_create_from_takes_torch_and_array_likes(client):
    torch = require_module("torch")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    with client.create_from("t", t) as seg:
        assert seg.shape == (3, 4) and seg.dtype == np.float32
        assert seg.array.tolist() == t.tolist()
        assert not np.shares_memory(seg.array, t.numpy())  # one copy, into the segment
        back = torch.from_dlpack(seg)  # and torch sees the segment's pages
        back[0, 0] = -1
        assert seg.array[0, 0] == -1
    # A non-contiguous tensor (a transpose) keeps its logical order.
    with client.create_from("tt", t.T) as seg:
        assert seg.array.tolist() == t.T.tolist()

    class Interface:  # only the array interface, like many C extensions
        def __init__(self, a):
            self.__array_interface__ = a.__array_interface__
            self._keep = a

    with client.create_from("i", Interface(np.array([[1, 2], [3, 4]], dtype=np.uint16))) as seg:
        assert seg.dtype == np.uint16 and seg.array.tolist() == [[1, 2], [3, 4]]
    with client.create_from("l", [[1.5, 2.5]]) as seg:
        assert seg.dtype == np.float64 and seg.shape == (1, 2)
    with pytest.raises(pybridge.InvalidArgument, match="detach"):
        client.create_from("g", torch.ones(2, requires_grad=True))
    assert [s["name"] for s in client.list()] == ["i", "l", "t", "tt"]


def test_repr_says_what_the_segment_is(client):
    seg = client.create("frame", (2, 3), "uint8", {"camera": "left"})
    text = repr(seg)
    for part in ("'frame'", "uint8", "2x3", "version=0", "read-write", '{"camera":"left"}'):
        assert part in text, text
    assert "\n" not in text
    seg.close()
    assert "closed" in repr(seg)


def test_repr_html_has_a_table_and_a_thumbnail(client):
    image_module = require_module("PIL.Image")
    rgb = np.zeros((40, 60, 3), dtype=np.uint8)
    rgb[..., 0] = np.arange(60, dtype=np.uint8)[None, :] * 4
    rgb[..., 1] = np.arange(40, dtype=np.uint8)[:, None] * 6
    with client.create_from("img", rgb, {"fps": 30}) as seg:
        page = seg._repr_html_()
        assert "<table>" in page and "img" in page and "&quot;fps&quot;: 30" in page
        png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page).group(1)
        decoded = np.asarray(image_module.open(io.BytesIO(base64.b64decode(png))).convert("RGB"))
        assert decoded.shape == (40, 60, 3) and (decoded == rgb).all()
    big = np.arange(1024 * 512, dtype=np.uint32).astype(np.uint8).reshape(1024, 512)
    with client.create_from("big", big) as seg:
        png = re.search(r"base64,([A-Za-z0-9+/=]+)", seg._repr_html_()).group(1)
        decoded = np.asarray(image_module.open(io.BytesIO(base64.b64decode(png))))
        assert decoded.shape == (256, 128) and (decoded == big[::4, ::4]).all()
    with client.create("floats", (3, 3), "float64") as seg:  # a table, no picture
        page = seg._repr_html_()
        assert "<table>" in page and "data:image/png" not in page
