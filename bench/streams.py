# SPDX-License-Identifier: MIT
"""Section 9 of bench/run.py: streams. One publisher process, 1 or 3 reader
processes, the same protocol for every method:

- the publisher writes the whole frame (a fill from a ready source frame:
  the write a camera driver does anyway), stores (seq, CLOCK_MONOTONIC ns) in
  its first 16 bytes, and publishes; a reader records now − stamp;
- latency: 1 reader, publisher pinned to CPU 0 and reader to CPU 1, frames
  paced (the reader is asleep when a frame comes: what a camera gives);
- throughput: frames as fast as the publisher can, lossless where the method
  has a lossless mode; rate = frames the slowest reader received ÷ time from
  the driver's go to the last reader's last frame.

Methods: shmbridge Python (pybridge streams, block), shmbridge C++
(bench/stream_bench.cpp), iceoryx2 Python publish/subscribe (a u8 slice;
subscribers block on an iceoryx2 event the publisher notifies after each
send: pub/sub alone has no blocking receive; backpressure
RetryUntilDelivered), pyzmq XPUB/SUB over ipc:// with send(copy=False) and
XPUB_NODROP (lossless), multiprocessing.Queue (one queue per reader, the
array pickled per reader).
"""
import ctypes
import json
import multiprocessing
import os
import subprocess
import tempfile
import time

import numpy as np

FRAME_4K = 4096
FRAME_1080P = 1080 * 1920 * 3
METHODS = ["shmbridge Python", "shmbridge C++", "iceoryx2 (Python)", "pyzmq copy=False",
           "multiprocessing.Queue"]
TIMEOUT_S = 60.0


def _pin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _stamp(frame_u8, seq):
    frame_u8[:16].view(np.uint64)[:] = (seq, time.monotonic_ns())


def _read_stamp(buf):
    seq, t = np.frombuffer(buf, np.uint64, 2)
    return int(seq), int(t)


def _pace(next_t, interval_us):
    if interval_us:
        next_t += interval_us * 1000
        delay = next_t - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
    return next_t


class Job:
    """What every role gets: the case, and the driver's signals."""

    def __init__(self, ctx, method, name, nbytes, frames, interval_us, readers, socket, workdir):
        self.method, self.name, self.nbytes, self.frames = method, name, nbytes, frames
        self.interval_us, self.readers, self.socket = interval_us, readers, socket
        self.created = ctx.Event()  # the publisher made the stream / service
        self.ready = ctx.Barrier(readers + 1)  # readers subscribed, with the driver
        self.go = ctx.Event()
        self.done = ctx.Event()
        self.results = ctx.Queue()
        self.endpoint = f"ipc://{workdir}/{name}.zmq"
        self.queues = ([ctx.Queue(maxsize=8) for _ in range(readers)]
                       if method == "multiprocessing.Queue" else [])


# ---- publishers -------------------------------------------------------------

def publisher(job, cpu):
    _pin(cpu)
    src = np.full(job.nbytes, 7, np.uint8)
    if job.method == "shmbridge Python":
        import pybridge
        client = pybridge.connect(job.socket)
        cam = client.create_stream(job.name, (job.nbytes,), "uint8", slots=8, overflow="block")
        job.created.set()
        job.go.wait()
        t = time.monotonic_ns()
        for _ in range(job.frames):
            t = _pace(t, job.interval_us)
            with cam.publish(timeout=TIMEOUT_S) as frame:
                a = frame.array
                np.copyto(a, src)
                _stamp(a, frame.seq)
        job.done.wait(TIMEOUT_S)
        client.destroy(job.name)
    elif job.method == "iceoryx2 (Python)":
        import iceoryx2 as iox2
        node, data, event = _iox2_services(job)
        pub = (data.publisher_builder().initial_max_slice_len(job.nbytes)
               .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create())
        notifier = event.notifier_builder().create()
        job.created.set()
        job.go.wait()
        pub.update_connections()
        t = time.monotonic_ns()
        for seq in range(1, job.frames + 1):
            t = _pace(t, job.interval_us)
            sample = pub.loan_slice_uninit(job.nbytes)
            a = np.ctypeslib.as_array((ctypes.c_uint8 * job.nbytes).from_address(
                sample.payload_ptr))
            np.copyto(a, src)
            _stamp(a, seq)
            sample.assume_init().send()
            notifier.notify()
        job.done.wait(TIMEOUT_S)
    elif job.method == "pyzmq copy=False":
        import zmq
        ctx = zmq.Context()
        sock = ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # every SUB's subscription, not the first
        sock.setsockopt(zmq.SNDHWM, 8)
        sock.bind(job.endpoint)
        job.created.set()
        for _ in range(job.readers):  # each SUB's subscription: the joiners are in
            sock.recv()
        job.go.wait()
        t = time.monotonic_ns()
        for seq in range(1, job.frames + 1):
            t = _pace(t, job.interval_us)
            frame = src.copy()  # copy=False: zmq owns the buffer until sent
            _stamp(frame, seq)
            while True:
                try:
                    sock.send(frame, copy=False, flags=zmq.NOBLOCK)
                    break
                except zmq.Again:
                    sock.poll(1000, zmq.POLLOUT)
        job.done.wait(TIMEOUT_S)
        sock.close(linger=0)
        ctx.term()
    elif job.method == "multiprocessing.Queue":
        job.created.set()
        job.go.wait()
        t = time.monotonic_ns()
        for seq in range(1, job.frames + 1):
            t = _pace(t, job.interval_us)
            frame = src.copy()
            _stamp(frame, seq)
            for q in job.queues:
                q.put(frame)
        job.done.wait(TIMEOUT_S)
    else:
        raise ValueError(job.method)


