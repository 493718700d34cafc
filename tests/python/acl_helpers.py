# SPDX-License-Identifier: MIT
"""Helpers for the access-control tests: real users, a daemon running as one
of them, and clients running as others.

A client "as bob" is a forked copy of the test process that drops to bob's
groups, gid and uid before doing anything, then serves calls from the test:
`remote.call(op_attach, "frames")` runs `op_attach(state, "frames")` in the
child and returns its result, or raises what it raised. Every op is a
module-level function (it travels by name through the pipe); the child keeps
its pybridge client and segments in `state` between calls. Forking (not
exec) means pybridge and numpy are already imported, so the build tree's
file permissions never matter to the other user.
"""
import ctypes
import errno
import faulthandler
import grp
import json
import multiprocessing
import os
import pwd
import resource
import shutil
import signal
import stat
import subprocess
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import pytest

import pybridge
from conftest import Daemon, binary, skip_or_fail

ALICE = "shmbridge-alice"
BOB = "shmbridge-bob"
GROUP = "shmbridge-users"

_FORK = multiprocessing.get_context("fork")
_ADMIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin"


# ---- users --------------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple  # supplementary groups, as a login would set them

    def with_group(self, gid):
        """The same user with `gid` among its groups, as if added to that group."""
        return replace(self, groups=tuple(sorted(set(self.groups) | {gid})))


def _account(name):
    entry = pwd.getpwnam(name)
    return Account(name, entry.pw_uid, entry.pw_gid,
                   tuple(sorted(os.getgrouplist(name, entry.pw_gid))))


def _exists(lookup, name):
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def _admin(args, done):
    """Runs an account tool until `done()` holds (another process may be
    creating the same accounts, or holding /etc/passwd's lock)."""
    error = ""
    for _ in range(50):
        if done():
            return
        tool = shutil.which(args[0], path=_ADMIN_PATH)
        proc = subprocess.run([tool, *args[1:]], capture_output=True, text=True, timeout=60)
        if done():
            return
        error = proc.stderr.strip()
        time.sleep(0.1)
    pytest.fail(f"{' '.join(args)} failed: {error}")


def ensure_accounts():
    """Creates (once; later calls find them) the system users alice and bob
    and the group shmbridge-users, whose only member is alice. Skips (fails in
    CI) unless root with useradd, groupadd and gpasswd."""
    if os.geteuid() != 0:
        skip_or_fail("access-control tests need root: they create users and switch to them")
    missing = [t for t in ("useradd", "groupadd", "gpasswd")
               if shutil.which(t, path=_ADMIN_PATH) is None]
    if missing:
        skip_or_fail(f"access-control tests need {', '.join(missing)} to create users")
    nologin = shutil.which("nologin", path=_ADMIN_PATH) or "/bin/false"
    _admin(["groupadd", "--system", GROUP], lambda: _exists(grp.getgrnam, GROUP))
    for name in (ALICE, BOB):
        _admin(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                "--shell", nologin, name], lambda name=name: _exists(pwd.getpwnam, name))
    _admin(["gpasswd", "--add", ALICE, GROUP], lambda: ALICE in grp.getgrnam(GROUP).gr_mem)
    _admin(["gpasswd", "--delete", BOB, GROUP], lambda: BOB not in grp.getgrnam(GROUP).gr_mem)
    group = grp.getgrnam(GROUP).gr_gid
    alice, bob = _account(ALICE), _account(BOB)
    assert group in alice.groups and group not in bob.groups
    return SimpleNamespace(alice=alice, bob=bob, group=group, bob_member=bob.with_group(group))


# ---- a daemon running as another user ----------------------------------------

