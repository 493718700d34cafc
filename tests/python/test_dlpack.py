# SPDX-License-Identifier: MIT
"""DLPack: numpy.from_dlpack(seg) and torch.from_dlpack(seg) alias the pages."""
import gc

import numpy as np
import pytest

import pybridge
from pb_helpers import peer_dump


def data_pointer(a):
    return a.__array_interface__["data"][0]


def test_dlpack_device_is_cpu(client):
    seg = client.create("d", (2,), "float32")
    assert seg.__dlpack_device__() == (1, 0)  # kDLCPU, device 0


@pytest.mark.parametrize("dtype", ["uint8", "int64", "float16", "float32", "complex128", "bool"])
def test_numpy_from_dlpack_aliases(client, daemon, dtype):
    seg = client.create("d", (2, 3), dtype)
    view = np.from_dlpack(seg)
    assert view.dtype == np.dtype(dtype) and view.shape == (2, 3)
    assert data_pointer(view) == data_pointer(seg.array)
    view[1, 2] = 1
    assert seg.array[1, 2] == 1
    seg.array[0, 0] = 1
    assert view[0, 0] == 1
    assert peer_dump(daemon, "d")["values"][5] in (1, 1.0, True, [1.0, 0.0])


def test_dlpack_result_outlives_the_segment(client):
    seg = client.create("d", (4,), "int32")
    view = np.from_dlpack(seg)
    seg.close()
    del seg
    gc.collect()
    view[:] = 8
    assert view.tolist() == [8] * 4
    assert client.attach("d").array.tolist() == [8] * 4


def test_dlpack_kwargs_pass_through(client):
    seg = client.create("d", (3,), "float64")
    capsule = seg.__dlpack__(max_version=(1, 0))
    assert type(capsule).__name__ == "PyCapsule"
    with pytest.raises(Exception):
        seg.__dlpack__(copy=True, nonsense=1)


def test_torch_from_dlpack_aliases(client):
    torch = pytest.importorskip("torch")
    seg = client.create("t", (2, 3), "float32")
    tensor = torch.from_dlpack(seg)
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (2, 3)
    tensor[0, 1] = 5.0
    assert seg.array[0, 1] == 5.0
    seg.array[1, 2] = -2.0
    assert tensor[1, 2].item() == -2.0
    also = torch.from_numpy(seg.array)
    also[0, 0] = 3.0
    assert tensor[0, 0].item() == 3.0
    seg.close()
    del seg
    gc.collect()
    tensor += 1  # still mapped
    assert tensor[0, 0].item() == 4.0
