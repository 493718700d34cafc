# SPDX-License-Identifier: MIT
"""How the suite itself reports: skip reasons are printed."""
import json
import shutil
import subprocess

import pytest

import conftest


def test_ctest_prints_skip_reasons():
    """The pytest that ctest runs (tests/CMakeLists.txt) reports skips with
    their reasons (-rs, or -ra/-rA, which include them)."""
    build = conftest.BIN_DIR.parent
    ctest = shutil.which("ctest")
    if ctest is None or not (build / "CTestTestfile.cmake").exists():
        pytest.skip(f"no ctest, or {build} is not a CMake build folder")
    proc = subprocess.run([ctest, "--test-dir", str(build), "--show-only=json-v1",
                           "-R", "^pytest$"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    tests = json.loads(proc.stdout)["tests"]
    if not tests:
        pytest.skip(f"{build} registers no pytest with ctest (BRIDGE_BUILD_PYTHON off)")
    command = tests[0]["command"]
    assert "pytest" in command
    report = [arg for arg in command if arg.startswith("-r")]
    assert any(set(arg[2:]) & set("saA") for arg in report), command
