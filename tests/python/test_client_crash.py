# SPDX-License-Identifier: MIT
"""A client SIGKILLed at any point (right after sending create, attach or
destroy; while attached; holding the writer lock; at random moments of a
create/attach/write/destroy loop): within 1 s the daemon has released its
attachments, the next writer gets the lock (owner_died), no half-created
segment is left under the prefix, and the name can be used again.
"""
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import pytest

import pybridge
from crash_helpers import RELEASE_LIMIT_S, assert_prefix_consistent, within
from mut_helpers import expect_line, kill, popen_child, popen_peer
from pb_helpers import python_env

#: A client that says hello, sends `setup` requests (reading their replies),
#: then sends one request and either SIGKILLs itself at once ("die") or
#: prints "sent" and waits to be killed without reading the reply ("block").
#: "cue-die" prints "ready" and waits for a line on stdin before sending
#: (and dying), so the test can stop the daemon first.
RAW_CHILD = """
    import json, os, signal, socket, struct, sys
    from pybridge._pybridge import PROTOCOL_VERSION
    path, mode = sys.argv[1], sys.argv[2]
    setup, request = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    def send(obj):
        payload = json.dumps(obj).encode()
        s.sendall(struct.pack("<I", len(payload)) + payload)
    def recv():
        def exact(n):
            data = b""
            while len(data) < n:
                chunk = s.recv(n - len(data))
                assert chunk, "daemon hung up"
                data += chunk
            return data
        return json.loads(exact(struct.unpack("<I", exact(4))[0]))
    send({"id": 1, "op": "hello", "protocol": PROTOCOL_VERSION, "client": "doomed"})
    assert recv()["ok"]
    for i, r in enumerate(setup):
        send(dict(r, id=2 + i))
        reply = recv()
        assert reply["ok"], reply
    if mode == "cue-die":
        print("ready", flush=True)
        sys.stdin.readline()
    send(dict(request, id=100))
    if mode.endswith("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    print("sent", flush=True)
    sys.stdin.read()
"""

REQUESTS = {
    "create": {"op": "create", "name": "target", "dtype": "int32", "shape": [6, 5],
               "meta": {"by": "doomed"}},
    "attach": {"op": "attach", "name": "target"},
    "destroy": {"op": "destroy", "name": "target"},
}


def total_attachments(client):
    return client.stats()["attachments"]


def assert_name_reusable(client, name, expected_values=None):
    """Either the name is free (create succeeds) or the segment is there,
    whole: it attaches and holds what it held."""
    try:
        seg = client.create(name, (6, 5), "int32")
    except pybridge.AlreadyExists:
        with client.attach(name) as seg:
            assert seg.shape == (6, 5) and seg.dtype == "int32"
            if expected_values is not None:
                assert seg.array.tolist() == expected_values
        return "there"
    seg.close()
    client.destroy(name)
    return "free"


@pytest.mark.parametrize("mode", ["die", "block"])
@pytest.mark.parametrize("op", ["create", "attach", "destroy"])
def test_client_killed_right_after_sending_a_request(client, daemon, op, mode):
    # The doomed client also holds another segment, which must be released.
    client.create("held", (4,), "uint8").close()
    values = None
    if op != "create":
        with client.create("target", (6, 5), "int32") as seg:
            seg.array[...] = 7
            values = seg.array.tolist()
    assert total_attachments(client) == 0
    setup = [{"op": "attach", "name": "held"}]
    doomed = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RAW_CHILD), daemon.socket, mode,
         json.dumps(setup), json.dumps(REQUESTS[op])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if mode == "block":
            expect_line(doomed, "sent")
            doomed.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            doomed.wait(timeout=30)
        else:
            doomed.wait(timeout=30)
            killed_at = time.monotonic()  # it died just before it was reaped
    finally:
        kill(doomed)
    assert doomed.returncode == -signal.SIGKILL, doomed.stderr.read() if doomed.stderr else ""
    within(lambda: total_attachments(client) == 0 and client.info("held")["attached"] == 0,
           RELEASE_LIMIT_S - (time.monotonic() - killed_at),
           "the killed client's attachments were not released")
    assert_prefix_consistent(daemon, client)
    outcome = assert_name_reusable(client, "target", values)
    if op == "attach":
        assert outcome == "there"  # attach never removes anything
    client.destroy("held")
    if outcome == "there":
        client.destroy("target")


def wait_for_state(pid, states):
    """Waits until /proc says process `pid` is in one of `states` (R, S, T...)."""
    def state():
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    within(lambda: state() in states, 10, f"process {pid} never reached state {states}")


@pytest.mark.parametrize("op", ["create", "attach"])
def test_reply_that_cannot_be_delivered(client, daemon, op):
    """The daemon is stopped (SIGSTOP) while the client sends its request and
    dies, so the reply is certainly undeliverable: a create is undone (the
    name is free, no object is left), an attach leaves no attachment."""
    if op == "attach":
        client.create("target", (6, 5), "int32").close()
    doomed = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RAW_CHILD), daemon.socket, "cue-die", "[]",
         json.dumps(REQUESTS[op])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = False
    try:
        expect_line(doomed, "ready")
        daemon.proc.send_signal(signal.SIGSTOP)
        stopped = True
        wait_for_state(daemon.proc.pid, "Tt")
        doomed.stdin.write("go\n")
        doomed.stdin.flush()
        doomed.wait(timeout=30)
        assert doomed.returncode == -signal.SIGKILL
    finally:
        if stopped:
            daemon.proc.send_signal(signal.SIGCONT)
        kill(doomed)
    resumed_at = time.monotonic()
    if op == "create":
        within(lambda: "target" not in [s["name"] for s in client.list()],
               RELEASE_LIMIT_S, "the undeliverable create was not undone")
        assert_prefix_consistent(daemon, client)
        assert assert_name_reusable(client, "target") == "free"
    else:
        within(lambda: total_attachments(client) == 0,
               RELEASE_LIMIT_S - (time.monotonic() - resumed_at),
               "the undeliverable attach left an attachment")
        assert_prefix_consistent(daemon, client)
        client.destroy("target")


