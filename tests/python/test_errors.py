# SPDX-License-Identifier: MIT
"""Every error reachable from Python arrives as its pybridge class."""
import json
import os
import struct
import threading
import time

import numpy as np
import pytest

import pybridge
from conftest import Daemon
from pb_helpers import FakeDaemon


def check_code(err, cls, code):
    assert type(err) is cls
    assert isinstance(err, pybridge.BridgeError)
    assert err.code == code
    assert str(err)  # a message, not an empty exception


def test_not_found(client):
    for call in (lambda: client.attach("missing"), lambda: client.info("missing"),
                 lambda: client.destroy("missing"), lambda: client.set_meta("missing", {})):
        with pytest.raises(pybridge.NotFound) as err:
            call()
        check_code(err.value, pybridge.NotFound, "not_found")
        assert "missing" in str(err.value)


def test_already_exists(client):
    first = client.create("dup", (2,), "uint8")
    first.array[:] = 9
    with pytest.raises(pybridge.AlreadyExists) as err:
        client.create("dup", (4,), "float32")
    check_code(err.value, pybridge.AlreadyExists, "already_exists")
    with pytest.raises(pybridge.AlreadyExists):
        client.create_from("dup", np.zeros(3))
    # The existing segment is untouched.
    assert client.info("dup")["shape"] == [2]
    assert client.attach("dup").array.tolist() == [9, 9]


@pytest.mark.parametrize("name", ["", "a/b", "..", "../x", ".hidden", "x" * 129, "sp ace", "é",
                                  "a\x00b", "\udcff", b"bytes", 7, None])
def test_bad_names_are_invalid_argument(client, name):
    for call in (lambda: client.create(name, (1,), "uint8"), lambda: client.attach(name),
                 lambda: client.info(name), lambda: client.destroy(name),
                 lambda: client.set_meta(name, {}), lambda: client.grant(name, 1, "read")):
        with pytest.raises(pybridge.InvalidArgument) as err:
            call()
        check_code(err.value, pybridge.InvalidArgument, "invalid_argument")
        assert isinstance(err.value, ValueError)
    assert client.list() == []


def test_longest_name_is_accepted(client):
    name = "n" * 128
    seg = client.create(name, (1,), "uint8")
    assert seg.name == name
    assert client.info(name)["name"] == name


@pytest.mark.parametrize("shape", [(-1,), (3, -2), (1,) * 33, (2**40, 2**40), (2**62, 4),
                                   (2**63,), (-(2**63) - 1,), "abc", (1.5,), None])
def test_bad_shapes_are_invalid_argument(client, shape):
    with pytest.raises(pybridge.InvalidArgument) as err:
        client.create("s", shape, "uint8")
    check_code(err.value, pybridge.InvalidArgument, "invalid_argument")
    assert client.list() == []


def test_32_dims_are_accepted(client):
    seg = client.create("deep", (1,) * 32, "uint8")
    assert seg.array.ndim == 32


@pytest.mark.parametrize("dtype", ["float128", "nosuchtype", "object", "U4", "datetime64[ns]",
                                   np.dtype([("a", "u1")]), np.dtype(">f4"), np.dtype(">i8"),
                                   np.dtype(">c8"), "S3", "V8", "(2,)f4"])
def test_bad_dtypes_are_invalid_argument(client, dtype):
    with pytest.raises(pybridge.InvalidArgument) as err:
        client.create("d", (2,), dtype)
    check_code(err.value, pybridge.InvalidArgument, "invalid_argument")
    assert client.list() == []


def test_max_segment_bytes_is_limit_exceeded(tmp_path):
    d = Daemon(tmp_path, "--max-segment-bytes", "4096")
    try:
        with pybridge.connect(d.socket) as c:
            c.create("fits", (1024,), "float32").close()
            with pytest.raises(pybridge.LimitExceeded) as err:
                c.create("too-big", (1025,), "float32")
            check_code(err.value, pybridge.LimitExceeded, "limit_exceeded")
            assert "--max-segment-bytes" in str(err.value)
            assert [s["name"] for s in c.list()] == ["fits"]
    finally:
        assert d.stop() == 0
    assert d.leftover_shm() == []


def test_no_space(client):
    st = os.statvfs("/dev/shm")
    size = st.f_blocks * st.f_frsize
    if size == 0:
        pytest.skip("/dev/shm has no size limit")
    # Larger than the whole filesystem: tmpfs refuses it before touching a page.
    with pytest.raises(pybridge.NoSpace) as err:
        client.create("huge", (4 * size,), "uint8")
    check_code(err.value, pybridge.NoSpace, "no_space")
    assert client.list() == []


