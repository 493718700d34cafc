# SPDX-License-Identifier: MIT
"""bridgectl against a real daemon: every command, as text and as --json.

Segments are made and mutated by the C++ bridge_peer, so these tests do not
depend on pybridge beyond what the shared `daemon` fixture needs.
"""
import json
import os
import pwd
import re
import subprocess
import time

import numpy as np
import pytest

from conftest import Daemon, binary, run_ctl, run_peer

# protocol::SegmentInfo's JSON (the same fields as Python's client.list()).
INFO_KEYS = {"name", "segment_id", "dtype", "shape", "strides", "nbytes", "total_bytes",
             "version", "meta_version", "attached", "owner_uid", "created_unix_ms", "page_size",
             "grants"}
STATS_KEYS = {"pid", "daemon", "uptime_s", "segments", "bytes", "clients", "attachments",
              "requests", "shm_prefix", "refused", "quarantined", "quarantined_count"}
SHOW_KEYS = {"name", "dtype", "shape", "version", "values", "truncated"}

EXIT_INVALID_ARGUMENT = 11
EXIT_NOT_FOUND = 12
EXIT_DAEMON_UNAVAILABLE = 16
EXIT_CORRUPT_SEGMENT = 20
EXIT_LIMIT_EXCEEDED = 21
COMMANDS = ["ls", "info", "show", "rm", "stats", "grant", "doctor"]


def ctl_json(daemon, *args, expect=0):
    proc = run_ctl(daemon, *args)
    assert proc.returncode == expect, f"bridgectl {args}: rc {proc.returncode}: {proc.stderr}"
    return json.loads(proc.stdout)


def ctl_env(*args, env_socket=None):
    """bridgectl without --socket, with $BRIDGE_SOCKET set (or unset)."""
    env = dict(os.environ)
    env.pop("BRIDGE_SOCKET", None)
    if env_socket is not None:
        env["BRIDGE_SOCKET"] = env_socket
    return subprocess.run([binary("bridgectl"), *args], capture_output=True, text=True,
                          timeout=60, env=env)


def create(daemon, name, dtype, shape, meta=None):
    args = [name, dtype, ",".join(map(str, shape))]
    if meta is not None:
        args.append(json.dumps(meta))
    return json.loads(run_peer(daemon, "create", *args).stdout)


def dump(daemon, name):
    return json.loads(run_peer(daemon, "dump", name).stdout)


def as_numpy(dumped):
    """The array bridge_peer saw, rebuilt exactly (complex arrive as [re, im])."""
    values = dumped["values"]
    if dumped["dtype"].startswith("complex"):
        values = [complex(re, im) for re, im in values]
    return np.array(values, dtype=dumped["dtype"]).reshape(dumped["shape"])


def show_body(proc):
    """show's output without its header line."""
    header, _, body = proc.stdout.partition("\n")
    return header, body.rstrip("\n")


# ---- help, version, usage ---------------------------------------------------