@pytest.mark.parametrize("holder_kind", ["cpp", "python"])
def test_client_killed_while_attached(client, daemon, holder_kind):
    seg = client.create("watched", (16,), "float32")
    seg.array[...] = 1.5
    if holder_kind == "cpp":
        holder = popen_peer(daemon, "hold", "watched")
    else:
        holder = popen_child("""
            import sys, pybridge
            c = pybridge.connect(sys.argv[1])
            s = c.attach(sys.argv[2])
            s.array[0] = 2.5
            print("attached", flush=True)
            sys.stdin.read()
        """, daemon, "watched")
    try:
        expect_line(holder, "attached")
        assert client.info("watched")["attached"] == 2
        assert total_attachments(client) == 2
        holder.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        holder.wait(timeout=30)
        within(lambda: client.info("watched")["attached"] == 1 and total_attachments(client) == 1,
               RELEASE_LIMIT_S - (time.monotonic() - killed_at),
               "the killed client's attachment was not released")
    finally:
        kill(holder)
    assert_prefix_consistent(daemon, client)
    expected = [2.5 if holder_kind == "python" else 1.5] + [1.5] * 15
    assert seg.array.tolist() == expected
    seg.close()
    client.destroy("watched")


PY_LOCK_HOLDER = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    s = c.attach(sys.argv[2])
    w = s.write()
    w.array[: w.array.size // 2] = int(sys.argv[3])
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.mark.parametrize("holder_kind", ["cpp", "python"])
def test_client_killed_holding_the_writer_lock(client, daemon, holder_kind):
    seg = client.create("locked", (8,), "int64")
    with seg.write() as arr:
        arr[...] = 1
    if holder_kind == "cpp":
        holder = popen_peer(daemon, "lock-and-hang", "locked", 9)
    else:
        holder = popen_child(PY_LOCK_HOLDER, daemon, "locked", 9)
    try:
        expect_line(holder, "locked")
        assert total_attachments(client) == 2
        with pytest.raises(pybridge.Timeout):
            seg.write(timeout=0.02)
        holder.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.warns(pybridge.OwnerDiedWarning):
            guard = seg.write(timeout=RELEASE_LIMIT_S)
        assert time.monotonic() - killed_at < RELEASE_LIMIT_S
        assert guard.owner_died
        holder.wait(timeout=30)
        within(lambda: client.info("locked")["attached"] == 1,
               RELEASE_LIMIT_S - (time.monotonic() - killed_at),
               "the killed lock holder's attachment was not released")
    finally:
        kill(holder)
    assert seg.version == 1  # the dead holder's write never became a version
    guard.array[...] = 3
    assert guard.commit() == 2
    with seg.write(timeout=1) as arr:  # healthy again: no death to report
        assert arr.tolist() == [3] * 8
    assert_prefix_consistent(daemon, client)
    seg.close()
    client.destroy("locked")


#: Creates, attaches, writes under the lock and destroys three names in a
#: loop until killed; a name left by an earlier (killed) loop is taken over.
CHURN_CHILD = """
    import sys, warnings, pybridge
    warnings.simplefilter("ignore", pybridge.OwnerDiedWarning)
    c = pybridge.connect(sys.argv[1])
    names = ["churn-a", "churn-b", "churn-c"]
    k = 0
    while True:
        name = names[k % 3]
        k += 1
        try:
            seg = c.create(name, (6, 5), "int32", meta={"k": k})
        except pybridge.AlreadyExists:
            seg = c.attach(name)
        with seg.write(timeout=5) as a:
            a[...] = k
        again = c.attach(name)
        again.close()
        seg.close()
        c.destroy(name)
        if k == 3:
            print("started", flush=True)
"""


def test_clients_killed_at_random_moments_of_a_create_attach_destroy_loop(client, daemon):
    rng = random.Random(4)
    names = ["churn-a", "churn-b", "churn-c"]
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHURN_CHILD),
                                  daemon.socket], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=python_env())
        try:
            expect_line(child, "started")
            # Not synchronisation: this picks the (random) moment of death.
            time.sleep(rng.uniform(0, 0.02))
            child.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            child.wait(timeout=30)
        finally:
            kill(child)
        assert child.returncode == -signal.SIGKILL
        within(lambda: total_attachments(client) == 0,
               RELEASE_LIMIT_S - (time.monotonic() - killed_at),
               "the killed client's attachments were not released")
        assert_prefix_consistent(daemon, client)
        listed = {s["name"] for s in client.list()}
        for name in names:
            if name not in listed:
                continue
            # Left whole by the dead loop: it attaches and its lock works
            # (handed over if the loop died holding it).
            with client.attach(name) as seg, warnings.catch_warnings():
                warnings.simplefilter("ignore", pybridge.OwnerDiedWarning)
                with seg.write(timeout=RELEASE_LIMIT_S) as arr:
                    arr[...] = -1
    for name in {s["name"] for s in client.list()}:
        client.destroy(name)
