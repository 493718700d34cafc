# SPDX-License-Identifier: MIT
"""Huge pages (issue 9): segments backed by 2 MiB pages in bridged's
--huge-dir, for real. A namespace holder (`unshare -m`, kept alive by a `cat`
on a pipe) mounts a private tmpfs with huge=always on a directory under this
test's tmp_path; daemons run inside that namespace (nsenter), so a restart
finds the same tmpfs, while the socket lives outside it and clients connect
as usual. The host's /dev/shm has shmem THP off, so a segment that really has
huge pages can only come from the huge dir.

Where unshare/mount/nsenter are not permitted the tests skip (saying why) and
fail in CI, since they back README guarantees.
"""
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pybridge
from conftest import Daemon, binary, run_ctl, skip_or_fail
from mut_helpers import finish, popen_child
from pb_helpers import wait_for

KiB = 1024
MiB = 1024 * KiB
HUGE = 2 * MiB
#: Small enough for any test machine, big enough to hold a few 2 MiB pages.
TMPFS_BYTES = 32 * MiB


def _mount(path, options):
    return f"mkdir -p '{path}' && mount -t tmpfs -o {options} none '{path}'"


@functools.lru_cache(maxsize=None)
def huge_tmpfs_unavailable():
    """Why a private huge=always tmpfs cannot be had here (None if it can)."""
    probe_dir = "/tmp/shmbridge-huge-probe"
    script = (_mount(probe_dir, f"huge=always,size={TMPFS_BYTES}") +
              " && command -v nsenter >/dev/null")
    try:
        probe = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                               text=True, timeout=30)
    except FileNotFoundError:
        return "unshare(1) is not installed"
    if probe.returncode != 0:
        return ("cannot mount a private huge=always tmpfs (unshare -m + mount need "
                f"CAP_SYS_ADMIN; nsenter must be installed): {probe.stderr.strip()}")
    with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
        if "[deny]" in f.read():
            return "shmem_enabled is 'deny': no tmpfs gives huge pages on this host"
    return None


class HugeNamespace:
    """A mount namespace whose `path` is a private tmpfs mounted `options`,
    alive until close()."""

    def __init__(self, path, options):
        self.path = Path(path)
        self.holder = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", _mount(path, options) + " && echo mounted && exec cat"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.holder.stdout.readline()
        if line.strip() != "mounted":
            self.holder.wait(timeout=30)
            raise RuntimeError(f"could not mount: {self.holder.stderr.read()}")
        #: Runs a daemon's argv inside the namespace (entering a mount
        #: namespace moves to its root: keep the working directory, for a
        #: relative BRIDGE_BIN_DIR).
        self.wrapper = ("nsenter", "-t", str(self.holder.pid), "-m", f"--wd={os.getcwd()}", "--")

    def view(self):
        """The tmpfs as seen from outside the namespace."""
        return Path(f"/proc/{self.holder.pid}/root") / self.path.relative_to("/")

    def files(self):
        return sorted(p.name for p in self.view().iterdir())

    def used_bytes(self):
        st = os.statvfs(self.view())
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def close(self):
        self.holder.stdin.close()
        self.holder.wait(timeout=30)


@pytest.fixture
def huge_ns(tmp_path):
    reason = huge_tmpfs_unavailable()
    if reason:
        skip_or_fail(reason)
    ns = HugeNamespace(tmp_path / "huge", f"huge=always,size={TMPFS_BYTES}")
    yield ns
    ns.close()


def obj(d, name):
    """The file name of segment `name`'s object."""
    return d.shm_prefix.lstrip("/") + name


def checked_stop(d):
    alive = d.proc.poll() is None
    code = d.stop()
    assert alive, f"bridged died ({code}):\n{d.log()}"
    assert code == 0, f"bridged exited with {code}:\n{d.log()}"


@pytest.fixture
def huge_daemon(huge_ns, tmp_path):
    d = Daemon(tmp_path, "--huge-dir", str(huge_ns.path), wrapper=huge_ns.wrapper)
    yield d
    checked_stop(d)
    assert huge_ns.files() == [], "--ephemeral left objects in --huge-dir"
    assert d.leftover_shm() == []


