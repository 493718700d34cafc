# SPDX-License-Identifier: MIT
"""The methods bench/run.py compares, each behind the same small interface, and
the worker processes that run them (spawned, so nothing is inherited by fork).

    create(key, nbytes, src=None) -> (ref, keep)   ref is picklable, names the array
    attach(ref) -> (ndarray, handle)
    release(handle)                                 after the caller dropped the ndarray
    destroy(ref, keep)
"""
import os
import socket
import time

import numpy as np

PAGE = 4096
clock = time.perf_counter_ns


class Shmbridge:
    name = "shmbridge"

    def __init__(self, env):
        import pybridge
        self.client = pybridge.connect(env["bridge_socket"])

    def create(self, key, nbytes, src=None):
        seg = self.client.create(key, (nbytes,), "uint8")
        if src is not None:
            np.copyto(seg.array, src)
        return key, seg

    def create_from(self, key, src):
        return key, self.client.create_from(key, src)

    def attach(self, ref, same_process=False):
        seg = self.client.attach(ref)
        return seg.array, seg

    def release(self, handle):
        handle.close()

    def destroy(self, ref, keep):
        self.client.destroy(ref)
        keep.close()


class ShmbridgeHuge(Shmbridge):
    """shmbridge with huge_pages=True, against the daemon with a huge-page
    directory (common.huge_bridged). Only sections 3 and 5 use it."""
    name = "shmbridge-huge"

    def __init__(self, env):
        import pybridge
        self.client = pybridge.connect(env["bridge_huge_socket"])
        self.pool_dir = env.get("bridge_huge_pool_dir")

    def wait_pool(self, limit_s=10.0):
        """Until the daemon's --pool object is ready again (rebuilt in the
        background after each use); untimed. False if it was not in time."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            try:
                if any(".creating.pool-" in f for f in os.listdir(self.pool_dir)):
                    return True
            except OSError:
                return False
            time.sleep(0.005)
        return False

    def create(self, key, nbytes, src=None):
        seg = self.client.create(key, (nbytes,), "uint8", huge_pages=True)
        if src is not None:
            np.copyto(seg.array, src)
        return key, seg

    def create_from(self, key, src):
        return key, self.client.create_from(key, src, huge_pages=True)


class SharedArrayMethod:
    name = "SharedArray"

    def __init__(self, env):
        import SharedArray
        self.sa = SharedArray

    def create(self, key, nbytes, src=None):
        ref = "shm://" + key
        arr = self.sa.create(ref, nbytes, dtype=np.uint8)
        if src is not None:
            np.copyto(arr, src)
        return ref, arr

    def attach(self, ref, same_process=False):
        return self.sa.attach(ref), None

    def release(self, handle):
        pass

    def destroy(self, ref, keep):
        self.sa.delete(ref)


class SharedMemoryMethod:
    name = "shared_memory"

    def __init__(self, env):
        from multiprocessing import resource_tracker, shared_memory
        self.shm = shared_memory
        self.tracker = resource_tracker

    def create(self, key, nbytes, src=None):
        s = self.shm.SharedMemory(name=key, create=True, size=nbytes)
        arr = np.ndarray((nbytes,), np.uint8, s.buf)
        if src is not None:
            np.copyto(arr, src)
        return key, (s, arr)

    def attach(self, ref, same_process=False):
        s = self.shm.SharedMemory(name=ref)
        if not same_process:
            # Python 3.11 registers an attach with the resource tracker, which
            # would unlink the creator's segment when this process exits.
            self.tracker.unregister(s._name, "shared_memory")
        return np.ndarray((s.size,), np.uint8, s.buf), s

    def release(self, handle):
        handle.close()

    def destroy(self, ref, keep):
        s, arr = keep
        del arr
        keep = None
        s.close()
        s.unlink()


class VineyardMethod:
    name = "vineyard"

    def __init__(self, env):
        import vineyard
        self.vineyard = vineyard
        self.client = vineyard.connect(env["vineyard_socket"])
        self.zeros = {}

    def create(self, key, nbytes, src=None):
        if src is None:
            src = self.zeros.setdefault(nbytes, np.zeros(nbytes, np.uint8))
        oid = self.client.put(src)
        return int(oid), oid

    def attach(self, ref, same_process=False):
        return self.client.get(self.vineyard.ObjectID(ref)), None

    def release(self, handle):
        pass

    def destroy(self, ref, keep):
        self.client.delete(self.vineyard.ObjectID(ref))


METHODS = {m.name: m for m in (Shmbridge, SharedArrayMethod, SharedMemoryMethod, VineyardMethod)}
#: Not compared in every section (not in --methods): sections 3 and 5 only.
EXTRA_METHODS = {ShmbridgeHuge.name: ShmbridgeHuge}


# ---- the bare Unix-socket round trip (the baseline of the attach section) ----

MESSAGE = 200


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def echo_server(path, ready):
    """A blocking echo server: one connection at a time, 200-byte messages."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    ready.send("ready")
    while True:
        conn, _ = srv.accept()
        with conn:
            while (msg := recv_exact(conn, MESSAGE)) is not None:
                conn.sendall(msg)


def uds_round_trips(path, n):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    msg = b"x" * MESSAGE
    out = []
    with sock:
        for _ in range(10):
            sock.sendall(msg)
            recv_exact(sock, MESSAGE)
        for _ in range(n):
            t = clock()
            sock.sendall(msg)
            recv_exact(sock, MESSAGE)
            out.append(clock() - t)
    return out


