# SPDX-License-Identifier: MIT
"""Mutations cross process boundaries both ways, with no copy and no re-attach:
Python <-> the C++ bridge_peer, and Python <-> another Python process."""
import json
import signal

import numpy as np

from conftest import run_peer
from pb_helpers import peer_dump, popen_python, run_python, wait_for


def test_python_to_cpp_and_back(client, daemon):
    seg = client.create("shared", (2, 3), "float32")
    arr = seg.array
    arr[...] = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert peer_dump(daemon, "shared")["values"] == list(range(6))
    run_peer(daemon, "add", "shared", 10)
    np.testing.assert_array_equal(arr, np.arange(6).reshape(2, 3) + 10)
    run_peer(daemon, "set", "shared", 4, -1.25)
    assert arr[1, 1] == -1.25
    arr[0, 0] = 99
    assert peer_dump(daemon, "shared")["values"][0] == 99


def test_cpp_creates_python_attaches(client, daemon):
    out = run_peer(daemon, "create", "from-cpp", "int16", "3,2", json.dumps({"by": "c++"}))
    created = json.loads(out.stdout)
    seg = client.attach("from-cpp")
    assert seg.id == created["id"]
    assert seg.dtype == np.int16 and seg.shape == (3, 2)
    assert seg.meta == {"by": "c++"}
    assert not seg.array.any()
    run_peer(daemon, "fill", "from-cpp", -3)
    assert (seg.array == -3).all()
    # The creator exited; the segment is the daemon's and still attached by us.
    assert client.info("from-cpp")["attached"] == 1


def test_cpp_attachment_counted_while_it_holds(client, daemon):
    import subprocess
    from conftest import binary

    seg = client.create("held", (1,), "uint8")
    peer = subprocess.Popen([binary("bridge_peer"), "--socket", daemon.socket, "hold", "held"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout.readline().strip() == "attached"
        assert client.info("held")["attached"] == 2
    finally:
        peer.stdin.close()
        assert peer.wait(timeout=30) == 0
    assert client.info("held")["attached"] == 1
    seg.close()
    assert client.info("held")["attached"] == 0


CHILD_RW = """
    import sys, json, pybridge
    with pybridge.connect(sys.argv[1]) as c:
        with c.attach(sys.argv[2]) as s:
            seen = s.array.tolist()
            s.array[:] = s.array * 2 + 1
            print(json.dumps({"seen": seen, "meta": s.meta, "dtype": str(s.dtype)}))
"""


def test_python_to_python(client, daemon):
    seg = client.create("pp", (5,), "int64", meta={"from": "parent"})
    arr = seg.array
    arr[:] = [1, 2, 3, 4, 5]
    out = json.loads(run_python(CHILD_RW, daemon.socket, "pp").stdout)
    assert out == {"seen": [1, 2, 3, 4, 5], "meta": {"from": "parent"}, "dtype": "int64"}
    assert arr.tolist() == [3, 5, 7, 9, 11]  # the child's writes, seen live
    assert client.info("pp")["attached"] == 1


LIVE_CHILD = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    a = s.array
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "read":
            print(",".join(str(v) for v in a.tolist()), flush=True)
        elif line.startswith("write"):
            a[int(line.split()[1])] = int(line.split()[2])
            print("written", flush=True)
"""


def test_two_live_python_processes_see_each_other(client, daemon):
    seg = client.create("live", (3,), "uint32")
    arr = seg.array
    child = popen_python(LIVE_CHILD, daemon.socket, "live")
    try:
        assert child.stdout.readline().strip() == "ready"
        assert client.info("live")["attached"] == 2
        arr[0] = 41
        child.stdin.write("read\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "41,0,0"
        child.stdin.write("write 2 123456\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "written"
        assert arr.tolist() == [41, 0, 123456]
        arr[1] = 7
        child.stdin.write("read\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "41,7,123456"
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0, child.stderr.read()
    assert client.info("live")["attached"] == 1


def test_exiting_process_does_not_unlink(client, daemon):
    """Nothing in pybridge destroys segments at exit (no atexit, no
    resource_tracker): names belong to the daemon."""
    run_python("""
        import sys, pybridge
        c = pybridge.connect(sys.argv[1])
        s = c.create("orphan", (4,), "uint8", meta={"left": "behind"})
        s.array[:] = 42
        a = c.attach("orphan")   # exit with open segments and a live client
    """, daemon.socket)
    assert wait_for(lambda: client.info("orphan")["attached"] == 0)
    info = client.info("orphan")
    assert info["meta"] == {"left": "behind"}
    assert client.attach("orphan").array.tolist() == [42] * 4


def test_killed_process_leaves_segment_and_no_attachment(client, daemon):
    child = popen_python("""
        import sys, pybridge
        c = pybridge.connect(sys.argv[1])
        s = c.create("killed", (2,), "float64")
        s.array[:] = 2.5
        print("ready", flush=True)
        sys.stdin.read()
    """, daemon.socket)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert client.info("killed")["attached"] == 1
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    # The daemon notices the dead connection on its own schedule.
    assert wait_for(lambda: client.info("killed")["attached"] == 0)
    assert client.attach("killed").array.tolist() == [2.5, 2.5]
