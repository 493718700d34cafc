# SPDX-License-Identifier: MIT
"""The shmbridge demo: one array shared by a Python and a C++ process.

It starts a private bridged, then
  1. Python creates "frames" (float32) and writes to it through NumPy;
  2. a separate C++ process attaches to the same pages and mutates them under
     the segment's writer lock; its commit wakes Python, which is waiting for
     a new version;
  3. Python prints the mutation it sees, with no copy and no re-attach;
  4. the reverse: C++ creates "from_cpp" and waits for a new version, Python
     attaches and mutates it under the lock, and the woken C++ process prints
     what it now sees;
  5. bridgectl ls and show; then everything is destroyed, the daemon stopped,
     and /dev/shm checked.

Usage: python demo.py BIN_DIR   (the folder holding bridged, bridgectl, frames_peer)
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import pybridge


def start_daemon(bin_dir, socket, log):
    """Starts bridged; returns once it accepts connections (it says so on a pipe)."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([str(bin_dir / "bridged"), "--socket", socket, "--ephemeral",
                             "--ready-fd", str(write_fd)], pass_fds=(write_fd,),
                            stderr=log)
    os.close(write_fd)
    with os.fdopen(read_fd) as ready:
        if ready.readline() != "ready\n":
            sys.exit("bridged failed to start")
    return proc


def banner(text):
    print(f"\n=== {text}", flush=True)


def main():
    bin_dir = Path(sys.argv[1]).resolve()
    with tempfile.TemporaryDirectory(prefix="shmbridge-demo-") as tmp:
        socket = os.path.join(tmp, "bridged.sock")
        log_path = os.path.join(tmp, "bridged.log")
        with open(log_path, "wb") as log:
            daemon = start_daemon(bin_dir, socket, log)
            try:
                prefix = run(bin_dir, socket)
            finally:
                daemon.terminate()
                daemon.wait(timeout=30)
        banner(f"daemon stopped (exit {daemon.returncode}); its log:")
        print(Path(log_path).read_text(), end="")
    left = [p.name for p in Path("/dev/shm").glob(prefix.lstrip("/") + "*")]
    print(f"left in /dev/shm under {prefix}*:", left if left else "nothing")
    return 1 if left else 0


def run(bin_dir, socket):
    client = pybridge.connect(socket)
    prefix = client.stats()["shm_prefix"]  # this daemon's shm object names start with it
    peer = [str(bin_dir / "frames_peer"), "--socket", socket]

    banner("Python -> C++")
    seg = client.create("frames", (3, 4), "float32", meta={"camera": "front"})
    seg.array[...] = np.arange(12, dtype=np.float32).reshape(3, 4)
    print(f"[python pid {os.getpid()}] created 'frames' and wrote:\n{seg.array}", flush=True)
    seen = seg.version
    cpp = subprocess.Popen(peer + ["mutate", "frames"])
    version = seg.wait(newer_than=seen, timeout=30)  # futex wait: wakes on the C++ commit
    cpp.wait(timeout=30)  # only so that the two processes' output does not interleave
    print(f"[python] woke on version {version} (written by pid {seg.last_writer_pid}); "
          f"the same pages now hold:\n{seg.array}", flush=True)
    assert seg.array[0, 0] == 100 and seg.array[-1, -1] == -1

    banner("C++ -> Python")
    owner = subprocess.Popen(peer + ["own", "from_cpp"], stdout=subprocess.PIPE, text=True)
    for line in owner.stdout:  # echo until the C++ process says it is ready
        if line.strip() == "ready":
            break
        print(line, end="", flush=True)
    with client.attach("from_cpp") as theirs:
        print(f"[python] attached 'from_cpp' {theirs.dtype} {theirs.shape}, meta {theirs.meta}")
        with theirs.write(timeout=10) as arr:  # the writer lock; the commit wakes C++
            arr[...] *= -1
            arr[1, :] = 7
        print(f"[python] committed version {theirs.version}:\n{theirs.array}", flush=True)
        print(owner.stdout.read(), end="", flush=True)
        owner.wait(timeout=30)

    banner("bridgectl ls")
    ctl = [str(bin_dir / "bridgectl"), "--socket", socket]
    subprocess.run(ctl + ["ls"], check=True)
    banner("bridgectl show frames")
    subprocess.run(ctl + ["show", "frames"], check=True)

    banner("cleaning up")
    seg.close()
    for name in ("frames", "from_cpp"):
        client.destroy(name)
        print(f"destroyed {name!r}")
    client.close()
    return prefix


if __name__ == "__main__":
    sys.exit(main())
