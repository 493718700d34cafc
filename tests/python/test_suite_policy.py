# SPDX-License-Identifier: MIT
"""How the suite itself reports: skip reasons are printed, and in CI a test
that cannot run fails instead of skipping (conftest.skip_or_fail)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import conftest

TESTS_DIR = Path(conftest.__file__).resolve().parent

#: A test that cannot run, as the guarantee-backing tests say so.
CANNOT_RUN = """
    from conftest import skip_or_fail

    def test_needs_something_missing():
        skip_or_fail("the frobnicator is not installed")
"""


def run_pytest(directory, ci):
    """Runs pytest on `directory` in a child with CI set to `ci` (None: unset)."""
    env = dict(os.environ)
    env.pop("CI", None)
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(directory)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=directory)


@pytest.fixture
def cannot_run(tmp_path):
    (tmp_path / "test_cannot_run.py").write_text(textwrap.dedent(CANNOT_RUN))
    return tmp_path


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_in_ci_a_test_that_cannot_run_fails(cannot_run, ci):
    proc = run_pytest(cannot_run, ci)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
    assert "the frobnicator is not installed" in proc.stdout
    assert "backs a guarantee" in proc.stdout


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_elsewhere_it_skips_saying_why(cannot_run, ci):
    proc = run_pytest(cannot_run, ci)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 skipped" in proc.stdout and "failed" not in proc.stdout, proc.stdout
    # -rs: the reason is in the summary.
    assert "SKIPPED" in proc.stdout and "the frobnicator is not installed" in proc.stdout


def test_a_missing_binary_fails_in_ci(tmp_path):
    (tmp_path / "test_binary.py").write_text(textwrap.dedent("""
        from conftest import binary

        def test_binary():
            binary("no-such-bridge-tool")
    """))
    proc = run_pytest(tmp_path, "true")
    assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout + proc.stderr
    assert "no-such-bridge-tool is not built in" in proc.stdout
    proc = run_pytest(tmp_path, None)
    assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout + proc.stderr


def test_a_missing_module_fails_in_ci(tmp_path):
    (tmp_path / "test_module.py").write_text(textwrap.dedent("""
        from conftest import require_module

        def test_module():
            require_module("no_such_module_for_shmbridge")
    """))
    proc = run_pytest(tmp_path, "true")
    assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout + proc.stderr
    assert "no_such_module_for_shmbridge" in proc.stdout
    proc = run_pytest(tmp_path, None)
    assert proc.returncode == 0 and "1 skipped" in proc.stdout, proc.stdout + proc.stderr


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


def test_time_bounds_are_scaled_only_for_sanitized_binaries():
    """`make test-asan` sets SHMBRIDGE_EXPECT_SANITIZED: wall-clock upper
    bounds grow by TIME_SCALE there, and stay as they are in the normal run."""
    script = ("import conftest, crash_helpers, test_owner_died, test_shm_full; "
              "print(conftest.TIME_SCALE, crash_helpers.RELEASE_LIMIT_S, "
              "test_owner_died.HANDOVER_LIMIT_S, test_shm_full.NO_SPACE_LIMIT_S)")
    here = str(Path(__file__).resolve().parent)
    for sanitized, expected in [(None, ["1", "1.0", "0.1", "0.5"]),
                                ("address,undefined", ["10", "10.0", "1.0", "5.0"])]:
        env = dict(os.environ)
        env.pop("SHMBRIDGE_EXPECT_SANITIZED", None)
        if sanitized:
            env["SHMBRIDGE_EXPECT_SANITIZED"] = sanitized
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (here, str(TESTS_DIR), env.get("PYTHONPATH")) if p)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == expected, (sanitized, proc.stdout)