@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_help_on_every_command(command):
    proc = subprocess.run([binary("bridgectl"), *command, "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout
    assert "Examples:" in proc.stdout
    assert "--json" in proc.stdout and "--socket" in proc.stdout


def test_help_lists_every_command_with_a_description():
    proc = subprocess.run([binary("bridgectl"), "--help"], capture_output=True, text=True,
                          timeout=60)
    lines = proc.stdout.splitlines()
    for command in COMMANDS:
        assert any(line.split()[:1] == [command] and len(line.split()) > 1 for line in lines), \
            f"{command} is not listed with a description"


def test_version():
    proc = subprocess.run([binary("bridgectl"), "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("bridgectl ")


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["info"], ["rm"], ["show", "x", "--bogus"],
                                  ["show", "x", "--edgeitems", "0"], ["grant"],
                                  ["grant", "x", "bob"], ["grant", "x", "bob", "admin"],
                                  ["grant", "x", "bob", "read", "extra"]])
def test_usage_errors(args):
    proc = subprocess.run([binary("bridgectl"), *args], capture_output=True, text=True,
                          timeout=60)
    # Usage errors exit 2, distinct from shmbridge's 10 + code.
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.strip()


def test_help_states_the_real_usage_error_status():
    """--help's exit-status paragraph names the status a usage error really exits with."""
    proc = subprocess.run([binary("bridgectl"), "--help"], capture_output=True, text=True,
                          timeout=60)
    text = " ".join(proc.stdout.split())
    stated = re.search(r"\b(\d+) on a usage error", text)
    assert stated, f"--help does not say how a usage error exits:\n{proc.stdout}"
    assert "100-127" not in text and "CLI11" not in text
    for args in (["ls", "--bogus"],           # unknown option
                 ["info"],                    # missing argument
                 ["frobnicate"]):             # unknown command
        usage = subprocess.run([binary("bridgectl"), *args], capture_output=True, text=True,
                               timeout=60)
        assert usage.returncode == int(stated.group(1)) == 2, (args, usage.returncode,
                                                                usage.stderr)


# ---- ls ---------------------------------------------------------------------

def test_ls_empty(daemon):
    assert ctl_json(daemon, "ls", "--json") == []
    proc = run_ctl(daemon, "ls", check=True)
    assert "no segments" in proc.stdout


def test_ls_json_fields(daemon):
    before_ms = time.time() * 1000
    frames = create(daemon, "frames", "uint8", (480, 640, 3), {"camera": "front"})
    small = create(daemon, "small", "float32", (2, 3))
    listed = ctl_json(daemon, "ls", "--json")
    assert [s["name"] for s in listed] == ["frames", "small"]
    for entry in listed:
        assert set(entry) == INFO_KEYS
    f, s = listed
    assert f["segment_id"] == frames["id"] and s["segment_id"] == small["id"]
    assert f["dtype"] == "uint8" and s["dtype"] == "float32"
    assert f["shape"] == [480, 640, 3] and f["strides"] == [1920, 3, 1]
    assert s["shape"] == [2, 3] and s["strides"] == [12, 4]
    assert f["nbytes"] == 480 * 640 * 3 and s["nbytes"] == 24
    assert f["total_bytes"] >= f["nbytes"]
    assert f["version"] == 0 and f["attached"] == 0
    assert f["owner_uid"] == os.getuid()
    assert before_ms - 5000 <= f["created_unix_ms"] <= time.time() * 1000 + 5000


def test_ls_json_matches_python_client(daemon):
    pybridge = pytest.importorskip("pybridge")
    create(daemon, "alpha", "int16", (4, 4), {"k": 1})
    with pybridge.connect(daemon.socket) as c:
        ours = sorted(c.list(), key=lambda s: s["name"])
    assert ctl_json(daemon, "ls", "--json") == ours


def test_ls_table(daemon):
    create(daemon, "frames", "uint8", (480, 640, 3))
    create(daemon, "weights", "float64", (10,))
    proc = run_ctl(daemon, "ls", check=True)
    header, *rows = proc.stdout.splitlines()
    # No stream listed: no stream columns (tests/cli/test_stream_cli.py has them).
    assert header.split() == ["NAME", "KIND", "DTYPE", "SHAPE", "SIZE", "PAGES", "ATTACHED",
                              "VERSION", "AGE"]
    frames = next(r for r in rows if r.startswith("frames"))
    assert frames.split()[:4] == ["frames", "segment", "uint8", "480x640x3"]
    assert "900 KiB" in frames
    weights = next(r for r in rows if r.startswith("weights"))
    assert weights.split()[:7] == ["weights", "segment", "float64", "10", "80", "B", "4K"]
    assert weights.split()[-1].endswith("s")  # age in seconds


def test_ls_counts_attached_clients(daemon):
    create(daemon, "held", "int32", (3,))
    holder = subprocess.Popen([binary("bridge_peer"), "--socket", daemon.socket, "hold", "held"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "attached"
        (entry,) = ctl_json(daemon, "ls", "--json")
        assert entry["attached"] == 1
        row = run_ctl(daemon, "ls", check=True).stdout.splitlines()[1]
        assert row.split()[-3] == "1"  # ATTACHED, VERSION, AGE end the row
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_json_flag_before_or_after_command(daemon):
    create(daemon, "a", "int8", (2,))
    after = run_ctl(daemon, "ls", "--json", check=True).stdout
    before = run_ctl(daemon, "--json", "ls", check=True).stdout
    assert json.loads(after) == json.loads(before)


# ---- info -------------------------------------------------------------------

def test_info_json_includes_meta(daemon):
    meta = {"camera": "front", "fps": 30, "nested": {"list": [1, 2.5, None]}}
    made = create(daemon, "frames", "uint16", (4, 5), meta)
    info = ctl_json(daemon, "info", "frames", "--json")
    assert set(info) == INFO_KEYS | {"meta"}
    assert info["meta"] == meta
    assert info["segment_id"] == made["id"]
    assert info["shape"] == [4, 5] and info["strides"] == [10, 2] and info["nbytes"] == 40


def info_fields(out):
    """info's "key: value" lines (before the metadata) as a dict; a line with no
    key continues the one above, so its value joins the list under that key."""
    fields, key = {}, None
    for line in out.split("\nmeta:")[0].splitlines():
        if line.startswith(" "):
            fields[key].append(line.strip())
            continue
        key, value = line.split(":", 1)
        fields[key] = [value.strip()]
    return {k: v[0] if len(v) == 1 else v for k, v in fields.items()}


def me():
    return f"{pwd.getpwuid(os.getuid()).pw_name} (uid {os.getuid()})"


def unnamed_uid():
    """A uid the password database has no name for."""
    uid = 4242
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def named_user():
    """A user other than the one running the tests, or skip."""
    for entry in pwd.getpwall():
        if entry.pw_uid != os.getuid() and 0 < entry.pw_uid < 2**32 - 1:
            return entry
    pytest.skip("the password database names no other user")


def test_info_text(daemon):
    create(daemon, "frames", "uint8", (480, 640, 3), {"camera": "front"})
    out = run_ctl(daemon, "info", "frames", check=True).stdout
    fields = info_fields(out)
    assert fields["name"] == "frames"
    assert fields["dtype"] == "uint8"
    assert fields["shape"] == "(480, 640, 3)"
    assert fields["size"].startswith("900 KiB")
    assert fields["version"] == "0"
    assert fields["owner"] == me()
    assert fields["grants"].startswith("none")
    meta_text = out.split("\nmeta:\n", 1)[1]
    assert json.loads(meta_text) == {"camera": "front"}
    assert '\n  "camera": "front"\n' in meta_text  # pretty-printed


def test_info_text_lists_grants(daemon):
    create(daemon, "shared", "int8", (2,))
    user, nameless = named_user(), unnamed_uid()
    run_ctl(daemon, "grant", "shared", user.pw_name, "read", check=True)
    run_ctl(daemon, "grant", "shared", nameless, "write", check=True)
    grants = info_fields(run_ctl(daemon, "info", "shared", check=True).stdout)["grants"]
    assert sorted(grants) == sorted([f"read   {user.pw_name} (uid {user.pw_uid})",
                                     f"write  uid {nameless}"])


# ---- grant ------------------------------------------------------------------

def test_grant_json(daemon):
    meta = {"camera": "front"}
    made = create(daemon, "frames", "uint8", (4,), meta)
    nameless = unnamed_uid()
    info = ctl_json(daemon, "grant", "frames", nameless, "write", "--json")
    assert set(info) == INFO_KEYS | {"meta"}
    assert info["segment_id"] == made["id"] and info["meta"] == meta
    assert info["owner_uid"] == os.getuid()
    assert info["grants"] == [{"uid": nameless, "access": "write"}]
    # The same as info afterwards, and as what the Python client sees.
    assert ctl_json(daemon, "info", "frames", "--json") == info
    pybridge = pytest.importorskip("pybridge")
    with pybridge.connect(daemon.socket) as c:
        assert c.info("frames")["grants"] == info["grants"]
    # A user name resolves to its uid; none revokes.
    user = named_user()
    info = ctl_json(daemon, "grant", "frames", user.pw_name, "read", "--json")
    assert sorted(info["grants"], key=lambda g: g["uid"]) == sorted(
        [{"uid": nameless, "access": "write"}, {"uid": user.pw_uid, "access": "read"}],
        key=lambda g: g["uid"])
    info = ctl_json(daemon, "grant", "frames", nameless, "none", "--json")
    assert info["grants"] == [{"uid": user.pw_uid, "access": "read"}]


def test_grant_text(daemon):
    create(daemon, "frames", "uint8", (4,))
    user, nameless = named_user(), unnamed_uid()
    out = run_ctl(daemon, "grant", "frames", user.pw_name, "read", check=True).stdout
    lines = out.splitlines()
    assert lines[0] == f"granted read access to frames to {user.pw_name} (uid {user.pw_uid})"
    assert lines[1].split(None, 1) == ["owner:", me()]
    assert lines[2].split(None, 1) == ["grants:", f"read   {user.pw_name} (uid {user.pw_uid})"]

    out = run_ctl(daemon, "grant", "frames", str(user.pw_uid), "none", check=True).stdout
    assert out.splitlines()[0] == f"revoked {user.pw_name} (uid {user.pw_uid})'s access to frames"
    assert "grants:" in out and "none" in out.split("grants:")[1]

    out = run_ctl(daemon, "grant", "frames", nameless, "write", check=True).stdout
    assert out.splitlines()[0] == f"granted write access to frames to uid {nameless}"


@pytest.mark.parametrize("user,code,words", [
    ("no-such-user-here", EXIT_INVALID_ARGUMENT, "no user named 'no-such-user-here'"),
    ("4294967295", EXIT_INVALID_ARGUMENT, "out of range"),
    ("99999999999", EXIT_INVALID_ARGUMENT, "out of range"),
    (str(os.getuid()), EXIT_INVALID_ARGUMENT, "owns"),  # the owner already has everything
])
def test_grant_refused(daemon, user, code, words):
    create(daemon, "frames", "uint8", (4,))
    proc = run_ctl(daemon, "grant", "frames", user, "read", "--json")
    assert proc.returncode == code, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "invalid_argument" and words in error["message"]
    assert proc.stderr.startswith("bridgectl: invalid_argument: ")
    assert ctl_json(daemon, "info", "frames", "--json")["grants"] == []


def test_grant_missing_segment(daemon):
    proc = run_ctl(daemon, "grant", "nope", "4242", "read", "--json")
    assert proc.returncode == EXIT_NOT_FOUND
    assert json.loads(proc.stdout)["error"]["code"] == "not_found"


# ---- show -------------------------------------------------------------------

def test_show_json_values_match_peer(daemon):
    create(daemon, "small", "int32", (2, 3))
    for i, value in enumerate([1, -2, 3, 40, 5, 6]):
        run_peer(daemon, "set", "small", i, value)
    shown = ctl_json(daemon, "show", "small", "--json")
    assert set(shown) == SHOW_KEYS
    assert shown["name"] == "small" and shown["dtype"] == "int32" and shown["shape"] == [2, 3]
    assert shown["values"] == [[1, -2, 3], [40, 5, 6]]
    assert shown["truncated"] is False
    seen = dump(daemon, "small")
    assert shown["version"] == seen["version"]
    assert np.array(shown["values"]).ravel().tolist() == seen["values"]


@pytest.mark.parametrize("dtype,values", [
    ("float64", [0.5, -1.25, 3.0, 1e-5]),
    ("float32", [0.1, 2.5, -3.0, 1024.0]),
    ("float16", [0.1, 2.5, -3.0, 1000.0]),
    ("bool", [True, False, True, True]),
    ("complex64", [[1, 2], [-3.5, -1], [0, 0.25], [1e3, 0]]),
    ("uint64", [2**64 - 1, 0, 7, 42]),
])
def test_show_json_every_kind_of_value(daemon, dtype, values):
    create(daemon, "v", dtype, (2, 2))
    for i, value in enumerate(values):
        run_peer(daemon, "set", "v", i, json.dumps(value))
    shown = ctl_json(daemon, "show", "v", "--json")
    expected = as_numpy(dump(daemon, "v"))
    got = shown["values"]
    if dtype.startswith("complex"):
        got = [[complex(re, im) for re, im in row] for row in got]
    # Floats are written with their own dtype's shortest digits, which read
    # back as the same value of that dtype.
    np.testing.assert_array_equal(np.array(got, dtype=dtype), expected)


@pytest.mark.parametrize("dtype,shape,values", [
    ("int32", (2, 3), [1, 2, 3, 4, 5, 6]),
    ("int64", (3, 2, 2), [-5, 10, 200, -3000, 1, 2, 3, 4, 5, 6, 7, 8]),
    ("float64", (4,), [0.5, -1.25, 3.0, 100.125]),
    ("float64", (3,), [1e-5, 1.5, 2.0]),
    ("float32", (2,), [0.1, 1 / 3]),
    ("float16", (3,), [0.1, 1000.0, -2.0]),
    ("bool", (3,), [True, False, True]),
    ("complex128", (2,), [[1, 2], [-3.5, -1]]),
    ("uint8", (30,), list(range(0, 240, 8))),
])
def test_show_text_matches_numpy(daemon, dtype, shape, values):
    create(daemon, "arr", dtype, shape)
    for i, value in enumerate(values):
        run_peer(daemon, "set", "arr", i, json.dumps(value))
    proc = run_ctl(daemon, "show", "arr", check=True)
    header, body = show_body(proc)
    assert "arr" in header and dtype in header and "version" in header
    assert body == str(as_numpy(dump(daemon, "arr")))


def test_show_abbreviates_large_arrays(daemon):
    create(daemon, "big", "int64", (40, 50))
    run_peer(daemon, "fill", "big", 7)
    run_peer(daemon, "set", "big", 0, 1000)
    run_peer(daemon, "set", "big", 1999, -1)
    expected = np.full((40, 50), 7, dtype=np.int64)
    expected.flat[0], expected.flat[1999] = 1000, -1

    header, body = show_body(run_ctl(daemon, "show", "big", check=True))
    assert header.startswith("big: int64 (40, 50)")
    assert body == str(expected)
    assert "..." in body

    # --threshold and --edgeitems mean what numpy's print options mean.
    _, small = show_body(run_ctl(daemon, "show", "big", "--threshold", "10", "--edgeitems", "2",
                                 check=True))
    with np.printoptions(threshold=10, edgeitems=2):
        assert small == str(expected)

    shown = ctl_json(daemon, "show", "big", "--json")
    assert shown["truncated"] is True
    rows = shown["values"]
    assert len(rows) == 7 and rows[3] == "..."
    assert rows[0] == [1000, 7, 7, "...", 7, 7, 7]
    assert rows[-1] == [7, 7, 7, "...", 7, 7, -1]

    full = ctl_json(daemon, "show", "big", "--json", "--max-elements", "0")
    assert full["truncated"] is False
    assert np.array_equal(np.array(full["values"]), expected)

    _, everything = show_body(run_ctl(daemon, "show", "big", "--full", check=True))
    assert "..." not in everything


def test_show_zero_d_and_empty(daemon):
    create(daemon, "scalar", "float64", ())
    run_peer(daemon, "set", "scalar", 0, 2.5)
    header, body = show_body(run_ctl(daemon, "show", "scalar", check=True))
    assert "()" in header
    assert body == "2.5"
    shown = ctl_json(daemon, "show", "scalar", "--json")
    assert shown["shape"] == [] and shown["values"] == 2.5

    create(daemon, "empty", "float32", (0, 4))
    _, body = show_body(run_ctl(daemon, "show", "empty", check=True))
    assert body == "[]"
    shown = ctl_json(daemon, "show", "empty", "--json")
    assert shown["shape"] == [0, 4] and shown["values"] == [] and shown["truncated"] is False


def test_show_leaves_no_attachment(daemon):
    create(daemon, "a", "uint8", (4,))
    run_ctl(daemon, "show", "a", check=True)
    (entry,) = ctl_json(daemon, "ls", "--json")
    assert entry["attached"] == 0


# ---- rm ---------------------------------------------------------------------

def test_rm_json_then_ls(daemon):
    create(daemon, "a", "uint8", (4,))
    create(daemon, "b", "uint8", (4,))
    create(daemon, "keep", "uint8", (4,))
    assert ctl_json(daemon, "rm", "a", "b", "--json") == {"removed": ["a", "b"]}
    assert [s["name"] for s in ctl_json(daemon, "ls", "--json")] == ["keep"]
    proc = run_ctl(daemon, "rm", "keep", check=True)
    assert proc.stdout.splitlines() == ["removed keep"]
    assert ctl_json(daemon, "ls", "--json") == []


def test_rm_goes_on_past_a_missing_name(daemon):
    create(daemon, "a", "uint8", (4,))
    out = ctl_json(daemon, "rm", "missing", "a", "--json", expect=EXIT_NOT_FOUND)
    assert out["removed"] == ["a"]
    assert out["error"]["code"] == "not_found"
    assert ctl_json(daemon, "ls", "--json") == []


# ---- stats ------------------------------------------------------------------

def test_stats(daemon):
    create(daemon, "a", "uint8", (1024,))
    stats = ctl_json(daemon, "stats", "--json")
    assert set(stats) == STATS_KEYS
    assert stats["pid"] == daemon.proc.pid
    assert stats["segments"] == 1 and stats["bytes"] >= 1024
    assert stats["shm_prefix"] == daemon.shm_prefix
    out = run_ctl(daemon, "stats", check=True).stdout
    assert str(daemon.proc.pid) in out and daemon.socket in out
    assert any(line.split() == ["segments:", "1"] for line in out.splitlines())
    assert any(line.split()[:2] == ["refused:", "0"] for line in out.splitlines())
    assert any(line.split()[:2] == ["quarantined:", "0"] for line in out.splitlines())


def test_stats_lists_quarantined_objects(daemon):
    create(daemon, "victim", "int32", (4,))
    create(daemon, "fine", "int32", (4,))
    with open("/dev/shm/" + daemon.shm_prefix.lstrip("/") + "victim", "r+b") as f:
        f.write(b"NOTMAGIC")  # the header's magic number
    assert run_ctl(daemon, "info", "victim").returncode == EXIT_CORRUPT_SEGMENT
    (quarantined,) = ctl_json(daemon, "stats", "--json")["quarantined"]
    assert quarantined["name"] == "victim" and "magic" in quarantined["reason"]

    lines = run_ctl(daemon, "stats", check=True).stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("quarantined:"))
    assert lines[at].split()[:2] == ["quarantined:", "1"]
    assert "bridgectl rm" in lines[at]
    assert lines[at + 1:] == [f"  victim: {quarantined['reason']}"]

    run_ctl(daemon, "rm", "victim", check=True)
    out = run_ctl(daemon, "stats", check=True).stdout
    assert any(line.split()[:2] == ["quarantined:", "0"] for line in out.splitlines())
    assert "victim" not in out


def test_stats_counts_refused_connections(tmp_path):
    pybridge = pytest.importorskip("pybridge")

    def when_free(attempt):
        """Retries `attempt` while the daemon still counts a client that left
        (it notices a close on its own time)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                return attempt()
            except (pybridge.LimitExceeded, pybridge.DaemonUnavailable, AssertionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    d = Daemon(tmp_path, "--max-clients", "1")
    try:
        with when_free(lambda: pybridge.connect(d.socket)):
            proc = run_ctl(d, "stats", "--json")
            # limit_exceeded; or daemon_unavailable when the hello is sent after
            # the daemon closed (a known libbridge race, see
            # tests/cpp/integration/connect_limit_repro_test.cpp).
            assert proc.returncode in (EXIT_LIMIT_EXCEEDED, EXIT_DAEMON_UNAVAILABLE), proc.stderr
        out = when_free(lambda: run_ctl(d, "stats", check=True)).stdout
        refused = next(line for line in out.splitlines() if line.startswith("refused:"))
        count = int(refused.split()[1])
        assert count >= 1
        assert refused.split()[2:] == ["connection" + "s" * (count != 1), "(over",
                                       "--max-clients)"]
        assert when_free(lambda: ctl_json(d, "stats", "--json"))["refused"] >= count
    finally:
        assert d.stop() == 0
    assert d.leftover_shm() == []


# ---- errors -----------------------------------------------------------------

@pytest.mark.parametrize("command", ["info", "show", "rm"])
def test_missing_name_is_not_found(daemon, command):
    proc = run_ctl(daemon, command, "nope", "--json")
    assert proc.returncode == EXIT_NOT_FOUND
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "not_found" and "nope" in error["message"]
    assert proc.stderr.startswith("bridgectl: not_found: ")

    text = run_ctl(daemon, command, "nope")
    assert text.returncode == EXIT_NOT_FOUND
    assert text.stdout == ""  # no JSON without --json
    assert text.stderr.startswith("bridgectl: not_found: ")


@pytest.mark.parametrize("args", [["ls"], ["info", "x"], ["show", "x"], ["rm", "x"], ["stats"],
                                  ["grant", "x", "4242", "read"]])
def test_no_daemon_is_daemon_unavailable(tmp_path, args):
    socket = str(tmp_path / "nobody-here.sock")
    proc = subprocess.run([binary("bridgectl"), "--socket", socket, *args, "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_DAEMON_UNAVAILABLE, proc.stderr
    assert json.loads(proc.stdout)["error"]["code"] == "daemon_unavailable"
    assert proc.stderr.startswith("bridgectl: daemon_unavailable: ")


def test_bridge_socket_environment_variable(daemon, tmp_path):
    create(daemon, "via-env", "uint8", (1,))
    proc = ctl_env("ls", "--json", env_socket=daemon.socket)
    assert proc.returncode == 0, proc.stderr
    assert [s["name"] for s in json.loads(proc.stdout)] == ["via-env"]
    # --socket wins over the environment.
    bogus = str(tmp_path / "bogus.sock")
    proc = ctl_env("--socket", daemon.socket, "ls", "--json", env_socket=bogus)
    assert proc.returncode == 0, proc.stderr
    proc = ctl_env("ls", "--json", env_socket=bogus)
    assert proc.returncode == EXIT_DAEMON_UNAVAILABLE
    assert bogus in json.loads(proc.stdout)["error"]["message"]
