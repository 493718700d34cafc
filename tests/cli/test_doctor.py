# SPDX-License-Identifier: MIT
"""bridgectl doctor against a real daemon, a missing one and a broken socket.

What the machine itself offers (/dev/shm, limits, huge pages, the kernel)
differs between machines, so those checks are held to their shape and to the
exit status they imply here; their judgements on made-up machines are in
doctor_test.cpp. The daemon, socket, permission and quarantine checks are
set up by the tests and checked exactly.
"""
import json
import os
import subprocess

from conftest import binary, run_ctl
from test_cli import create

CHECKS = ["shm", "open_files", "huge_pages", "futex_waitv", "socket", "daemon", "permissions",
          "quarantine"]
CHECK_KEYS = {"check", "status", "found", "advice", "details"}
STATUSES = {"ok", "note", "warning", "error"}


def doctor(*args, socket=None, env=None):
    cmd = [binary("bridgectl"), *(["--socket", socket] if socket else []), "doctor", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)


def report(proc):
    """The --json document and its checks by name, checked for shape and for
    the exit status the statuses imply (0 all well, 1 warnings, 2 errors)."""
    document = json.loads(proc.stdout)
    assert set(document) == {"status", "socket", "checks"}
    assert [c["check"] for c in document["checks"]] == CHECKS
    for check in document["checks"]:
        assert set(check) == CHECK_KEYS
        assert check["status"] in STATUSES
        assert check["found"]
        if check["status"] in ("warning", "error"):
            assert check["advice"], f"{check['check']} says what is wrong but not what to do"
    statuses = {c["status"] for c in document["checks"]}
    expected = 2 if "error" in statuses else 1 if "warning" in statuses else 0
    assert proc.returncode == expected, (proc.returncode, document)
    assert document["status"] == ["ok", "warning", "error"][expected]
    return document, {c["check"]: c for c in document["checks"]}


def bridgectl_version():
    out = subprocess.run([binary("bridgectl"), "--version"], capture_output=True, text=True,
                         timeout=60).stdout
    return out.split()[1]


def test_doctor_with_a_daemon(daemon):
    proc = run_ctl(daemon, "doctor", "--json")
    document, checks = report(proc)
    assert proc.returncode in (0, 1), document  # nothing here is an error
    assert document["socket"] == daemon.socket
    assert checks["socket"]["status"] == "ok"
    assert checks["socket"]["details"] == {"path": daemon.socket, "source": "--socket"}
    daemon_check = checks["daemon"]
    assert daemon_check["status"] == "ok", daemon_check
    assert daemon_check["details"]["pid"] == daemon.proc.pid
    assert daemon_check["details"]["daemon"] == "bridged " + bridgectl_version()
    assert checks["permissions"]["status"] == "ok", checks["permissions"]
    assert checks["permissions"]["details"]["socket_stat"]["mode"] == "0600"
    assert checks["quarantine"]["status"] == "ok"
    assert checks["quarantine"]["details"] == {"count": 0, "objects": []}
    shm = checks["shm"]["details"]
    stat = os.statvfs("/dev/shm")
    assert shm["total_bytes"] == stat.f_blocks * stat.f_frsize
    assert checks["open_files"]["details"]["hard"] > 0
    assert isinstance(checks["futex_waitv"]["details"]["available"], bool)


def test_doctor_text_has_a_line_per_check_and_a_summary(daemon):
    proc = run_ctl(daemon, "doctor")
    assert proc.returncode in (0, 1), proc.stdout
    lines = proc.stdout.splitlines()
    labels = ["/dev/shm", "open files", "huge pages", "futex_waitv", "socket", "daemon",
              "permissions", "quarantine"]
    # One line per check: its status, then its label at column 9; advice
    # lines below it are indented.
    starts = [line for line in lines if line and not line.startswith(" ")][:8]
    assert len(starts) == 8
    for label, line in zip(labels, starts):
        assert line.split()[0] in STATUSES and line[9:].startswith(label), (label, line)
    daemon_line = next(line for line in starts if line[9:].startswith("daemon"))
    assert daemon_line.startswith("ok ") and str(daemon.proc.pid) in daemon_line
    assert "warning" in lines[-1] and "error" in lines[-1]


def test_doctor_without_a_daemon_is_an_error_with_advice(tmp_path):
    socket = str(tmp_path / "nobody-here.sock")
    proc = doctor("--json", socket=socket)
    document, checks = report(proc)
    assert proc.returncode == 2
    daemon_check = checks["daemon"]
    assert daemon_check["status"] == "error"
    assert daemon_check["details"]["code"] == "daemon_unavailable"
    assert socket in daemon_check["found"]
    assert "bridged --socket " + socket in daemon_check["advice"]
    assert checks["quarantine"]["status"] == "note"  # nobody to ask
    assert checks["permissions"]["status"] == "note"  # the directory is there, no socket yet

    text = doctor(socket=socket)
    assert text.returncode == 2
    lines = text.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("error    daemon"))
    assert lines[at + 1].strip().startswith("-> start one: bridged --socket " + socket)
    assert text.stderr == ""  # a finding, not a failure of the command


def test_doctor_reports_a_socket_path_that_is_not_a_socket(tmp_path):
    path = tmp_path / "bridged.sock"
    path.write_text("not a socket")
    document, checks = report(doctor("--json", socket=str(path)))
    assert checks["permissions"]["status"] == "error"
    assert "not a socket" in checks["permissions"]["found"]


def test_doctor_names_where_the_socket_path_came_from(daemon):
    env = dict(os.environ, BRIDGE_SOCKET=daemon.socket)
    document, checks = report(doctor("--json", env=env))
    assert checks["socket"]["details"] == {"path": daemon.socket, "source": "$BRIDGE_SOCKET"}
    assert checks["daemon"]["status"] == "ok"


def test_doctor_reports_quarantined_objects(daemon):
    create(daemon, "victim", "int32", (4,))
    with open("/dev/shm/" + daemon.shm_prefix.lstrip("/") + "victim", "r+b") as f:
        f.write(b"NOTMAGIC")  # the header's magic number
    run_ctl(daemon, "info", "victim")  # the daemon finds out, and quarantines it
    proc = run_ctl(daemon, "doctor", "--json")
    document, checks = report(proc)
    quarantine = checks["quarantine"]
    assert quarantine["status"] == "warning"
    assert proc.returncode >= 1
    (obj,) = quarantine["details"]["objects"]
    assert obj["name"] == "victim" and "magic" in obj["reason"]
    assert "victim" in quarantine["found"] and "bridgectl rm" in quarantine["advice"]

    run_ctl(daemon, "rm", "victim", check=True)
    document, checks = report(run_ctl(daemon, "doctor", "--json"))
    assert checks["quarantine"]["status"] == "ok"


def test_doctor_help_states_its_exit_statuses():
    proc = subprocess.run([binary("bridgectl"), "doctor", "--help"], capture_output=True,
                          text=True, timeout=60)
    text = " ".join(proc.stdout.split())
    assert "0 when all is well" in text and "1 with warnings" in text and "2 with errors" in text
