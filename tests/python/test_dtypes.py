# SPDX-License-Identifier: MIT
"""Every supported dtype crosses between Python and C++ bit for bit."""
import numpy as np
import pytest

import pybridge
from conftest import run_peer
from pb_helpers import VALUES, from_peer_values, peer_dump, to_peer_value

ALL_DTYPES = list(VALUES)


def test_supported_dtypes_are_the_documented_set():
    assert set(pybridge.SUPPORTED_DTYPES) == set(ALL_DTYPES)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_python_writes_cpp_reads(client, daemon, dtype):
    expected = np.array(VALUES[dtype], dtype=dtype)
    seg = client.create(f"py-{dtype}", expected.shape, dtype)
    assert seg.dtype == np.dtype(dtype)
    assert seg.array.dtype == np.dtype(dtype)
    assert seg.array.shape == expected.shape
    assert not seg.array.any()  # created zero-filled
    seg.array[:] = expected

    dump = peer_dump(daemon, seg.name)
    assert dump["dtype"] == dtype
    assert dump["shape"] == list(expected.shape)
    got = from_peer_values(dump["values"], dtype)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_cpp_writes_python_reads(client, daemon, dtype):
    expected = np.array(VALUES[dtype], dtype=dtype)
    seg = client.create(f"cpp-{dtype}", expected.shape, dtype)
    array = seg.array
    for i, value in enumerate(expected):
        run_peer(daemon, "set", seg.name, i, to_peer_value(value, dtype))
    # The same array object sees the peer's writes: no re-attach, no copy.
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_cpp_fill_and_add_seen_live(client, daemon, dtype):
    seg = client.create(f"fill-{dtype}", (2, 3), dtype)
    run_peer(daemon, "fill", seg.name, to_peer_value(1, dtype))
    np.testing.assert_array_equal(seg.array, np.ones((2, 3), dtype=dtype))
    run_peer(daemon, "add", seg.name, to_peer_value(1, dtype))
    expected = np.ones((2, 3), dtype=dtype) + (np.ones((), dtype=dtype))
    if dtype == "bool":
        expected = np.ones((2, 3), dtype=bool)  # the peer's bool add is `or`
    np.testing.assert_array_equal(seg.array, expected)


def test_multidimensional_layout_matches_cpp(client, daemon):
    seg = client.create("cube", (2, 3, 4), "int32")
    assert seg.strides == (48, 16, 4)
    assert seg.array.strides == (48, 16, 4)
    assert seg.array.flags.c_contiguous
    seg.array[...] = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    seg.array[1, 2, 3] = -7
    dump = peer_dump(daemon, "cube")
    expected = np.arange(24, dtype=np.int32)
    expected[-1] = -7
    assert dump["values"] == expected.tolist()  # C order on both sides


@pytest.mark.parametrize("spelling", ["float32", "f4", np.float32, np.dtype("float32"),
                                      np.dtype("<f4") if np.little_endian else np.dtype(">f4")])
def test_dtype_spellings(client, spelling):
    seg = client.create("spelled", (3,), spelling)
    assert seg.dtype == np.dtype(np.float32)
    assert seg.array.dtype == np.float32


@pytest.mark.parametrize("spelling,name", [(bool, "bool"), (np.bool_, "bool"), (int, "int64"),
                                           (float, "float64"), (complex, "complex128"),
                                           ("uint16", "uint16"), (np.half, "float16")])
def test_python_types_map_to_numpy_names(client, daemon, spelling, name):
    seg = client.create("typed", (1,), spelling)
    assert seg.dtype.name == name
    assert client.info("typed")["dtype"] == name
    assert peer_dump(daemon, "typed")["dtype"] == name


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), 5])
def test_scalar_and_empty_shapes(client, daemon, shape):
    seg = client.create("odd", shape, "float64")
    expected_shape = (shape,) if isinstance(shape, int) else shape
    assert seg.shape == expected_shape
    assert seg.array.shape == expected_shape
    assert seg.nbytes == 8 * int(np.prod(expected_shape))
    if seg.array.size:
        seg.array[...] = 2.5
    dump = peer_dump(daemon, "odd")
    assert dump["shape"] == list(expected_shape)
    assert dump["values"] == [2.5] * seg.array.size