def test_daemon_unavailable_no_socket(tmp_path):
    with pytest.raises(pybridge.DaemonUnavailable) as err:
        pybridge.connect(tmp_path / "nobody.sock")
    check_code(err.value, pybridge.DaemonUnavailable, "daemon_unavailable")
    assert "nobody.sock" in str(err.value)


def test_daemon_unavailable_after_daemon_stops(daemon, client):
    seg = client.create("x", (4,), "int16")
    seg.array[:] = 3
    assert daemon.stop() == 0
    with pytest.raises(pybridge.DaemonUnavailable):
        client.list()
    with pytest.raises(pybridge.DaemonUnavailable):
        client.attach("x")
    # The mapping outlives the daemon.
    assert seg.array.tolist() == [3, 3, 3, 3]
    seg.close()  # the detach cannot reach the daemon: still no error


def test_closed_segment(client):
    seg = client.create("c", (2,), "uint8")
    seg.close()
    assert seg.closed
    for attr in ("version", "meta", "meta_version", "array"):
        with pytest.raises(pybridge.Closed) as err:
            getattr(seg, attr)
        check_code(err.value, pybridge.Closed, "closed")
    with pytest.raises(pybridge.Closed):
        seg.__dlpack__()
    # What was fixed at attach time stays readable.
    assert (seg.name, seg.shape, seg.dtype) == ("c", (2,), np.dtype("uint8"))


def test_closed_client(daemon):
    c = pybridge.connect(daemon.socket)
    c.close()
    assert c.closed
    for call in (lambda: c.create("x", (1,), "uint8"), lambda: c.attach("x"), c.list,
                 lambda: c.info("x"), lambda: c.destroy("x"), c.stats,
                 lambda: c.set_meta("x", {}), lambda: c.create_from("x", np.zeros(1))):
        with pytest.raises(pybridge.Closed):
            call()
    c.close()  # idempotent


def test_corrupt_segment(client, daemon):
    client.create("victim", (4,), "int32").close()
    events = client.events("victim")
    path = "/dev/shm/" + daemon.shm_prefix.lstrip("/") + "victim"
    with open(path, "r+b") as f:
        f.write(b"NOTMAGIC")  # the header's magic number
    with pytest.raises(pybridge.CorruptSegment) as err:
        client.attach("victim")
    check_code(err.value, pybridge.CorruptSegment, "corrupt_segment")
    # The daemon re-validated the header too: the segment is quarantined
    # (subscribers see it go), reported, never served again, and removable by
    # the daemon's user.
    gone = events.next(timeout=5)
    assert (gone["event"], gone["name"]) == ("destroyed", "victim")
    events.close()
    quarantined = client.stats()["quarantined"]
    assert [q["name"] for q in quarantined] == ["victim"]
    assert "magic" in quarantined[0]["reason"]
    with pytest.raises(pybridge.CorruptSegment, match="quarantined"):
        client.attach("victim")
    assert [s["name"] for s in client.list()] == []
    client.destroy("victim")
    assert client.stats()["quarantined"] == []
    assert not os.path.exists(path)


def _hello_reply(**fields):
    return json.dumps({"id": 1, "ok": True, **fields}).encode()


def test_protocol_mismatch(tmp_path):
    fake = FakeDaemon(tmp_path / "fake.sock",
                      _hello_reply(protocol=999, daemon="bridged 99", pid=1))
    try:
        with pytest.raises(pybridge.ProtocolMismatch) as err:
            pybridge.connect(fake.path)
        check_code(err.value, pybridge.ProtocolMismatch, "protocol_mismatch")
    finally:
        fake.close()


@pytest.mark.parametrize("reply", [b"this is not json", b"[1, 2, 3]",
                                   json.dumps({"id": 7, "ok": True}).encode()])
def test_protocol_error(tmp_path, reply):
    fake = FakeDaemon(tmp_path / "fake.sock", reply)
    try:
        with pytest.raises(pybridge.ProtocolError) as err:
            pybridge.connect(fake.path)
        check_code(err.value, pybridge.ProtocolError, "protocol_error")
    finally:
        fake.close()


@pytest.mark.parametrize("code", ["permission_denied", "limit_exceeded", "io_error", "internal",
                                  "type_mismatch"])
def test_error_replies_from_the_daemon_map_to_classes(tmp_path, code):
    """Codes a healthy daemon rarely sends still arrive as their class."""
    reply = json.dumps({"id": 1, "ok": False,
                        "error": {"code": code, "message": "told so"}}).encode()
    fake = FakeDaemon(tmp_path / "fake.sock", reply)
    try:
        with pytest.raises(pybridge.ERRORS_BY_CODE[code]) as err:
            pybridge.connect(fake.path)
        check_code(err.value, pybridge.ERRORS_BY_CODE[code], code)
        assert "told so" in str(err.value)
    finally:
        fake.close()


