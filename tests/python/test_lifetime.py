# SPDX-License-Identifier: MIT
"""Arrays keep their pages mapped; segments detach when closed or collected."""
import gc
import weakref

import numpy as np
import pytest

import pybridge
from pb_helpers import peer_dump, shm_mapped


def attached(client, name):
    return client.info(name)["attached"]


def test_create_and_attach_give_pybridge_segments(client):
    """The client makes pybridge.Segment objects in C++ (no __init__ runs):
    the Python members and the compiled ones are all there, on every path."""
    made = client.create("a", (2, 3), "int16", {"k": 1})
    got = client.attach("a")
    for seg in (made, got):
        assert type(seg) is pybridge.Segment
        assert seg.dtype == np.dtype("int16") and seg.shape == (2, 3) and seg.strides == (6, 2)
        assert seg.meta == {"k": 1} and seg.version == 0 and not seg.closed
        assert weakref.ref(seg)() is seg
    with pytest.raises(AttributeError):
        made.anything = 1  # no per-object dict, as before
    with pytest.raises(TypeError):
        pybridge.Segment()  # only a client makes them
    with pytest.raises(TypeError, match="subclass"):
        pybridge._pybridge._set_segment_class(dict)


def test_array_is_cached(client):
    seg = client.create("a", (3,), "float32")
    assert seg.array is seg.array


def test_array_is_writable_and_not_a_copy(client):
    seg = client.create("a", (3,), "float32")
    arr = seg.array
    assert seg.writable
    assert arr.flags.writeable
    assert not arr.flags.owndata  # a view over the mapping, owned by the capsule
    other = client.attach("a")
    arr[1] = 4.5
    assert other.array[1] == 4.5


def test_create_counts_as_attached_and_close_detaches(client, daemon):
    """`attached` counts clients; each client's attachments are counted too."""
    seg = client.create("a", (3,), "uint8")
    assert attached(client, "a") == 1
    same_client = client.attach("a")
    assert attached(client, "a") == 1
    with pybridge.connect(daemon.socket) as other:
        from_other = other.attach("a")
        assert attached(client, "a") == 2
        from_other.close()
        assert from_other.closed
        assert attached(client, "a") == 1
        from_other.close()  # idempotent: no second detach
        assert attached(client, "a") == 1
    seg.close()
    assert attached(client, "a") == 1  # same_client still holds it
    same_client.close()
    assert attached(client, "a") == 0


def test_array_outlives_close(client, daemon):
    seg = client.create("a", (4,), "int64")
    arr = seg.array
    arr[:] = [1, 2, 3, 4]
    seg.close()
    assert attached(client, "a") == 0
    assert arr.tolist() == [1, 2, 3, 4]
    arr[0] = 100  # still writable, still the shared pages
    assert peer_dump(daemon, "a")["values"] == [100, 2, 3, 4]
    assert client.attach("a").array[0] == 100


def test_array_outlives_del_and_gc(client, daemon):
    seg = client.create("a", (2, 2), "float64")
    arr = seg.array
    ref = weakref.ref(seg)
    del seg
    gc.collect()
    assert ref() is None
    assert attached(client, "a") == 0  # collecting the segment detached it
    arr[:] = 7.0
    assert arr.sum() == 28.0
    assert peer_dump(daemon, "a")["values"] == [7.0] * 4


def test_array_outlives_destroy(client, daemon):
    seg = client.create("a", (3,), "int32")
    arr = seg.array
    arr[:] = [5, 6, 7]
    client.destroy("a")
    assert client.list() == []
    with pytest.raises(pybridge.NotFound):
        client.attach("a")
    assert arr.tolist() == [5, 6, 7]
    arr[2] = 70
    assert arr.tolist() == [5, 6, 70]
    assert seg.array is arr and seg.version == 0  # the handle is still open, too
    seg.close()  # detaching from a destroyed name is fine
    del seg
    gc.collect()
    arr += 1
    assert arr.tolist() == [6, 7, 71]