#: Attaches argv[2], checks it holds argv[3] everywhere, reports how much of
#: its own mapping of it is mapped with PMDs (2 MiB pages) per /proc/self/smaps,
#: then writes argv[4] everywhere.
CHECK_AND_WRITE = """
    import sys, pybridge
    c = pybridge.connect(sys.argv[1])
    seg = c.attach(sys.argv[2])
    assert (seg.array == int(sys.argv[3])).all(), "the other process's data is not there"
    prefix = c.stats()["shm_prefix"].lstrip("/") + sys.argv[2]
    pmd_kib, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
                inside = fields[-1].endswith("/" + prefix) or fields[-1] == prefix
            elif inside and fields[0] in ("ShmemPmdMapped:", "FilePmdMapped:"):
                pmd_kib += int(fields[1])
    seg.array[...] = int(sys.argv[4])
    seg.mark_changed()
    print(seg.page_size, pmd_kib * 1024, flush=True)
"""


def test_huge_segment_has_huge_pages_shared_across_processes(huge_daemon, huge_ns):
    c = pybridge.connect(huge_daemon.socket)
    seg = c.create("big", (8 * MiB,), "uint8", huge_pages=True)
    assert seg.page_size == HUGE
    assert c.info("big")["page_size"] == HUGE
    # It lives in the huge dir, not in /dev/shm.
    assert huge_ns.files() == [obj(huge_daemon, "big")]
    assert huge_daemon.segment_objects() == []
    seg.array[...] = 7
    child = popen_child(CHECK_AND_WRITE, huge_daemon, "big", 7, 9)
    page_size, pmd_bytes = map(int, finish(child).split())
    assert page_size == HUGE
    # The data (8 MiB, 2 MiB aligned in the file past the header's page) is
    # mapped with huge pages at least where whole 2 MiB pages fall inside it.
    assert pmd_bytes >= 6 * MiB, f"only {pmd_bytes} bytes PMD-mapped"
    assert (seg.array == 9).all(), "this process does not see the other's writes"
    seg.close()
    c.destroy("big")
    assert huge_ns.files() == []
    c.close()


def test_auto_policy_and_explicit_choices(huge_daemon, huge_ns):
    c = pybridge.connect(huge_daemon.socket)
    prefix = huge_daemon.shm_prefix.lstrip("/")
    # auto (the default): huge for arrays of at least one huge page.
    assert c.create("auto-big", (HUGE,), "uint8").page_size == HUGE
    assert c.create("auto-small", (HUGE - 1,), "uint8").page_size == os.sysconf("SC_PAGE_SIZE")
    assert c.create("forced-small", (4096,), "uint8", huge_pages=True).page_size == HUGE
    assert c.create("refused-big", (4 * MiB,), "uint8", huge_pages=False).page_size == 4096
    assert huge_ns.files() == sorted([prefix + "auto-big", prefix + "forced-small"])
    assert huge_daemon.segment_objects() == sorted([prefix + "auto-small", prefix + "refused-big"])
    by_name = {s["name"]: s["page_size"] for s in c.list()}
    assert by_name == {"auto-big": HUGE, "auto-small": 4096, "forced-small": HUGE,
                       "refused-big": 4096}
    with pytest.raises(pybridge.InvalidArgument):
        c.create("bad", (1,), "uint8", huge_pages="yes")
    c.close()


def test_policy_never_and_always(huge_ns, tmp_path):
    for policy, expected in (("never", 4096), ("always", HUGE)):
        d = Daemon(tmp_path, "--huge-dir", str(huge_ns.path), "--huge-pages", policy,
                   wrapper=huge_ns.wrapper)
        try:
            with pybridge.connect(d.socket) as c:
                assert c.create("x", (4 * MiB,), "uint8").page_size == expected
                assert c.create("y", (16,), "uint8").page_size == (
                    HUGE if policy == "always" else 4096)
                assert c.create("z", (16,), "uint8", huge_pages=True).page_size == HUGE
        finally:
            checked_stop(d)
        assert huge_ns.files() == [] and d.leftover_shm() == []