def test_gil_released_while_waiting_for_the_daemon(tmp_path):
    fake = FakeDaemon(tmp_path / "slow.sock",
                      _hello_reply(protocol=999, daemon="slow", pid=1), delay=1.0)
    ticks = 0
    done = threading.Event()

    def connect():
        try:
            pybridge.connect(fake.path)
        except pybridge.ProtocolMismatch:
            pass
        finally:
            done.set()

    thread = threading.Thread(target=connect)
    start = time.monotonic()
    thread.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.01)
    thread.join()
    fake.close()
    assert time.monotonic() - start >= 0.9
    # With the GIL held for the whole wait this loop would barely have run.
    assert ticks > 30


def test_errors_pickle_with_their_code():
    import pickle

    err = pickle.loads(pickle.dumps(pybridge.NotFound("no segment 'x'", "not_found")))
    assert type(err) is pybridge.NotFound and err.code == "not_found"
    assert str(err) == "no segment 'x'"


def check_raised(err, cls, code, builtin):
    """What every error the daemon or libbridge raises promises: its class,
    the built-in it also is, .code, str() is the message (KeyError would
    show repr), and pickling (multiprocessing) keeps class, code and message."""
    import pickle

    check_code(err, cls, code)
    assert isinstance(err, builtin)
    assert str(err) == err.message == err.args[0]
    assert not str(err).startswith(("'", '"'))
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls
    assert (again.code, str(again), again.message) == (code, str(err), err.message)
    assert isinstance(again, builtin)


def test_not_found_is_a_key_error_from_the_daemon(client):
    with pytest.raises(KeyError) as err:  # generic handlers catch it
        client.attach("missing")
    check_raised(err.value, pybridge.NotFound, "not_found", LookupError)
    assert "missing" in str(err.value)
    with pytest.raises(LookupError):
        client.info("missing")
    try:
        client.destroy("missing")
    except KeyError as e:  # as a dict lookup would be handled
        assert e.code == "not_found"
    else:
        raise AssertionError("destroy of a missing name did not raise")


def test_invalid_argument_and_timeout_are_builtins_too(client):
    with pytest.raises(ValueError) as err:
        client.create("bad/name", (1,), "uint8")
    check_raised(err.value, pybridge.InvalidArgument, "invalid_argument", ValueError)
    seg = client.create("t", (1,), "uint8")
    with pytest.raises(TimeoutError) as err:  # libbridge's futex wait, not the daemon
        seg.wait(seg.version, timeout=0)
    check_raised(err.value, pybridge.Timeout, "timeout", TimeoutError)
    with client.events() as events:
        with pytest.raises(TimeoutError) as err:
            events.next(timeout=0)
    check_raised(err.value, pybridge.Timeout, "timeout", TimeoutError)
    with pytest.raises(pybridge.AlreadyExists) as err:
        client.create("t", (1,), "uint8")
    check_raised(err.value, pybridge.AlreadyExists, "already_exists", pybridge.BridgeError)


def test_daemon_unavailable_pickles(tmp_path):
    with pytest.raises(pybridge.DaemonUnavailable) as err:
        pybridge.connect(tmp_path / "nobody.sock")
    check_raised(err.value, pybridge.DaemonUnavailable, "daemon_unavailable",
                 pybridge.BridgeError)


def test_truncated_segment_is_quarantined_not_fatal(client, daemon):
    """A writer can ftruncate a segment under the daemon (shm objects cannot be
    sealed); the daemon's next look at its header must not die of SIGBUS."""
    keep = client.create("keep", (4,), "int32")
    client.create("victim", (1024,), "float64").close()
    client.list()  # the daemon adopts the direct creates (a segment it holds is spoiled)
    path = "/dev/shm/" + daemon.shm_prefix.lstrip("/") + "victim"
    # What a malicious writer would do with its descriptor.
    os.truncate(path, 0)
    assert {s["name"] for s in client.list()} == {"keep", "victim"}  # reads the header
    with pytest.raises(pybridge.CorruptSegment):
        client.info("victim")
    assert [q["name"] for q in client.stats()["quarantined"]] == ["victim"]
    assert daemon.proc.poll() is None
    # Everyone else is still served.
    keep.array[:] = 7
    assert client.attach("keep").array.tolist() == [7, 7, 7, 7]
    client.destroy("victim")
    client.destroy("keep")
