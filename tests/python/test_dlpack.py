# SPDX-License-Identifier: MIT
"""DLPack: numpy.from_dlpack(seg) and torch.from_dlpack(seg) alias the pages,
and torch.from_numpy(seg.array) does too, across processes (README: "the
cross-process version of torch.from_numpy"). torch is a test dependency:
without it these tests skip, and fail in CI."""
import gc
import json

import numpy as np
import pytest

from conftest import require_module
from pb_helpers import peer_dump, popen_python


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
    with pytest.raises(TypeError, match="nonsense"):  # numpy's own __dlpack__ refuses it
        seg.__dlpack__(copy=True, nonsense=1)


def test_torch_from_dlpack_aliases(client, daemon):
    torch = require_module("torch")
    seg = client.create("t", (2, 3), "float32")
    tensor = torch.from_dlpack(seg)
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (2, 3)
    assert tensor.device.type == "cpu"
    assert tensor.data_ptr() == data_pointer(seg.array)  # the pages, not a copy
    assert tensor.stride() == (3, 1)
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
    assert peer_dump(daemon, "t")["values"][:3] == [4.0, 6.0, 1.0]  # another process sees it


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int64", "float16", "float64", "bool",
                                   "complex64"])
def test_torch_from_dlpack_dtypes(client, dtype):
    torch = require_module("torch")
    seg = client.create("t", (4,), dtype)
    tensor = torch.from_dlpack(seg)
    assert tensor.dtype == torch.from_numpy(np.zeros(1, dtype)).dtype
    assert tensor.data_ptr() == data_pointer(seg.array)
    tensor[2] = 1
    assert seg.array[2] == 1


#: Attaches argv[2], writes through torch.from_numpy(seg.array), then reads
#: what the parent wrote through its own tensor.
TORCH_CHILD = """
    import json, sys
    import torch, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    t = torch.from_numpy(s.array)
    assert t.data_ptr() == s.array.ctypes.data
    seen = t.tolist()
    t[0] = 11.5
    t[1:] += 100
    s.mark_changed()
    print(json.dumps({"seen": seen}), flush=True)
    sys.stdin.readline()                 # the parent has written through its tensor
    print(json.dumps({"now": t.tolist()}), flush=True)
"""


def test_torch_from_numpy_across_processes(client, daemon):
    torch = require_module("torch")
    seg = client.create("tt", (4,), "float32")
    mine = torch.from_numpy(seg.array)
    mine[:] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    child = popen_python(TORCH_CHILD, daemon.socket, "tt")
    try:
        line = child.stdout.readline()
        assert line, f"the child died: {child.stderr.read()}"
        assert json.loads(line) == {"seen": [1.0, 2.0, 3.0, 4.0]}
        # The child's writes through its tensor, seen here by array and tensor.
        assert seg.array.tolist() == [11.5, 102.0, 103.0, 104.0]
        assert mine.tolist() == [11.5, 102.0, 103.0, 104.0]
        assert seg.version == 1
        mine[3] = -7.0
        child.stdin.write("go\n")
        child.stdin.flush()
        line = child.stdout.readline()
        assert line, f"the child died: {child.stderr.read()}"
        assert json.loads(line) == {"now": [11.5, 102.0, 103.0, -7.0]}
    finally:
        child.stdin.close()
        assert child.wait(timeout=60) == 0, child.stderr.read()