def _iox2_services(job):
    import iceoryx2 as iox2
    iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    data = (node.service_builder(iox2.ServiceName.new(job.name))
            .publish_subscribe(iox2.Slice[ctypes.c_uint8])
            .enable_safe_overflow(False).subscriber_max_buffer_size(8)
            .max_subscribers(8).open_or_create())
    event = node.service_builder(iox2.ServiceName.new(job.name + "-ev")).event().open_or_create()
    return node, data, event


# ---- readers ----------------------------------------------------------------

def reader(job, index, cpu):
    _pin(cpu)
    lat = []
    received = dropped = last = 0

    def take(buf):
        nonlocal received, last
        now = time.monotonic_ns()
        seq, t = _read_stamp(buf)
        if seq == 0:
            return 0
        lat.append(now - t)
        received += 1
        last = now
        return seq

    if job.method == "shmbridge Python":
        import pybridge
        client = pybridge.connect(job.socket)
        sub = client.subscribe(job.name, mode="all")
        job.ready.wait()
        while True:
            with sub.next(timeout=TIMEOUT_S) as frame:
                if take(frame.array[:16]) >= job.frames:
                    break
        dropped = sub.dropped
    elif job.method == "iceoryx2 (Python)":
        node, data, event = _iox2_services(job)
        sub = data.subscriber_builder().buffer_size(8).create()
        listener = event.listener_builder().create()
        job.ready.wait()
        seq = 0
        while seq < job.frames:
            sample = sub.receive()
            if sample is None:
                listener.blocking_wait()
                continue
            seq = take((ctypes.c_uint8 * 16).from_address(sample.payload_ptr))
            sample.delete()
    elif job.method == "pyzmq copy=False":
        import zmq
        ctx = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 8)
        sock.connect(job.endpoint)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        job.ready.wait()
        while take(sock.recv(copy=False).buffer) < job.frames:
            pass
        sock.close(linger=0)
        ctx.term()
    elif job.method == "multiprocessing.Queue":
        q = job.queues[index]
        job.ready.wait()
        while take(q.get(timeout=TIMEOUT_S)) < job.frames:
            pass
    else:
        raise ValueError(job.method)
    lat.sort()
    job.results.put(dict(received=received, dropped=dropped, last_ns=last,
                         p50_ns=lat[len(lat) // 2] if lat else 0,
                         p99_ns=lat[int(0.99 * (len(lat) - 1) + 0.5)] if lat else 0))


# ---- one case ---------------------------------------------------------------

def run_case(method, nbytes, frames, readers, interval_us, pinned, socket, bin_dir, tag):
    """Runs one publisher and `readers` readers; returns (reader results, go time)."""
    name = f"bench-stream-{os.getpid()}-{tag}"
    cpus = sorted(os.sched_getaffinity(0))
    pub_cpu = cpus[0] if pinned else None
    sub_cpu = (cpus[1] if len(cpus) > 1 else cpus[0]) if pinned else None
    if method == "shmbridge C++":
        return _run_cpp(name, nbytes, frames, readers, interval_us, pub_cpu, sub_cpu, socket,
                        bin_dir)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-zmq-") as workdir:
        job = Job(ctx, method, name, nbytes, frames, interval_us, readers, socket, workdir)
        pub = ctx.Process(target=publisher, args=(job, pub_cpu), daemon=True)
        pub.start()
        procs = [pub]
        try:
            if not job.created.wait(TIMEOUT_S):
                raise RuntimeError(f"{method}: publisher did not start")
            for i in range(readers):
                p = ctx.Process(target=reader, args=(job, i, sub_cpu), daemon=True)
                p.start()
                procs.append(p)
            job.ready.wait(TIMEOUT_S)
            go = time.monotonic_ns()
            job.go.set()
            results = [job.results.get(timeout=TIMEOUT_S * 2) for _ in range(readers)]
            job.done.set()
            pub.join(TIMEOUT_S)
            return results, go
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                p.join(5)


def _run_cpp(name, nbytes, frames, readers, interval_us, pub_cpu, sub_cpu, socket, bin_dir):
    exe = str(bin_dir / "bridge_stream_bench")
    common = ["--socket", socket, "--name", name, "--frames", str(frames)]
    pub_cmd = [exe, "pub", *common, "--bytes", str(nbytes), "--interval-us", str(interval_us),
               "--overflow", "block"] + (["--cpu", str(pub_cpu)] if pub_cpu is not None else [])
    pub = subprocess.Popen(pub_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    subs = []
    try:
        if pub.stdout.readline() != "ready\n":
            raise RuntimeError("bridge_stream_bench pub did not start")
        for _ in range(readers):
            subs.append(subprocess.Popen(
                [exe, "sub", *common] + (["--cpu", str(sub_cpu)] if sub_cpu is not None else []),
                stdout=subprocess.PIPE, text=True))
        for s in subs:
            if s.stdout.readline() != "ready\n":
                raise RuntimeError("bridge_stream_bench sub did not start")
        go = time.monotonic_ns()
        pub.stdin.write("go\n")
        pub.stdin.flush()
        results = [json.loads(s.stdout.readline()) for s in subs]
        pub.stdin.write("done\n")
        pub.stdin.flush()
        pub.wait(TIMEOUT_S)
        return results, go
    finally:
        for p in [pub, *subs]:
            if p.poll() is None:
                p.kill()
            p.wait()


def write_rate(nbytes, slots=8, seconds=0.3):
    """The publisher's own work per frame, alone: fill + stamp into `slots`
    rotating, already touched frames (the ring's footprint), frames/s."""
    src = np.full(nbytes, 7, np.uint8)
    dst = [np.zeros(nbytes, np.uint8) for _ in range(slots)]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        d = dst[n % slots]
        np.copyto(d, src)
        _stamp(d, n)
        n += 1
    return n / (time.perf_counter() - t0)
