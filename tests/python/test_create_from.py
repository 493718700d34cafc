# SPDX-License-Identifier: MIT
"""create_from: the one explicit copy into a new segment."""
import numpy as np
import pytest

import pybridge
from pb_helpers import VALUES, from_peer_values, peer_dump


@pytest.mark.parametrize("dtype", list(VALUES))
def test_copies_every_dtype(client, daemon, dtype):
    src = np.array(VALUES[dtype], dtype=dtype)
    seg = client.create_from("copy", src)
    assert seg.dtype == src.dtype and seg.shape == src.shape
    np.testing.assert_array_equal(seg.array, src)
    np.testing.assert_array_equal(from_peer_values(peer_dump(daemon, "copy")["values"], dtype), src)


def test_copy_does_not_alias_the_source(client):
    src = np.arange(12, dtype=np.int32).reshape(3, 4)
    seg = client.create_from("copy", src, meta={"src": "arange"})
    assert not np.shares_memory(seg.array, src)
    src[0, 0] = -1
    assert seg.array[0, 0] == 0
    seg.array[1, 1] = 500
    assert src[1, 1] == 5
    assert seg.meta == {"src": "arange"}
    assert client.info("copy")["meta"] == {"src": "arange"}


@pytest.mark.parametrize("make", [
    lambda a: a[:, ::2],          # strided
    lambda a: a.T,                # Fortran order
    lambda a: a[::-1, ::-3],      # negative strides
    lambda a: np.broadcast_to(a[0], (4, 6)),  # zero strides
])
def test_non_contiguous_sources(client, daemon, make):
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    src = make(base)
    assert not src.flags.c_contiguous
    seg = client.create_from("copy", src)
    assert seg.shape == src.shape
    assert seg.array.flags.c_contiguous
    np.testing.assert_array_equal(seg.array, src)
    assert peer_dump(daemon, "copy")["values"] == np.ascontiguousarray(src).ravel().tolist()


def test_scalar_and_empty_sources(client):
    s = client.create_from("scalar", np.float32(2.5))
    assert s.shape == () and s.array[()] == 2.5
    e = client.create_from("empty", np.zeros((0, 3), dtype=np.int8))
    assert e.shape == (0, 3) and e.array.size == 0


def test_array_likes_are_accepted(client):
    seg = client.create_from("list", [[1, 2], [3, 4]])
    assert seg.dtype == np.array([1]).dtype
    assert seg.array.tolist() == [[1, 2], [3, 4]]


def test_copy_of_a_segment_into_another(client):
    first = client.create("first", (3,), "uint16")
    first.array[:] = [1, 2, 3]
    second = client.create_from("second", first.array)
    first.array[0] = 9
    assert second.array.tolist() == [1, 2, 3]


@pytest.mark.parametrize("src", [
    np.arange(4, dtype=">i4"),
    np.arange(4, dtype=">f8"),
    np.zeros(2, dtype=np.longdouble) if np.dtype(np.longdouble).itemsize > 8 else np.zeros(2, ">f4"),
    np.array(["a", "b"]),
    np.array([object(), 1], dtype=object),
    np.zeros(2, dtype=[("x", "f4"), ("y", "i4")]),
    np.array(["2020-01-01"], dtype="datetime64[D]"),
])
def test_unsupported_sources_are_invalid_argument(client, src):
    with pytest.raises(pybridge.InvalidArgument):
        client.create_from("bad", src)
    assert client.list() == []  # nothing half-made is left behind


def test_name_errors_come_first(client):
    with pytest.raises(pybridge.InvalidArgument):
        client.create_from("a/b", np.zeros(2))
    client.create("taken", (1,), "uint8")
    with pytest.raises(pybridge.AlreadyExists):
        client.create_from("taken", np.zeros(2))
    assert [s["name"] for s in client.list()] == ["taken"]


def test_a_large_copy_lands_whole(client):
    # Past 64 MiB the copy is shared by a few threads without the GIL
    # (libbridge's parallel_copy): every byte must still land, once.
    source = np.random.default_rng(7).integers(0, 1 << 62, size=(97 << 20) // 8 + 3,
                                               dtype=np.int64)
    with client.create_from("big", source) as seg:
        assert np.array_equal(seg.array, source)
    client.destroy("big")


def mapped_rss_kib(path_suffix):
    """Rss (KiB) of this process's mapping of the file whose path ends with
    `path_suffix`, from /proc/self/smaps; None when there is none."""
    rss, inside = None, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                inside = line.rstrip().endswith(path_suffix)
            elif inside and line.startswith("Rss:"):
                rss = (rss or 0) + int(line.split()[1])
    return rss


def populate_write_supported():
    """Whether this kernel has MADV_POPULATE_WRITE (23, Linux 5.14)."""
    import mmap
    page = mmap.mmap(-1, mmap.PAGESIZE)
    try:
        page.madvise(23)
        return True
    except OSError:
        return False
    finally:
        page.close()


def test_a_large_create_maps_its_pages_for_its_creator(client, daemon):
    # From 1 MiB on, a create maps the data pages into the creator at once
    # (MADV_POPULATE_WRITE), so the fill that follows takes no page faults;
    # a small one leaves them to fault as they are written.
    if not populate_write_supported():
        pytest.skip("no MADV_POPULATE_WRITE before Linux 5.14: pages fault as written")
    prefix = daemon.shm_prefix.lstrip("/")
    with client.create("big", (4 << 20,), "uint8") as big, \
            client.create("small", (4096,), "uint8") as small:
        assert mapped_rss_kib(prefix + "big") >= 4 << 10
        assert mapped_rss_kib(prefix + "small") < 4 << 10
        assert not big.array.any() and not small.array.any()  # still zero
    client.destroy("big")
    client.destroy("small")