class UserDaemon(Daemon):
    """bridged running as `account` with umask 0 (so every mode it leaves is
    one it chose), on `socket`, logging to `log_path`."""

    def __init__(self, account, socket, log_path, *extra_args, ephemeral=True):
        self.account = account
        self.stopped = False  # by stop(), i.e. on purpose
        super().__init__(Path(socket).parent, *extra_args, ephemeral=ephemeral, socket=socket,
                         log_path=log_path,
                         popen=dict(user=account.uid, group=account.gid,
                                    extra_groups=list(account.groups), umask=0))

    def shm_path(self, name):
        return "/dev/shm/" + self.shm_prefix.lstrip("/") + name

    def remove_leftovers(self):
        """Unlinks whatever this daemon's prefix still names (a failed test's)."""
        for name in self.leftover_shm():
            try:
                os.unlink("/dev/shm/" + name)
            except FileNotFoundError:
                pass

    def stop(self, sig=signal.SIGTERM):
        self.stopped = True
        return super().stop(sig)


def make_socket_home(owner):
    """A fresh directory under /tmp that `owner` owns (0755): the daemon
    creates its socket directory inside it."""
    base = Path(os.path.realpath("/tmp")) / f"shmbridge-acl-{os.getpid()}-{time.monotonic_ns()}"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    os.chown(base, owner.uid, owner.gid)
    return base


def mode_of(path):
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


# ---- clients as other users ---------------------------------------------------

class RemoteError(AssertionError):
    """An exception from a child that could not be sent back as itself."""


def _child_main(account, conn, socket):
    os.setgroups(list(account.groups))
    os.setgid(account.gid)
    os.setuid(account.uid)
    # setuid() made the process non-dumpable; a login shell's processes are
    # dumpable (e.g. may open their own /proc/self/mem). No core files though.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
    state = SimpleNamespace(account=account, socket=socket, client=None, segs={}, guards={})
    while True:
        try:
            request = conn.recv()
        except EOFError:
            break
        if request is None:
            break
        fn, args = request
        try:
            reply = ("ok", fn(state, *args))
        except BaseException as e:  # noqa: B902 - everything goes back to the test
            reply = ("raised", e, traceback.format_exc())
        try:
            conn.send(reply)
        except Exception:  # an unpicklable exception or result
            conn.send(("raised", RemoteError(repr(reply[1])), reply[-1]))
    conn.close()


_live = []


class Remote:
    """A forked child running as `account` that serves calls (see the module
    docstring). With `socket`, its first call connects there."""

    def __init__(self, account, socket=None):
        self.account = account
        self._conn, theirs = _FORK.Pipe()
        self.proc = _FORK.Process(target=_child_main, args=(account, theirs, socket), daemon=True)
        self.proc.start()
        theirs.close()
        _live.append(self)

    @property
    def pid(self):
        return self.proc.pid

    def start(self, fn, *args):
        """Sends a call without waiting for it (see finish)."""
        self._conn.send((fn, args))

    def finish(self, timeout=10.0):
        if not self._conn.poll(timeout):
            raise AssertionError(f"{self.account.name}'s child: no reply in {timeout} s")
        try:
            kind, *rest = self._conn.recv()
        except EOFError:
            self.proc.join(5)
            raise AssertionError(f"{self.account.name}'s child died "
                                 f"(exit code {self.proc.exitcode})") from None
        if kind == "ok":
            return rest[0]
        error, text = rest
        if hasattr(error, "add_note"):
            error.add_note(f"raised in {self.account.name}'s child (pid {self.pid}):\n{text}")
        raise error

    def call(self, fn, *args, timeout=10.0):
        self.start(fn, *args)
        return self.finish(timeout)

    def outcome(self, fn, *args):
        """"ok", or the name of the exception class the call raised."""
        try:
            self.call(fn, *args)
            return "ok"
        except (pybridge.BridgeError, RemoteError) as e:
            return type(e).__name__
        except OSError as e:
            return f"{type(e).__name__}({errno.errorcode.get(e.errno, e.errno)})"

    def client(self, method, *args):
        """Client.<method>(*args) in the child (for methods that return JSON)."""
        return self.call(op_client, method, *args)

    def exit_status(self, timeout=10.0):
        """Waits for the child to end; its exit code, or -signal."""
        self.proc.join(timeout)
        if self.proc.is_alive():
            raise AssertionError(f"{self.account.name}'s child did not exit")
        return self.proc.exitcode

    def close(self):
        if self.proc.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self._conn.close()
        if self in _live:
            _live.remove(self)