# ---- what a worker process does -------------------------------------------

def read_every_page(arr):
    """Reads one byte of every 4 KiB page (a strided sum touches each page once)."""
    return int(arr[::PAGE].sum())


class Worker:
    def __init__(self, env):
        self.env = env
        self.methods = {}

    def method(self, name):
        if name not in self.methods:
            self.methods[name] = {**METHODS, **EXTRA_METHODS}[name](self.env)
        return self.methods[name]

    def op_ping(self):
        return os.getpid()

    def op_warm(self, names):
        for n in names:
            self.method(n)
        if "shared_memory" in names:  # start this process's tracker before any timing
            from multiprocessing import resource_tracker
            resource_tracker.ensure_running()
        return True

    def op_uds(self, path, n):
        return uds_round_trips(path, n)

    def op_attach_fresh(self, method, refs):
        """attach -> ndarray + read of its first byte, once per ref never mapped here."""
        m = self.method(method)
        out = []
        for ref in refs:
            t = clock()
            arr, h = m.attach(ref)
            int(arr[0])
            out.append(clock() - t)
            del arr
            m.release(h)
        return out

    def op_attach_again(self, method, ref, n, max_seconds=None):
        """attach -> ndarray + first byte + close, n times on the same array (or
        fewer, if max_seconds pass first)."""
        m = self.method(method)
        out = []
        stop_at = time.monotonic() + max_seconds if max_seconds else None
        for _ in range(n):
            if stop_at is not None and time.monotonic() >= stop_at:
                break
            t = clock()
            arr, h = m.attach(ref)
            int(arr[0])
            del arr
            m.release(h)
            out.append(clock() - t)
        return out

    def op_cycles(self, method, tag, start_at, seconds, nbytes=PAGE):
        """create + attach + read + destroy (+ close of both handles) until the deadline."""
        m = self.method(method)
        while time.monotonic() < start_at:
            time.sleep(0.0005)
        deadline = start_at + seconds
        count = 0
        while True:
            key = f"bench-cyc-{tag}-{count}"
            ref, keep = m.create(key, nbytes)
            arr, h = m.attach(ref, same_process=True)
            int(arr[0])
            del arr
            m.destroy(ref, keep)
            m.release(h)
            keep = None
            count += 1
            if time.monotonic() >= deadline:
                break
        return count, time.monotonic() - start_at

    def op_consume(self, method, ref):
        """Attach (timed) then read every page (timed) of an array made elsewhere."""
        m = self.method(method)
        t0 = clock()
        arr, h = m.attach(ref)
        t1 = clock()
        read_every_page(arr)
        t2 = clock()
        read_every_page(arr)  # the same pages again, now mapped: the warm baseline
        t3 = clock()
        del arr
        m.release(h)
        return t1 - t0, t2 - t1, t3 - t2


def churn(socket_path, nbytes, running, stop):
    """Another client: create + destroy arrays of `nbytes` until `stop` is set;
    `running` is set once the first create has returned (so the daemon has
    gone through a whole create at least once before anything is timed).
    Its handle is closed before the destroy, so the daemon drops the last
    reference to the pages (the work of freeing them happens there, too)."""
    import pybridge
    client = pybridge.connect(socket_path)
    count = 0
    while not stop.is_set():
        seg = client.create(f"bench-churn-{os.getpid()}-{count}", (nbytes,), "uint8")
        seg.close()
        client.destroy(f"bench-churn-{os.getpid()}-{count}")
        count += 1
        running.set()
    client.close()


def own_resource_tracker():
    """A spawned child shares its parent's resource tracker; give this worker its
    own, as an unrelated process has, so that the unregister after an attach
    (see SharedMemoryMethod.attach) acts on this process's registration only."""
    from multiprocessing import resource_tracker as rt
    rt._resource_tracker = rt.ResourceTracker()
    for fn in ("ensure_running", "register", "unregister", "getfd"):
        setattr(rt, fn, getattr(rt._resource_tracker, fn))


def worker_main(conn, env):
    own_resource_tracker()
    w = Worker(env)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        op, kwargs = msg
        try:
            conn.send(("ok", getattr(w, "op_" + op)(**kwargs)))
        except Exception as e:  # reported to the driver, which fails the section
            conn.send(("error", f"{type(e).__name__}: {e}"))
    for m in w.methods.values():
        c = getattr(m, "client", None)
        if c is not None and hasattr(c, "close"):
            try:
                c.close()
            except Exception:
                pass


class WorkerPool:
    """N spawned worker processes driven over pipes."""

    def __init__(self, ctx, env, n):
        self.workers = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(child, env), daemon=True)
            p.start()
            child.close()
            self.workers.append((p, parent))

    def call(self, i, op, **kwargs):
        return self.gather([self.send(i, op, **kwargs)])[0]

    def send(self, i, op, **kwargs):
        self.workers[i][1].send((op, kwargs))
        return i

    def gather(self, ids):
        out = []
        for i in ids:
            status, value = self.workers[i][1].recv()
            if status != "ok":
                raise RuntimeError(f"worker {i}: {value}")
            out.append(value)
        return out

    def close(self):
        for p, conn in self.workers:
            try:
                conn.send(None)
            except OSError:
                pass
        for p, _ in self.workers:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
