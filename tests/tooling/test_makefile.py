# SPDX-License-Identifier: MIT
"""The Makefile's commands, read with `make -n` (nothing is run or built).

- `make demo` builds only what the demo runs: its `cmake --build` names
  targets, and what those targets need (ninja -t inputs on this build tree)
  holds no test or benchmark source;
- `make test` still builds everything;
- the sanitized pytest run of `make test-asan` prints skip reasons (-rs).

Environment (set by tests/CMakeLists.txt): SHMBRIDGE_BUILD_DIR (a Ninja
build tree with pybridge) and SHMBRIDGE_NINJA; skipped without them.
"""
import os
import shlex
import subprocess
from pathlib import Path

import pytest

if not os.environ.get("SHMBRIDGE_BUILD_DIR") or not os.environ.get("SHMBRIDGE_NINJA"):
    pytest.skip("needs SHMBRIDGE_BUILD_DIR (a Ninja build tree) and SHMBRIDGE_NINJA",
                allow_module_level=True)
SOURCE = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ["SHMBRIDGE_BUILD_DIR"])
NINJA = os.environ["SHMBRIDGE_NINJA"]
DEMO_TARGETS = {"bridged", "bridgectl", "frames_peer", "_pybridge", "pybridge_python_files"}


def dry_run(goal):
    """The commands `make GOAL` would run, one list of words per command."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(SOURCE), goal,
                           f"BUILD={BUILD}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.replace("\\\n", " ")
    return [shlex.split(line) for line in text.splitlines() if line.strip()]


def cmake_builds(commands):
    """The `cmake --build` commands among them, as (build dir, targets or None for all)."""
    builds = []
    for words in commands:
        if words[:2] == ["cmake", "--build"]:
            targets = words[words.index("--target") + 1:] if "--target" in words else None
            builds.append((words[2], targets))
    return builds


def inputs(targets):
    """Every file ninja would need to build `targets` in this build tree."""
    proc = subprocess.run([NINJA, "-C", str(BUILD), "-t", "inputs", *targets],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def sources_in_tests_or_bench(files):
    found = []
    for name in files:
        path = Path(name) if os.path.isabs(name) else BUILD / name
        try:
            part = path.resolve().relative_to(SOURCE.resolve()).parts[0]
        except ValueError:
            continue  # a build output or a system file
        if part in ("tests", "bench", "fuzz"):
            found.append(name)
    return found


def test_demo_builds_only_what_the_demo_runs():
    builds = cmake_builds(dry_run("demo"))
    assert builds, "make demo runs no cmake --build"
    for build_dir, targets in builds:
        assert Path(build_dir) == BUILD
        assert targets is not None, "make demo builds every target (tests and benchmarks too)"
        assert set(targets) == DEMO_TARGETS
        extra = sources_in_tests_or_bench(inputs(targets))
        assert extra == [], f"make demo would compile test or benchmark sources: {extra[:10]}"


def test_the_check_above_can_see_tests():
    # The whole tree does need test sources: the demo check is not vacuous.
    assert sources_in_tests_or_bench(inputs(["all"]))


def test_make_test_still_builds_everything():
    builds = cmake_builds(dry_run("test"))
    assert (str(BUILD), None) in [(str(Path(d)), t) for d, t in builds]


def test_sanitized_pytest_prints_skip_reasons():
    pytest_runs = [w for w in dry_run("test-asan") if "pytest" in w]
    assert pytest_runs, "make test-asan runs no pytest"
    for words in pytest_runs:
        assert "-rs" in words, " ".join(words)