def close_all_remotes():
    for remote in list(_live):
        remote.close()


# ---- ops (run in a child; `s` is its state) -------------------------------------

def _client(s):
    if s.client is None:
        s.client = pybridge.connect(s.socket)
    return s.client


def op_whoami(s):
    return os.getuid(), os.getgid(), sorted(os.getgroups())


def op_connect(s, socket):
    """Connects (a new client each time) and returns the daemon's pid."""
    with pybridge.connect(socket) as c:
        return c.stats()["pid"]


def op_client(s, method, *args):
    return getattr(_client(s), method)(*args)


def op_create(s, name, shape, dtype, values=None):
    seg = _client(s).create(name, shape, dtype)
    if values is not None:
        with seg.write() as arr:
            arr[...] = values
    s.segs[name] = seg
    return _client(s).info(name)


def op_attach(s, name):
    seg = _client(s).attach(name)
    s.segs[name] = seg
    return {"writable": seg.writable, "array_writeable": bool(seg.array.flags.writeable),
            "values": seg.array.tolist(), "version": seg.version}


def op_protocols(s, name):
    """NumPy's view of an attached segment through __array__: the alias and a copy."""
    import numpy as np

    seg = s.segs[name]
    alias, copy = np.asarray(seg), np.array(seg)
    return {"alias_writeable": alias.flags.writeable,
            "alias_shares": bool(np.shares_memory(alias, seg.array)),
            "copy_writeable": copy.flags.writeable, "values": copy.tolist()}


def op_values(s, name):
    return s.segs[name].array.tolist()


def op_state(s, name):
    seg = s.segs[name]
    return {"values": seg.array.tolist(), "version": seg.version, "meta": seg.meta,
            "last_writer_pid": seg.last_writer_pid}


def op_write(s, name, values):
    """A locked write; returns (its version, CLOCK_MONOTONIC just after)."""
    seg = s.segs[name]
    with seg.write(timeout=5) as arr:
        arr[...] = values
    return seg.version, time.monotonic()


def op_try_lock(s, name, timeout):
    with s.segs[name].write(timeout=timeout):
        pass


def op_lock(s, name):
    guard = s.segs[name].write(timeout=5)
    s.guards[name] = (guard, guard.__enter__())


def op_unlock(s, name, values):
    guard, arr = s.guards.pop(name)
    arr[...] = values
    guard.__exit__(None, None, None)
    return s.segs[name].version


def op_commit(s, name):
    return s.segs[name].mark_changed()


def op_snapshot(s, name):
    return s.segs[name].snapshot().tolist()


def op_wait(s, name, newer_than, timeout):
    """Waits for a newer version; returns (version, CLOCK_MONOTONIC at wake, values)."""
    seg = s.segs[name]
    version = seg.wait(newer_than=newer_than, timeout=timeout)
    return version, time.monotonic(), seg.array.tolist()


def op_error(s, fn, *args):
    """Runs op `fn`; what the BridgeError it raised says about itself, seen
    here in the child (before any pickling), and after a pickle round trip."""
    import pickle

    try:
        fn(s, *args)
    except pybridge.BridgeError as e:
        again = pickle.loads(pickle.dumps(e))
        return {"type": type(e).__name__, "code": e.code, "str": str(e), "message": e.message,
                "args": list(e.args),
                "bases": sorted(b.__name__ for b in (KeyError, LookupError, PermissionError,
                                                     OSError, TimeoutError, ValueError)
                                if isinstance(e, b)),
                "pickled": (type(again).__name__, again.code, str(again))}
    raise AssertionError(f"{fn.__name__}{args} raised nothing")


