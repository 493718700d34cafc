# SPDX-License-Identifier: MIT
"""Access control with real second users.

The daemon runs as shmbridge-alice (umask 0, so every mode checked is one the
daemon chose); clients run as alice or shmbridge-bob in forked children that
dropped to that user (acl_helpers.Remote), or as root in this process. Only
alice is in shmbridge-users; `users.bob_member` is bob's process carrying
that group too, as if he had been added to it, which is what lets him reach
a daemon started with --group. Needs root (skips otherwise, fails in CI).
"""
import json
import os
import re
import shutil
import signal
import stat
import threading
import time

import pytest

import pybridge
from conftest import TIME_SCALE
from acl_helpers import (GROUP, Remote, UserDaemon, bridgectl_as, close_all_remotes,
                         collect_events, ctl_json, ensure_accounts, make_socket_home, mode_of,
                         op_attach, op_client, op_commit, op_connect, op_create, op_error,
                         op_escalate, op_events_collect, op_events_open, op_listdir, op_lock,
                         op_open, op_poke, op_protocols, op_rewrite_owner, op_snapshot, op_state,
                         op_try_lock, op_unlock, op_values, op_wait, op_whoami, op_write)
from mut_helpers import wait_until_blocked_in_futex

EXIT_PERMISSION_DENIED = 14


@pytest.fixture(scope="session")
def users():
    return ensure_accounts()


@pytest.fixture(autouse=True)
def _children_end():
    yield
    close_all_remotes()


@pytest.fixture
def socket_home(users):
    base = make_socket_home(users.alice)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def start(users, socket_home, tmp_path):
    """start(*args, ephemeral=True): bridged as alice on one socket under
    socket_home; stopped (and checked) at the end of the test."""
    daemons = []

    def start_daemon(*args, ephemeral=True):
        d = UserDaemon(users.alice, socket_home / "run" / "bridged.sock",
                       tmp_path / "bridged.log", *args, ephemeral=ephemeral)
        daemons.append(d)
        return d

    yield start_daemon
    close_all_remotes()  # clients gone before their daemon
    # All stopped before any is checked: a daemon still running on the same
    # socket would own the slot table an earlier one is checked for.
    codes = [None if d.stopped else d.stop() for d in daemons]  # one the test stopped, it checked
    for d, code in zip(daemons, codes):
        left = d.leftover_shm()
        d.remove_leftovers()
        assert code in (None, 0), f"bridged exited with {code}:\n{d.log()}"
        assert left == [], "segments left in /dev/shm"


@pytest.fixture
def daemon(start):
    """bridged as alice, admitting the group shmbridge-users."""
    return start("--group", GROUP)


# ---- who may connect -----------------------------------------------------------

def test_children_really_are_the_other_users(users):
    bob = Remote(users.bob_member)
    uid, gid, groups = bob.call(op_whoami)
    assert (uid, gid) == (users.bob.uid, users.bob.gid)
    assert users.group in groups and 0 not in groups
    assert Remote(users.bob).call(op_whoami)[2] == list(users.bob.groups)


def test_socket_is_private_by_default(users, start):
    d = start()
    run_dir = os.path.dirname(d.socket)
    # Created by the daemon (umask 0 notwithstanding): 0700, the socket 0600.
    assert mode_of(run_dir) == (0o700, users.alice.uid, users.alice.gid)
    assert stat.S_ISSOCK(os.stat(d.socket).st_mode)
    assert mode_of(d.socket)[:2] == (0o600, users.alice.uid)

    assert Remote(users.alice).call(op_connect, d.socket) == d.proc.pid
    for who in (users.bob, users.bob_member):  # the group means nothing without --group
        bob = Remote(who)
        assert bob.outcome(op_connect, d.socket) == "PermissionDenied"
        assert bob.outcome(op_listdir, run_dir) == "PermissionError(EACCES)"
    with pybridge.connect(d.socket) as root:
        assert root.stats()["pid"] == d.proc.pid


