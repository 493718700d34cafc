# SPDX-License-Identifier: MIT
"""A subscriber in another pid namespace (a container sharing the host's
/dev/shm and the daemon's socket): its pid means nothing to the publisher,
so its liveness is its OFD lock on its reader entry (ring_layout.hpp,
ReaderEntry). It is never reaped while alive, and reaped within a second
once dead. (By pid alone, this subscriber, pid 1 in its namespace, read as
the host's init, start time included, and was never reaped; one whose pid
existed nowhere on the host was reaped while alive.)"""
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

import pybridge
from conftest import skip_or_fail
from mut_helpers import expect_line, kill
from pb_helpers import python_env

WORDS = 512

HOLDER = """
    import os, sys, pybridge
    c = pybridge.connect(sys.argv[1])
    sub = c.subscribe("cam", mode="all")
    first = sub.next(timeout=10)
    print("pid", os.getpid(), "seq", first.seq, flush=True)
    second = sub.next(timeout=10)
    print("holding", second.seq, flush=True)
    sys.stdin.readline()
    print(int(first.array.min()), int(first.array.max()), int(second.array.min()),
          int(second.array.max()), flush=True)
    sys.stdin.readline()
"""


def in_new_pid_namespace(script, *args):
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-c", textwrap.dedent(script),
         *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=python_env())


def publish_seq(stream, timeout=None):
    with stream.publish(timeout=timeout) as loan:
        loan.array[...] = loan.seq
        return loan.seq


def test_a_subscriber_in_another_pid_namespace_is_alive_until_it_dies(daemon, client):
    if shutil.which("unshare") is None:
        skip_or_fail("no unshare(1)")
    probe = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True)
    if probe.returncode != 0:
        skip_or_fail(f"cannot make a pid namespace: {probe.stderr.decode().strip()}")
    cam = client.create_stream("cam", (WORDS,), "uint64", slots=2, overflow="drop_oldest")
    publish_seq(cam)
    holder = in_new_pid_namespace(HOLDER, daemon.socket)
    try:
        # pid 1 of its namespace: here, init (alive, started at another time).
        expect_line(holder, "pid 1 seq 1")
        publish_seq(cam)
        expect_line(holder, "holding 2")
        # Both slots held by a live subscriber: no room, however long the
        # publisher looks for dead subscribers (every 100 ms).
        with pytest.raises(pybridge.Timeout):
            publish_seq(cam, timeout=1.5)
        info = client.info("cam")["stream"]
        assert info["readers"] == 1 and [r["alive"] for r in info["subscribers"]] == [True]
        holder.stdin.write("\n")
        holder.stdin.flush()
        expect_line(holder, "1 1 2 2")  # never rewritten while held
        # Dead (unshare's --kill-child passes the SIGKILL on): the kernel
        # dropped its lock, and the publisher reaps it.
        holder.kill()
        holder.wait(timeout=30)
        started = time.monotonic()
        assert publish_seq(cam, timeout=10) == 3
        assert time.monotonic() - started < 1.5
        assert client.info("cam")["stream"]["readers"] == 0
    finally:
        kill(holder)
    cam.close()
    client.destroy("cam")