def op_events_open(s, name=None):
    """Subscribes (a stream of its own, kept in the child's state)."""
    s.events = _client(s).events(name)


def op_events_collect(s, until, quiet):
    """Reads events until one with (event, name) == `until`, then any that
    follow within `quiet` seconds; returns them all."""
    return collect_events(s.events, until, quiet)


def collect_events(stream, until, quiet, timeout=30.0):
    got = []
    while True:
        event = stream.next(timeout=timeout)
        got.append(event)
        if (event["event"], event["name"]) == tuple(until):
            break
    while True:
        try:
            got.append(stream.next(timeout=quiet))
        except pybridge.Timeout:
            return got


def op_open(s, path, flags):
    os.close(os.open(path, flags))


def op_listdir(s, path):
    return os.listdir(path)


def op_escalate(s, name):
    """Every way this process might turn its read-only mapping writable."""
    arr = s.segs[name].array
    result = {}
    try:
        arr.flags.writeable = True
        result["numpy"] = "writeable"
    except ValueError:
        result["numpy"] = "refused"
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = os.sysconf("SC_PAGE_SIZE")
    rc = libc.mprotect(arr.ctypes.data & ~(page - 1), page, 0x1 | 0x2)  # PROT_READ|PROT_WRITE
    result["mprotect"] = "ok" if rc == 0 else errno.errorcode[ctypes.get_errno()]
    try:
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arr.ctypes.data)
            mem.write(b"\x7f")
        result["proc_self_mem"] = "wrote"
    except OSError as e:
        result["proc_self_mem"] = errno.errorcode.get(e.errno, str(e.errno))
    result["values"] = arr.tolist()
    return result


def op_poke(s, name):
    """A raw store at the array's first byte, past numpy's read-only flag."""
    faulthandler.disable()  # die of the signal quietly
    ctypes.memset(s.segs[name].array.ctypes.data, 0x7F, 1)
    return "the store succeeded"


def op_rewrite_owner(s, name, new_owner):
    """Rewrites the header's owner_uid (and its checksum) through a writable
    mapping, as a client with write access can if it means to: libbridge maps
    the header read-only, but the descriptor allows making it writable."""
    arr = s.segs[name].array
    info = _client(s).info(name)
    base = arr.ctypes.data - (info["total_bytes"] - info["nbytes"])  # the data offset
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(base, 4096, 0x1 | 0x2) != 0:  # PROT_READ | PROT_WRITE
        raise OSError(ctypes.get_errno(), "mprotect")
    header = (ctypes.c_ubyte * CHECKSUM_OFFSET).from_address(base)
    if fnv1a64(bytes(header)) != ctypes.c_uint64.from_address(base + CHECKSUM_OFFSET).value:
        raise AssertionError("the header layout assumed here is not the segment's")
    ctypes.c_uint32.from_address(base + OWNER_UID_OFFSET).value = new_owner
    ctypes.c_uint64.from_address(base + CHECKSUM_OFFSET).value = fnv1a64(bytes(header))


# bridge::SegmentHeader (libbridge/internal/bridge/detail/layout.hpp): owner_uid and
# checksum offsets for kMaxNameBytes 128 and kMaxDims 32; op_rewrite_owner
# checks them against the stored checksum before writing anything.
OWNER_UID_OFFSET = 64
CHECKSUM_OFFSET = 72 + 136 + 2 * 32 * 8


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def bridgectl_as(account, socket, *args):
    """bridgectl run as `account` (its own process, its groups)."""
    return subprocess.run([binary("bridgectl"), "--socket", socket, *map(str, args)],
                          user=account.uid, group=account.gid, extra_groups=list(account.groups),
                          capture_output=True, text=True, timeout=60)


def ctl_json(proc):
    return json.loads(proc.stdout)