def test_group_members_may_connect(users, daemon):
    run_dir = os.path.dirname(daemon.socket)
    assert mode_of(run_dir) == (0o750, users.alice.uid, users.group)
    assert mode_of(daemon.socket) == (0o660, users.alice.uid, users.group)

    outsider = Remote(users.bob)
    assert outsider.outcome(op_connect, daemon.socket) == "PermissionDenied"
    assert Remote(users.bob_member).call(op_connect, daemon.socket) == daemon.proc.pid
    assert Remote(users.alice).call(op_connect, daemon.socket) == daemon.proc.pid
    with pybridge.connect(daemon.socket) as root:
        assert root.stats()["pid"] == daemon.proc.pid
    # Outsiders are refused by the kernel, before the daemon sees them.
    assert bridgectl_as(users.bob, daemon.socket, "ls").returncode == EXIT_PERMISSION_DENIED


# ---- owners, and users without a grant -------------------------------------------

def test_creator_owns_the_segment_and_others_cannot_reach_it(users, daemon):
    alice = Remote(users.alice, daemon.socket)
    info = alice.call(op_create, "private", (4,), "int32", [1, 2, 3, 4])
    assert info["owner_uid"] == users.alice.uid and info["grants"] == []
    path = daemon.shm_path("private")
    # The shm object belongs to the daemon's user, and only to it.
    assert mode_of(path)[:2] == (0o600, users.alice.uid)

    bob = Remote(users.bob_member, daemon.socket)
    assert bob.outcome(op_attach, "private") == "PermissionDenied"
    for method, args in [("info", ()), ("set_meta", ({"x": 1},)), ("destroy", ()),
                         ("grant", (users.bob.uid, "read")), ("grant", (users.bob.uid, "write"))]:
        assert bob.outcome(op_client, method, "private", *args) == "PermissionDenied", method
    # Nor around the daemon: the object itself, or the daemon's descriptors.
    assert bob.outcome(op_open, path, os.O_RDONLY) == "PermissionError(EACCES)"
    assert bob.outcome(op_open, path, os.O_RDWR) == "PermissionError(EACCES)"
    assert bob.outcome(op_listdir, f"/proc/{daemon.proc.pid}/fd") == "PermissionError(EACCES)"

    # Untouched by all that.
    with pybridge.connect(daemon.socket) as root:
        info = root.info("private")
        assert info["owner_uid"] == users.alice.uid and info["grants"] == []
        assert info["meta"] == {}
        assert root.attach("private").array.tolist() == [1, 2, 3, 4]


def test_owner_is_the_creating_user_not_the_daemons(users, daemon):
    bob = Remote(users.bob_member, daemon.socket)
    assert bob.call(op_create, "bobs", (2,), "uint8", [7, 8])["owner_uid"] == users.bob.uid
    # Owning the segment does not let bob open its shm object (the daemon's).
    assert mode_of(daemon.shm_path("bobs"))[:2] == (0o600, users.alice.uid)
    assert bob.outcome(op_open, daemon.shm_path("bobs"), os.O_RDONLY) == "PermissionError(EACCES)"
    # The owner may grant; so may the daemon's user and root.
    assert bob.client("grant", "bobs", 4242, "read")["grants"] == [{"uid": 4242, "access": "read"}]
    alice = Remote(users.alice, daemon.socket)
    assert alice.call(op_attach, "bobs")["writable"] is True
    alice.client("grant", "bobs", 4243, "write")
    with pybridge.connect(daemon.socket) as root:
        root.grant("bobs", 4242, "none")
        assert root.info("bobs")["grants"] == [{"uid": 4243, "access": "write"}]
        assert root.info("bobs")["owner_uid"] == users.bob.uid
    bob.client("destroy", "bobs")
    assert not os.path.exists(daemon.shm_path("bobs"))


def test_refusals_are_logged(users, daemon):
    Remote(users.alice, daemon.socket).call(op_create, "logged", (1,), "uint8")
    bob = Remote(users.bob_member, daemon.socket)
    assert bob.outcome(op_client, "destroy", "logged") == "PermissionDenied"
    assert bob.outcome(op_client, "set_meta", "logged", {"evil": True}) == "PermissionDenied"
    expected = [rf"refused: uid {users.bob.uid} \(pid {bob.pid}\) may not destroy 'logged'",
                rf"refused: uid {users.bob.uid} \(pid {bob.pid}\) may not set the metadata of "
                r"'logged'"]
    deadline = time.monotonic() + 5
    while not all(re.search(e, daemon.log()) for e in expected) and time.monotonic() < deadline:
        time.sleep(0.02)
    for e in expected:
        assert re.search(e, daemon.log()), f"{e!r} not in the log:\n{daemon.log()}"