def test_views_and_slices_keep_the_mapping(client):
    seg = client.create("a", (10,), "uint16")
    seg.array[:] = np.arange(10)
    tail = seg.array[5:]
    view = seg.array.view(np.uint8)
    mv = memoryview(seg.array)
    seg.close()
    del seg
    gc.collect()
    assert tail.tolist() == [5, 6, 7, 8, 9]
    assert view[:2].tolist() == [0, 0]
    assert mv[9] == 9
    tail[0] = 500
    assert mv[5] == 500


def no_map_cache(client):
    """The client's mapping cache (test_map_cache.py) holds a reference of
    its own; off, so that only the Segment's and the array's count here."""
    client.set_map_cache(entries=0)


def test_mapping_released_when_last_reference_goes(client, daemon):
    no_map_cache(client)
    seg = client.create("a", (1000,), "uint8")
    assert shm_mapped(daemon, "a")
    arr = seg.array
    seg.close()
    assert shm_mapped(daemon, "a")  # the array still holds it
    del arr
    gc.collect()
    assert not shm_mapped(daemon, "a")  # nothing leaks the mapping
    del seg
    gc.collect()


def test_close_drops_the_cached_array(client, daemon):
    no_map_cache(client)
    seg = client.create("a", (1000,), "uint8")
    seg.array[0] = 1
    seg.close()
    gc.collect()
    assert not shm_mapped(daemon, "a")


def test_segment_context_manager(client):
    client.create("a", (2,), "uint8").close()
    with client.attach("a") as s:
        assert not s.closed
        assert attached(client, "a") == 1
        arr = s.array
        arr[:] = 3
    assert s.closed
    assert attached(client, "a") == 0
    assert arr.tolist() == [3, 3]


def test_client_context_manager(daemon):
    with pybridge.connect(daemon.socket) as c:
        seg = c.create("a", (2,), "uint8")
        seg.array[:] = 9
        assert not c.closed
    assert c.closed
    # Closing the connection ends its attachments at the daemon; the pages
    # stay mapped here.
    assert seg.array.tolist() == [9, 9]
    with pybridge.connect(daemon.socket) as c2:
        assert c2.info("a")["attached"] == 0
        seg.close()  # cannot reach the daemon through the closed client: no error
        c2.destroy("a")


def test_many_attachments_do_not_leak(client, daemon):
    no_map_cache(client)
    client.create("a", (16,), "uint8").close()
    for _ in range(200):
        s = client.attach("a")
        s.array[0] += 1
    del s
    gc.collect()
    assert attached(client, "a") == 0
    assert peer_dump(daemon, "a")["values"][0] == 200 % 256
    assert not shm_mapped(daemon, "a")


def test_array_survives_daemon_stop(daemon, client):
    seg = client.create("a", (3,), "float32")
    arr = seg.array
    arr[:] = 1.5
    assert daemon.stop() == 0
    assert arr.tolist() == [1.5, 1.5, 1.5]
    arr[1] = 2.5
    del seg
    gc.collect()
    assert arr.tolist() == [1.5, 2.5, 1.5]


def test_segment_attributes(client):
    seg = client.create("attrs", (2, 3), "float32", meta={"k": "v"})
    info = client.info("attrs")
    assert seg.name == "attrs"
    assert isinstance(seg.id, int) and seg.id == info["segment_id"] and seg.id != 0
    assert seg.dtype == np.dtype("float32") and isinstance(seg.dtype, np.dtype)
    assert seg.shape == (2, 3) and isinstance(seg.shape, tuple)
    assert seg.strides == (12, 4)
    assert seg.nbytes == 24
    assert seg.version == 0 and isinstance(seg.version, int)
    assert seg.meta == {"k": "v"} and isinstance(seg.meta, dict)
    assert seg.writable and not seg.closed
    assert "attrs" in repr(seg) and "read-write" in repr(seg)
    seg.close()
    assert "closed" in repr(seg)
    # A re-created name gets a new id.
    client.destroy("attrs")
    again = client.create("attrs", (1,), "uint8")
    assert again.id != seg.id
