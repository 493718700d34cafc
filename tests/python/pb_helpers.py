# SPDX-License-Identifier: MIT
"""Helpers for the pybridge tests (fixtures live in tests/conftest.py)."""
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np

import pybridge
from conftest import run_peer

#: One representative set of values per supported dtype, edges included.
#: JSON has no inf/nan, so the C++ peer's dumps cannot carry them.
VALUES = {
    "bool": [True, False, True, True],
    "int8": [-128, 127, -1, 0],
    "int16": [-32768, 32767, -1, 7],
    "int32": [-(2**31), 2**31 - 1, -1, 12345],
    "int64": [-(2**63), 2**63 - 1, -1, 2**40 + 3],
    "uint8": [0, 255, 1, 128],
    "uint16": [0, 65535, 1, 300],
    "uint32": [0, 2**32 - 1, 1, 70000],
    "uint64": [0, 2**64 - 1, 1, 2**63 + 5],
    "float16": [0.5, -2.0, 65504.0, 0.099975586],
    "float32": [0.1, -1.5e30, 3.4028235e38, 1.17549435e-38],
    "float64": [0.1, -1e300, 5e-324, 1.7976931348623157e308],
    "complex64": [1 + 2j, -0.5 + 0.25j, 3.4e38 - 1j, 0.1j],
    "complex128": [1 + 2j, -0.5 + 0.25j, 1e300 - 1e-300j, 0.1j],
}


def from_peer_values(values, dtype):
    """The peer prints complex numbers as [re, im]."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        values = [complex(re, im) for re, im in values]
    return np.array(values, dtype=dtype)


def to_peer_value(value, dtype):
    """A JSON VALUE argument for `bridge_peer set/fill/add`."""
    if np.dtype(dtype).kind == "c":
        value = complex(value)
        return json.dumps([value.real, value.imag])
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))


def peer_dump(daemon, name):
    return json.loads(run_peer(daemon, "dump", name).stdout)


def python_env():
    """The environment for a child Python that imports this same pybridge."""
    env = dict(os.environ)
    package_parent = str(Path(pybridge.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    return env


def run_python(script, *args, check=True, timeout=60):
    """Runs `script` (dedented) in a separate Python process."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=python_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"child python failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def popen_python(script, *args):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=python_env())


def shm_mapped(daemon, name):
    """Whether this process still maps segment `name` (its /dev/shm object),
    destroyed or not: once its name is unlinked the kernel shows the path
    followed by " (deleted)"."""
    path = "/dev/shm/" + daemon.shm_prefix.lstrip("/") + name
    with open("/proc/self/maps") as maps:
        return any(line.rstrip("\n").removesuffix(" (deleted)").endswith(" " + path)
                   for line in maps)


class FakeDaemon:
    """A Unix socket that answers the first frame it reads with `reply`
    (raw payload bytes) after `delay` seconds: a daemon that misbehaves."""

    def __init__(self, path, reply, delay=0.0):
        self.path = str(path)
        self.reply = reply
        self.delay = delay
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import time

        conn, _ = self.server.accept()
        with conn:
            (length,) = struct.unpack("<I", _recv_exact(conn, 4))
            _recv_exact(conn, length)
            time.sleep(self.delay)
            conn.sendall(struct.pack("<I", len(self.reply)) + self.reply)
            try:
                conn.recv(1)  # wait for the client to hang up
            except OSError:
                pass

    def close(self):
        self.server.close()
        self.thread.join(timeout=10)


def _recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError("client hung up")
        data += chunk
    return data


def wait_for(predicate, timeout=10.0):
    """Polls `predicate` until it holds (for state the daemon updates
    asynchronously, such as a dead client's attachments)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