def test_modes_ignore_a_zero_umask(users, daemon):
    """Every file the daemon makes is 0600 (its socket 0660 with --group),
    though it runs with umask 0."""
    Remote(users.alice, daemon.socket).call(op_create, "by-alice", (8,), "float32")
    Remote(users.bob_member, daemon.socket).call(op_create, "by-bob", (8,), "float32")
    with pybridge.connect(daemon.socket) as root:
        root.create("by-root", (8,), "float32").close()
        root.grant("by-root", users.bob.uid, "read")  # writes the grants file
    for name in ("by-alice", "by-bob", "by-root"):
        assert mode_of(daemon.shm_path(name))[:2] == (0o600, users.alice.uid), name
    for suffix in (".grants", ".lock"):
        assert mode_of(daemon.socket + suffix)[:2] == (0o600, users.alice.uid), suffix
    assert mode_of(daemon.socket)[0] == 0o660
    assert not [p for p in os.listdir(os.path.dirname(daemon.socket)) if p.endswith(".tmp")]


def test_permission_denied_is_a_permission_error(users, daemon):
    """A refusal, by the daemon (attach) and by libbridge (a write on a
    read-only mapping): PermissionDenied, also a PermissionError, str() the
    message, .code set; pickling (as multiprocessing does) keeps all that."""
    alice = Remote(users.alice, daemon.socket)
    alice.call(op_create, "private", (2,), "uint8")
    alice.call(op_create, "readable", (2,), "uint8")
    alice.client("grant", "readable", users.bob.uid, "read")
    bob = Remote(users.bob_member, daemon.socket)
    bob.call(op_attach, "readable")
    for fn, args in [(op_attach, ("private",)), (op_try_lock, ("readable", 0.1))]:
        seen = bob.call(op_error, fn, *args)
        assert seen["type"] == "PermissionDenied" and seen["code"] == "permission_denied", seen
        assert seen["bases"] == ["OSError", "PermissionError"], seen
        assert seen["str"] == seen["message"] == seen["args"][0] and seen["str"], seen
        assert seen["pickled"] == ("PermissionDenied", "permission_denied", seen["str"]), seen
    assert "private" in bob.call(op_error, op_attach, "private")["str"]
    # And the exception itself, pickled through the pipe from bob's child.
    with pytest.raises(PermissionError) as err:
        bob.call(op_attach, "private")
    assert type(err.value) is pybridge.PermissionDenied
    assert err.value.code == "permission_denied" and "private" in str(err.value)


# ---- what others see: list, events, stats ------------------------------------------

def names(listed):
    return sorted(entry["name"] for entry in listed)


