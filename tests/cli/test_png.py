# SPDX-License-Identifier: MIT
"""bridgectl show NAME --png FILE, decoded with Pillow and compared pixel by
pixel with the segment's values (written through pybridge)."""
import json

import numpy as np
import pytest

from conftest import require_module, run_ctl
from test_cli import EXIT_INVALID_ARGUMENT


def decode(path):
    image = require_module("PIL.Image").open(path)
    image.load()
    return image


def scaled(values):
    """What --png draws for a non-uint8 array: min..max onto 0..255, halves
    rounded up (C's round() on non-negative numbers)."""
    lo, hi = float(values.min()), float(values.max())
    return np.floor((values.astype(np.float64) - lo) / (hi - lo) * 255 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("shape,mode", [((5, 7), "L"), ((5, 7, 3), "RGB"), ((5, 7, 4), "RGBA")])
def test_png_uint8_pixels_are_the_segments_values(daemon, client, tmp_path, shape, mode):
    seg = client.create("img", shape, "uint8")
    seg.array[...] = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / "img.png"
    proc = run_ctl(daemon, "show", "img", "--png", path, check=True)
    assert proc.stdout.startswith(f"wrote {path}: 7x5 {mode} from img {shape}")
    assert "as they are" in proc.stdout
    image = decode(path)
    assert image.format == "PNG" and image.mode == mode and image.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(image), seg.array)
    seg.close()


def test_png_other_dtypes_are_scaled_and_say_how(daemon, client, tmp_path):
    seg = client.create("depth", (6, 4), "float32")
    seg.array[...] = np.linspace(-1.5, 3.0, 24, dtype=np.float32).reshape(6, 4)
    path = tmp_path / "depth.png"
    proc = run_ctl(daemon, "show", "depth", "--png", path, check=True)
    assert "scaled float32 values from [-1.5, 3] to 0..255" in proc.stdout
    image = decode(path)
    assert image.mode == "L" and image.size == (4, 6)
    np.testing.assert_array_equal(np.asarray(image), scaled(seg.array))

    shown = json.loads(run_ctl(daemon, "show", "depth", "--png", path, "--json",
                               check=True).stdout)
    assert shown["png"] == str(path) and shown["mode"] == "L"
    assert (shown["width"], shown["height"]) == (4, 6)
    assert shown["scale"] == {"min": -1.5, "max": 3.0, "nan": 0}
    assert shown["dtype"] == "float32" and shown["shape"] == [6, 4]
    seg.close()


def test_png_rgb_of_another_dtype_is_scaled_over_all_channels(daemon, client, tmp_path):
    seg = client.create("rgb16", (3, 2, 3), "int16")
    seg.array[...] = np.arange(-9, 9, dtype=np.int16).reshape(3, 2, 3) * 100
    path = tmp_path / "rgb16.png"
    run_ctl(daemon, "show", "rgb16", "--png", path, check=True)
    image = decode(path)
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), scaled(seg.array))
    seg.close()


@pytest.mark.parametrize("dtype,shape", [("uint8", (10,)), ("uint8", (2, 3, 2)),
                                         ("uint8", (0, 4)), ("complex64", (2, 2))])
def test_png_refuses_what_is_no_picture(daemon, client, tmp_path, dtype, shape):
    client.create("bad", shape, dtype).close()
    path = tmp_path / "bad.png"
    proc = run_ctl(daemon, "show", "bad", "--png", path, "--json")
    assert proc.returncode == EXIT_INVALID_ARGUMENT, proc.stderr
    assert json.loads(proc.stdout)["error"]["code"] == "invalid_argument"
    assert not path.exists()