def test_huge_pages_without_huge_dir_is_an_error_and_changes_nothing(daemon, client):
    before = client.list()
    with pytest.raises(pybridge.InvalidArgument, match="--huge-dir"):
        client.create("big", (4 * MiB,), "uint8", huge_pages=True)
    with pytest.raises(pybridge.InvalidArgument, match="--huge-dir"):
        client.create_from("big", np.zeros(16, np.uint8), huge_pages=True)
    assert client.list() == before
    assert daemon.segment_objects() == []
    # Without --huge-dir nothing else changes: 4 KiB pages, also when asked.
    assert client.create("plain", (4 * MiB,), "uint8").page_size == 4096
    assert client.create("asked", (16,), "uint8", huge_pages=False).page_size == 4096
    assert client.info("plain")["page_size"] == 4096
    # bridgectl shows it.
    out = run_ctl(daemon, "info", "plain", check=True).stdout
    assert "page size" in out and "4.0 KiB" in out
    client.destroy("plain")
    client.destroy("asked")


def start_failure(*args, wrapper=()):
    proc = subprocess.run([*wrapper, binary("bridged"), *args], capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, proc.stderr


def test_bridged_refuses_a_huge_dir_without_huge_pages(tmp_path):
    sock = str(tmp_path / "b.sock")
    plain = tmp_path / "plain"
    plain.mkdir()
    # /tmp here is a disk or a tmpfs without huge=: refused either way.
    code, err = start_failure("--socket", sock, "--huge-dir", str(plain))
    assert code != 0 and "--huge-dir" in err and "huge=" in err, err
    code, err = start_failure("--socket", sock, "--huge-dir", str(tmp_path / "missing"))
    assert code != 0 and "--huge-dir" in err, err
    code, err = start_failure("--socket", sock, "--huge-pages", "always")
    assert code != 0 and "--huge-dir" in err, err
    assert not os.path.exists(sock), "a refused daemon left a socket"


def test_bridged_refuses_a_tmpfs_mounted_without_huge(tmp_path):
    if huge_tmpfs_unavailable():
        skip_or_fail(huge_tmpfs_unavailable())
    for options in ("size=16M", "huge=never,size=16M", "huge=advise,size=16M"):
        ns = HugeNamespace(tmp_path / "t", options)
        try:
            code, err = start_failure("--socket", str(tmp_path / "b.sock"), "--huge-dir",
                                      str(ns.path), wrapper=ns.wrapper)
        finally:
            ns.close()
        assert code != 0 and "tmpfs mounted" in err, (options, err)


def test_restart_re_adopts_a_huge_segment(huge_ns, tmp_path):
    args = ("--huge-dir", str(huge_ns.path))
    first = Daemon(tmp_path, *args, ephemeral=False, wrapper=huge_ns.wrapper)
    try:
        with pybridge.connect(first.socket) as c:
            seg = c.create("kept", (3 * MiB,), "uint8", meta={"k": 1}, huge_pages=True)
            seg.array[...] = 0x5A
            version = seg.mark_changed()
            seg.close()
    finally:
        first.stop(signal.SIGKILL)
    assert huge_ns.files() == [obj(first, "kept")]
    second = Daemon(tmp_path, *args, wrapper=huge_ns.wrapper)
    try:
        with pybridge.connect(second.socket) as c:
            info = c.info("kept")
            assert info["page_size"] == HUGE and info["meta"] == {"k": 1}
            seg = c.attach("kept")
            assert (seg.array == 0x5A).all()
            assert seg.version == version
            seg.close()
            c.destroy("kept")
            assert huge_ns.files() == []
    finally:
        checked_stop(second)


def test_restart_without_the_huge_dir_does_not_touch_it(huge_ns, tmp_path):
    first = Daemon(tmp_path, "--huge-dir", str(huge_ns.path), ephemeral=False,
                   wrapper=huge_ns.wrapper)
    try:
        with pybridge.connect(first.socket) as c:
            c.create("kept", (HUGE,), "uint8", huge_pages=True).close()
    finally:
        first.stop(signal.SIGKILL)
    # A daemon without --huge-dir neither sees nor removes it (--ephemeral
    # removes only what it knows).
    second = Daemon(tmp_path, wrapper=huge_ns.wrapper)
    try:
        with pybridge.connect(second.socket) as c:
            assert c.list() == []
    finally:
        checked_stop(second)
    assert huge_ns.files() == [obj(first, "kept")]
    third = Daemon(tmp_path, "--huge-dir", str(huge_ns.path), wrapper=huge_ns.wrapper)
    try:
        with pybridge.connect(third.socket) as c:
            assert [s["name"] for s in c.list()] == ["kept"]
    finally:
        checked_stop(third)
    assert huge_ns.files() == []  # --ephemeral removed it


def test_full_huge_tmpfs_is_no_space_and_never_sigbus(huge_daemon, huge_ns):
    c = pybridge.connect(huge_daemon.socket)
    with pytest.raises(pybridge.NoSpace):
        c.create("toobig", (TMPFS_BYTES + MiB,), "uint8", huge_pages=True)
    assert huge_ns.files() == [] and huge_ns.used_bytes() == 0
    segs = []
    # Fill: each 6 MiB segment takes 8 MiB of whole huge pages (its header
    # and metadata share the first), so the 32 MiB tmpfs holds four and
    # refuses a fifth (or fits part of it in 4 KiB pages: shmem falls back).
    while True:
        try:
            segs.append(c.create(f"fill-{len(segs)}", (6 * MiB,), "uint8", huge_pages=True))
        except pybridge.NoSpace:
            break
        assert len(segs) <= TMPFS_BYTES // (6 * MiB), "more was created than fits"
    assert len(segs) >= 2
    assert len(huge_ns.files()) == len(segs)  # the refused one left nothing
    # Every page of what was created can be written: reserved, no SIGBUS.
    names = [s.name for s in segs]
    out = finish(popen_child("""
        import sys, pybridge
        c = pybridge.connect(sys.argv[1])
        for name in sys.argv[2:]:
            seg = c.attach(name)
            seg.array[...] = 0xA5
            assert (seg.array == 0xA5).all()
        print("ok", flush=True)
    """, huge_daemon, *names))
    assert out.strip() == "ok"
    for s in segs:
        s.close()
    for name in names:
        c.destroy(name)
    assert huge_ns.files() == []
    c.close()


def test_bridgectl_shows_page_size(huge_daemon):
    with pybridge.connect(huge_daemon.socket) as c:
        c.create("big", (HUGE,), "uint8", huge_pages=True).close()
        c.create("small", (16,), "uint8").close()
    out = run_ctl(huge_daemon, "info", "big", check=True).stdout
    assert "page size" in out and "2.0 MiB (huge)" in out, out
    doc = json.loads(run_ctl(huge_daemon, "info", "big", "--json", check=True).stdout)
    assert doc["page_size"] == HUGE
    rows = run_ctl(huge_daemon, "ls", check=True).stdout.splitlines()
    pages = {r.split()[0]: r.split()[-4] for r in rows[1:]}
    assert pages == {"big": "2M", "small": "4K"}
    listed = {s["name"]: s["page_size"]
              for s in json.loads(run_ctl(huge_daemon, "ls", "--json", check=True).stdout)}
    assert listed == {"big": HUGE, "small": 4096}


# ---- --pool: faulted huge pages kept ready ------------------------------------------

def pool_objects(ns):
    """The pool's ready objects in the huge dir (pool-N: whole and faulted)."""
    return [f for f in ns.files() if ".creating.pool-" in f]


def test_the_pool_keeps_memory_ready_and_big_creates_draw_from_it(huge_ns, tmp_path):
    d = Daemon(tmp_path, "--huge-dir", str(huge_ns.path), "--pool", "8M",
               wrapper=huge_ns.wrapper)
    try:
        assert wait_for(lambda: len(pool_objects(huge_ns)) == 1), d.log()
        [ready] = pool_objects(huge_ns)
        # Room for an 8 MiB array: its header pages round it up to one more huge page.
        assert (huge_ns.view() / ready).stat().st_size == 10 * MiB
        with pybridge.connect(d.socket) as c:
            # A quarter of the pool or less is not worth it: built as usual.
            with c.create("small", (MiB,), "uint8", huge_pages=True) as small:
                assert small.page_size == HUGE
            assert pool_objects(huge_ns) == [ready]
            # More than a quarter: the pool's object, trimmed and renamed.
            seg = c.create("big", (5 * MiB,), "uint8", huge_pages=True)
            assert ready not in huge_ns.files()
            info = c.info("big")
            assert (huge_ns.view() / obj(d, "big")).stat().st_size == info["total_bytes"]
            assert seg.page_size == HUGE and not seg.array.any()  # zero-filled as any create
            seg.array[:] = 7
            with c.attach("big") as again:
                assert again.array[::HUGE].tolist() == [7] * (5 * MiB // HUGE + 1)
            seg.close()
            # The next one is built in the background.
            assert wait_for(lambda: len(pool_objects(huge_ns)) == 1), d.log()
            assert pool_objects(huge_ns) != [ready]
            c.destroy("big")
            c.destroy("small")
    finally:
        checked_stop(d)
    assert huge_ns.files() == [], "the pool's object outlived the daemon"


def test_the_pool_is_rebuilt_with_idle_cpu_only(tmp_path):
    # Rebuilding zeroes the pool's pages right after a create took it, when
    # its creator fills the segment on every core it may use: the build runs
    # at SCHED_IDLE and must not progress while the CPUs are busy.
    reason = huge_tmpfs_unavailable()
    if reason:
        skip_or_fail(reason)
    ns = HugeNamespace(tmp_path / "huge", "huge=always,size=1200M")
    d = Daemon(tmp_path, "--huge-dir", str(ns.path), "--pool", "512M", wrapper=ns.wrapper)
    spinners = []
    try:
        assert wait_for(lambda: len(pool_objects(ns)) == 1), d.log()
        # One busy process per CPU this test (and the daemon) may use.
        for _ in os.sched_getaffinity(0):
            spinners.append(subprocess.Popen(
                [sys.executable, "-c", "print('spinning', flush=True)\nwhile True: pass"],
                stdout=subprocess.PIPE, text=True))
        for spinner in spinners:
            assert spinner.stdout.readline().strip() == "spinning"
        with pybridge.connect(d.socket) as c:
            c.create("big", (200 * MiB,), "uint8", huge_pages=True).close()
            assert pool_objects(ns) == []  # taken
            # At normal priority the next 512 MiB would be built (zeroed) in
            # well under this; at SCHED_IDLE it gets ~0.3% of a CPU.
            time.sleep(2.0)
            assert pool_objects(ns) == [], "the pool was rebuilt against busy CPUs"
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
            spinners.clear()
            assert wait_for(lambda: len(pool_objects(ns)) == 1), d.log()
            c.destroy("big")
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        checked_stop(d)
        ns.close()


def test_a_crashed_daemons_pool_is_removed_at_restart(huge_ns, tmp_path):
    args = ("--huge-dir", str(huge_ns.path), "--pool", "4M")
    d = Daemon(tmp_path, *args, ephemeral=False, wrapper=huge_ns.wrapper)
    assert wait_for(lambda: len(pool_objects(huge_ns)) == 1), d.log()
    [ready] = pool_objects(huge_ns)
    inode = (huge_ns.view() / ready).stat().st_ino
    d.stop(signal.SIGKILL)
    assert pool_objects(huge_ns) == [ready]  # left behind by the crash
    d = Daemon(tmp_path, *args, ephemeral=False, wrapper=huge_ns.wrapper)
    try:
        assert "left by a create that did not complete" in wait_log(d, "did not complete")
        assert wait_for(lambda: len(pool_objects(huge_ns)) == 1), d.log()
        [now] = pool_objects(huge_ns)
        assert (huge_ns.view() / now).stat().st_ino != inode
    finally:
        checked_stop(d)
    assert huge_ns.files() == []


def wait_log(d, text):
    wait_for(lambda: text in d.log())
    return d.log()


def test_a_pool_needs_a_huge_dir(tmp_path):
    proc = subprocess.run([binary("bridged"), "--socket", str(tmp_path / "s"), "--pool", "8M"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "--pool needs --huge-dir" in proc.stderr