def test_list_shows_others_only_what_they_may_attach(users, daemon):
    alice = Remote(users.alice, daemon.socket)
    alice.call(op_create, "alices", (1,), "uint8")
    alice.call(op_create, "shared", (1,), "uint8")
    bob = Remote(users.bob_member, daemon.socket)
    bob.call(op_create, "bobs", (1,), "uint8")
    with pybridge.connect(daemon.socket) as root:
        root.create("roots", (1,), "uint8").close()
        root.create("writable", (1,), "uint8").close()
        root.grant("writable", users.bob.uid, "write")
    everything = ["alices", "bobs", "roots", "shared", "writable"]

    # Before alice's grant: bob's own and root's write grant, nothing else.
    assert names(bob.client("list")) == ["bobs", "writable"]
    alice.client("grant", "shared", users.bob.uid, "read")
    assert names(bob.client("list")) == ["bobs", "shared", "writable"]
    proc = bridgectl_as(users.bob_member, daemon.socket, "ls", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = ctl_json(proc)
    listed = listed["segments"] if isinstance(listed, dict) else listed
    assert names(listed) == ["bobs", "shared", "writable"]
    # The daemon's user and root see every segment.
    assert names(alice.client("list")) == everything
    with pybridge.connect(daemon.socket) as root:
        assert names(root.list()) == everything
    # A revoked grant hides the segment again.
    alice.client("grant", "shared", users.bob.uid, "none")
    assert names(bob.client("list")) == ["bobs", "writable"]
    assert bob.outcome(op_client, "info", "alices") == "PermissionDenied"


def test_events_reach_only_users_who_may_attach(users, daemon):
    bob = Remote(users.bob_member, daemon.socket)
    bob.call(op_events_open)  # every segment bob may attach
    alice = Remote(users.alice, daemon.socket)
    with pybridge.connect(daemon.socket) as root, root.events() as everything:
        alice.call(op_create, "granted", (2,), "int32")
        alice.call(op_create, "private", (2,), "int32")
        alice.client("grant", "granted", users.bob.uid, "read")

        # After the grant both change; bob hears only the segment granted to him.
        alice.call(op_write, "private", [1, 2])
        alice.client("set_meta", "private", {"n": 1})
        alice.call(op_write, "granted", [3, 4])
        first = bob.call(op_events_collect, ("committed", "granted"), 0.2, timeout=60)
        alice.client("set_meta", "granted", {"n": 2})
        alice.client("destroy", "private")
        alice.client("destroy", "granted")
        bob.call(op_create, "bobs-end", (1,), "uint8")  # bob's own: the last he hears of
        rest = bob.call(op_events_collect, ("created", "bobs-end"), 0.5, timeout=60)
        seen = [(e["event"], e["name"]) for e in first + rest]
        assert {name for _, name in seen} == {"granted", "bobs-end"}, seen
        for expected in [("committed", "granted"), ("meta_changed", "granted"),
                         ("destroyed", "granted"), ("created", "bobs-end")]:
            assert expected in seen, (expected, seen)
        assert ("created", "granted") not in seen  # created before bob could attach it

        # The daemon did publish the other segment's events: root heard them.
        heard = [(e["event"], e["name"])
                 for e in collect_events(everything, ("created", "bobs-end"), 0.2)]
        for expected in [("created", "private"), ("meta_changed", "private"),
                         ("destroyed", "private"), ("created", "granted")]:
            assert expected in heard, (expected, heard)


def test_stats_name_quarantined_segments_only_to_the_privileged(users, daemon):
    with pybridge.connect(daemon.socket) as root:
        root.create("victim", (4,), "int32").close()
        with open(daemon.shm_path("victim"), "r+b") as f:
            f.write(b"NOTMAGIC")  # the header's magic number
        with pytest.raises(pybridge.CorruptSegment):
            root.attach("victim")  # the daemon re-validates and quarantines it
        stats = root.stats()
        assert stats["quarantined_count"] == 1 and names(stats["quarantined"]) == ["victim"]

        alice = Remote(users.alice, daemon.socket)  # the daemon's user
        stats = alice.client("stats")
        assert stats["quarantined_count"] == 1 and names(stats["quarantined"]) == ["victim"]
        bob = Remote(users.bob_member, daemon.socket)
        stats = bob.client("stats")
        assert stats["quarantined_count"] == 1 and stats["quarantined"] == [], stats
        proc = bridgectl_as(users.bob_member, daemon.socket, "stats", "--json")
        assert proc.returncode == 0, proc.stderr
        assert "victim" not in proc.stdout
        assert ctl_json(proc)["quarantined_count"] == 1
        assert bob.outcome(op_client, "destroy", "victim") == "PermissionDenied"

        root.destroy("victim")  # as the daemon's user (or root) may
        assert root.stats()["quarantined_count"] == 0
    assert bob.client("stats")["quarantined_count"] == 0


# ---- read grants -------------------------------------------------------------------

def test_a_read_grant_gives_non_writable_arrays(users, daemon):
    # np.asarray(seg) aliases a read-only mapping read-only; np.array copies.
    alice = Remote(users.alice, daemon.socket)
    alice.call(op_create, "ro", (3,), "uint8", [1, 2, 3])
    alice.client("grant", "ro", users.bob.name, "read")
    bob = Remote(users.bob_member, daemon.socket)
    bob.call(op_attach, "ro")
    assert bob.call(op_protocols, "ro") == {"alias_writeable": False, "alias_shares": True,
                                            "copy_writeable": True, "values": [1, 2, 3]}


def test_read_grant(users, daemon):
    alice = Remote(users.alice, daemon.socket)
    alice.call(op_create, "shared", (4,), "int32", [1, 2, 3, 4])
    info = alice.client("grant", "shared", users.bob.name, "read")
    assert info["grants"] == [{"uid": users.bob.uid, "access": "read"}]
    assert info["owner_uid"] == users.alice.uid

    bob = Remote(users.bob_member, daemon.socket)
    attached = bob.call(op_attach, "shared")
    assert attached["values"] == [1, 2, 3, 4]
    assert attached["writable"] is False and attached["array_writeable"] is False
    # Reading works: info, snapshots.
    assert bob.client("info", "shared")["grants"] == info["grants"]
    assert bob.call(op_snapshot, "shared") == [1, 2, 3, 4]
    # Writing, committing, and everything an owner does, do not.
    for fn, args in [(op_write, ([0, 0, 0, 0],)), (op_commit, ()), (op_try_lock, (0.1,))]:
        assert bob.outcome(fn, "shared", *args) == "PermissionDenied", fn.__name__
    for method, args in [("set_meta", ({"by": "bob"},)), ("destroy", ()),
                         ("grant", (users.bob.uid, "write")), ("grant", (4242, "read")),
                         ("grant", (users.bob.uid, "none"))]:
        assert bob.outcome(op_client, method, "shared", *args) == "PermissionDenied", method
    # Nor can the mapping be made writable behind numpy's back.
    escalated = bob.call(op_escalate, "shared")
    assert escalated["numpy"] == "refused"
    assert escalated["mprotect"] == "EACCES"
    assert escalated["proc_self_mem"] in ("EIO", "EFAULT")  # opened, but the write refused
    assert escalated["values"] == [1, 2, 3, 4]

    # A read-only waiter is woken by the owner's commit.
    version = attached["version"]
    bob.start(op_wait, "shared", version, 10.0)
    wait_until_blocked_in_futex(bob.pid)
    committed, commit_time = alice.call(op_write, "shared", [5, 6, 7, 8])
    woken, wake_time, seen = bob.finish(timeout=15)
    assert committed > version and woken == committed and seen == [5, 6, 7, 8]
    assert wake_time - commit_time < 1.0 * TIME_SCALE

    # A raw store through the read-only mapping kills bob's process only.
    crasher = Remote(users.bob_member, daemon.socket)
    crasher.call(op_attach, "shared")
    crasher.start(op_poke, "shared")
    assert crasher.exit_status() == -signal.SIGSEGV
    assert alice.call(op_values, "shared") == [5, 6, 7, 8]
    assert alice.call(op_write, "shared", [9, 10, 11, 12])[0] == committed + 1
    assert bob.call(op_values, "shared") == [9, 10, 11, 12]
    assert daemon.proc.poll() is None
    with pybridge.connect(daemon.socket) as root:
        assert root.info("shared")["version"] == committed + 1

    # Revoking stops new attaches; the mapping bob holds keeps working.
    assert alice.client("grant", "shared", users.bob.uid, "none")["grants"] == []
    assert bob.outcome(op_attach, "shared") == "PermissionDenied"
    assert bob.outcome(op_client, "info", "shared") == "PermissionDenied"
    assert Remote(users.bob_member, daemon.socket).outcome(op_attach, "shared") == \
        "PermissionDenied"
    assert bob.call(op_values, "shared") == [9, 10, 11, 12]


# ---- write grants ------------------------------------------------------------------

def test_a_downgrade_is_seen_by_a_cached_attach(users, daemon):
    alice = Remote(users.alice, daemon.socket)
    alice.call(op_create, "d", (2,), "uint8", [1, 2])
    alice.client("grant", "d", users.bob.name, "write")
    bob = Remote(users.bob_member, daemon.socket)
    assert bob.call(op_attach, "d")["writable"] is True  # cached in bob's client now
    alice.client("grant", "d", users.bob.uid, "read")
    # The same name again: the slot's access epoch moved, so bob's client
    # asks the daemon and gets what the grant now says.
    again = bob.call(op_attach, "d")
    assert again["writable"] is False and again["array_writeable"] is False
    assert again["values"] == [1, 2]
    alice.client("grant", "d", users.bob.uid, "write")
    assert bob.call(op_attach, "d")["writable"] is True


def test_write_grant(users, daemon):
    alice = Remote(users.alice, daemon.socket)
    alice.call(op_create, "rw", (4,), "int32", [1, 2, 3, 4])
    assert alice.client("grant", "rw", users.bob.uid, "write")["grants"] == \
        [{"uid": users.bob.uid, "access": "write"}]

    bob = Remote(users.bob_member, daemon.socket)
    attached = bob.call(op_attach, "rw")
    assert attached["writable"] is True and attached["array_writeable"] is True
    # The writer lock is one lock for both users.
    bob.call(op_lock, "rw")
    assert alice.outcome(op_try_lock, "rw", 0.2) == "Timeout"
    version = bob.call(op_unlock, "rw", [9, 8, 7, 6])
    state = alice.call(op_state, "rw")
    assert state["values"] == [9, 8, 7, 6] and state["version"] == version
    assert state["last_writer_pid"] == bob.pid
    assert alice.call(op_write, "rw", [0, 0, 0, 1])[0] == version + 1
    assert bob.call(op_values, "rw") == [0, 0, 0, 1]

    assert bob.client("set_meta", "rw", {"by": "bob"})["meta"] == {"by": "bob"}
    assert alice.call(op_state, "rw")["meta"] == {"by": "bob"}
    # Writing is not owning: bob grants nothing, to himself or anyone.
    for args in [(users.bob.uid, "write"), (users.bob.uid, "read"), (4242, "read"),
                 (users.bob.uid, "none")]:
        assert bob.outcome(op_client, "grant", "rw", *args) == "PermissionDenied", args
    assert alice.client("info", "rw")["grants"] == [{"uid": users.bob.uid, "access": "write"}]

    bob.client("destroy", "rw")
    assert not os.path.exists(daemon.shm_path("rw"))
    with pybridge.connect(daemon.socket) as root:
        assert root.list() == []
    assert alice.call(op_values, "rw") == [0, 0, 0, 1]  # mappings outlive the name


# ---- restarts --------------------------------------------------------------------

def test_grants_survive_a_restart(users, start):
    first = start("--group", GROUP, ephemeral=False)
    alice = Remote(users.alice, first.socket)
    alice.call(op_create, "kept", (3,), "int16", [1, 2, 3])
    alice.call(op_create, "revoked", (3,), "int16")
    alice.client("grant", "kept", users.bob.uid, "read")
    alice.client("grant", "revoked", users.bob.uid, "write")
    alice.client("grant", "revoked", users.bob.uid, "none")
    alice.client("grant", "revoked", 4242, "write")
    grants_file = first.socket + ".grants"
    assert mode_of(grants_file)[:2] == (0o600, users.alice.uid)
    alice.close()

    first.stop(signal.SIGKILL)
    second = start("--group", GROUP, ephemeral=False)
    assert second.socket == first.socket and second.shm_prefix == first.shm_prefix
    with pybridge.connect(second.socket) as root:
        kept, revoked = root.info("kept"), root.info("revoked")
    assert kept["owner_uid"] == users.alice.uid and revoked["owner_uid"] == users.alice.uid
    assert kept["grants"] == [{"uid": users.bob.uid, "access": "read"}]
    assert revoked["grants"] == [{"uid": 4242, "access": "write"}]

    bob = Remote(users.bob_member, second.socket)
    attached = bob.call(op_attach, "kept")
    assert attached["values"] == [1, 2, 3] and attached["writable"] is False
    assert bob.outcome(op_attach, "revoked") == "PermissionDenied"
    assert bob.outcome(op_client, "grant", "kept", users.bob.uid, "write") == \
        "PermissionDenied"
    bob.close()

    with pybridge.connect(second.socket) as root:
        root.destroy("kept")
        root.destroy("revoked")
    assert second.stop() == 0
    assert second.leftover_shm() == []


def test_a_write_grant_does_not_become_ownership_across_a_restart(users, start):
    first = start("--group", GROUP, ephemeral=False)
    with pybridge.connect(first.socket) as root:
        root.create("target", (4,), "uint8").close()
        root.grant("target", users.bob.uid, "write")
    bob = Remote(users.bob_member, first.socket)
    bob.call(op_attach, "target")
    bob.call(op_rewrite_owner, "target", users.bob.uid)
    bob.close()
    first.stop(signal.SIGKILL)
    second = start("--group", GROUP, ephemeral=False)
    try:
        with pybridge.connect(second.socket) as root:
            assert root.info("target")["owner_uid"] == 0
        bob = Remote(users.bob_member, second.socket)
        assert bob.outcome(op_client, "grant", "target", 4242, "write") == \
            "PermissionDenied"
    finally:
        with pybridge.connect(second.socket) as root:
            root.destroy("target")


def op_race_open(s, path, seconds):
    """Tries to open `path` for writing until it succeeds or `seconds` pass;
    returns the file's mode when it did."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError:
            continue
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        return oct(mode)
    return None


def test_others_cannot_open_the_grants_file_for_writing(users, daemon):
    bob = Remote(users.bob_member, daemon.socket)  # forked before the thread below
    with pybridge.connect(daemon.socket) as root:
        root.create("granted", (1,), "uint8").close()
    stop = threading.Event()

    def keep_granting():
        with pybridge.connect(daemon.socket) as root:
            for i in range(1_000_000):
                if stop.is_set():
                    break
                root.grant("granted", 4242, ("read", "write")[i % 2])

    thread = threading.Thread(target=keep_granting)
    thread.start()
    try:
        opened = bob.call(op_race_open, daemon.socket + ".grants.tmp", 10.0, timeout=20)
    finally:
        stop.set()
        thread.join()
    with pybridge.connect(daemon.socket) as root:
        root.destroy("granted")
    assert opened is None, f"bob opened the daemon's grants file (mode {opened}) for writing"


# ---- bridgectl as other users -----------------------------------------------------

def test_bridgectl_as_other_users(users, daemon):
    alice, bob = users.alice, users.bob_member
    Remote(alice, daemon.socket).call(op_create, "cli", (3,), "int32", [4, 5, 6])

    for args in (["info", "cli"], ["show", "cli"], ["rm", "cli"],
                 ["grant", "cli", bob.name, "read"]):
        proc = bridgectl_as(bob, daemon.socket, *args, "--json")
        assert proc.returncode == EXIT_PERMISSION_DENIED, (args, proc.stderr)
        assert json.loads(proc.stdout)["error"]["code"] == "permission_denied"
        assert proc.stderr.startswith("bridgectl: permission_denied: ")

    proc = bridgectl_as(alice, daemon.socket, "grant", "cli", bob.name, "read")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        f"granted read access to cli to {bob.name} (uid {bob.uid})\n")
    granted = json.loads(bridgectl_as(alice, daemon.socket, "info", "cli", "--json").stdout)
    assert granted["grants"] == [{"uid": bob.uid, "access": "read"}]

    info = bridgectl_as(bob, daemon.socket, "info", "cli")
    assert info.returncode == 0, info.stderr
    lines = info.stdout.splitlines()
    assert re.fullmatch(rf"owner:\s+{alice.name} \(uid {alice.uid}\)",
                        next(line for line in lines if line.startswith("owner:")))
    assert re.fullmatch(rf"grants:\s+read\s+{bob.name} \(uid {bob.uid}\)",
                        next(line for line in lines if line.startswith("grants:")))
    show = bridgectl_as(bob, daemon.socket, "show", "cli")
    assert show.returncode == 0, show.stderr
    assert show.stdout.splitlines()[-1] == "[4 5 6]"
    assert bridgectl_as(bob, daemon.socket, "rm", "cli").returncode == EXIT_PERMISSION_DENIED
    assert bridgectl_as(bob, daemon.socket, "grant", "cli", "4242", "read").returncode == \
        EXIT_PERMISSION_DENIED

    proc = bridgectl_as(alice, daemon.socket, "grant", "cli", str(bob.uid), "none")
    assert proc.returncode == 0 and proc.stdout.startswith(f"revoked {bob.name} (uid {bob.uid})")
    assert bridgectl_as(bob, daemon.socket, "show", "cli").returncode == EXIT_PERMISSION_DENIED
    assert bridgectl_as(alice, daemon.socket, "rm", "cli").returncode == 0
