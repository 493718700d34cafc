# SPDX-License-Identifier: MIT
"""The installed package, as a user gets it (ctest test `install`).

In a fresh temporary directory:
  1. `cmake --install BUILD --prefix PREFIX`;
  2. PREFIX/include holds exactly the public headers (libbridge/include/bridge),
     nothing from bridge/detail/;
  3. each installed header compiles on its own (a file that includes just it)
     with only -IPREFIX/include plus the system include path, and includes no
     Boost header and nothing outside PREFIX/include but system headers;
  4. tests/install/consumer, a separate CMake project, is configured against
     PREFIX alone (CMAKE_PREFIX_PATH=PREFIX, Boost unfindable, no package
     registry) and built; its shmbridge_DIR must lie in PREFIX;
  5. the installed PREFIX/bin/bridged is started on a private socket
     (--ready-fd, no polling), the consumer runs against it (create, attach,
     views, the writer lock, wait, list, info, destroy), the installed
     bridgectl reports no segment left, the daemon is stopped with SIGTERM
     and must exit 0, and no shm object under its prefix may remain.

Every failing step raises with the command and its output. The temporary
directory is removed on success and kept (its path printed) on failure.

Usage: run_install_test.py --build-dir B --source-dir S --cmake CMAKE --cxx CXX
                           [--generator G] [--make-program M] [--sanitize LIST]
"""
import argparse
import concurrent.futures
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

STEP_TIMEOUT_S = 240  # one configure, build or run; ctest's TIMEOUT bounds the whole test


class Failure(Exception):
    pass


def run(cmd, *, cwd=None, timeout=STEP_TIMEOUT_S):
    """Runs `cmd`; returns its output, or raises Failure with the command and output."""
    cmd = [str(c) for c in cmd]
    print("+", " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"timed out after {timeout} s: {' '.join(cmd)}\n{e.output or ''}")
    if proc.returncode != 0:
        raise Failure(f"exit status {proc.returncode}: {' '.join(cmd)}\n{proc.stdout}")
    return proc.stdout


def check(ok, message):
    if not ok:
        raise Failure(message)


def relative_files(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if not p.is_dir())


def check_include_tree(prefix, source_dir):
    """PREFIX/include holds the public headers, nothing more, nothing less."""
    public = source_dir / "libbridge" / "include"
    expected = relative_files(public)
    check(expected and all(f.startswith("bridge/") for f in expected),
          f"unexpected public header list in {public}: {expected}")
    installed = relative_files(prefix / "include")
    check(installed == expected,
          "installed headers differ from libbridge/include:\n"
          f"  missing: {sorted(set(expected) - set(installed))}\n"
          f"  extra:   {sorted(set(installed) - set(expected))}")
    check(not any("detail" in f for f in installed), f"internal headers installed: {installed}")
    print(f"install: {len(installed)} public headers installed, no others", flush=True)
    return installed


def check_headers_stand_alone(cxx, prefix, headers, work):
    """Each header compiles alone against PREFIX/include and the system path,
    and pulls in no Boost header and no header from elsewhere."""
    include = prefix / "include"
    work.mkdir()

    def compile_alone(header):
        stem = header.replace("/", "_").replace(".", "_")
        tu = work / f"{stem}.cpp"
        tu.write_text(f"#include <{header}>\n")
        deps = work / f"{stem}.d"
        run([cxx, "-std=c++20", "-fsyntax-only", "-Wall", "-Wextra", "-Wpedantic", "-Werror",
             f"-I{include}", "-MD", "-MF", deps, tu])
        # The dependency file lists every header the TU read (system ones too).
        listed = deps.read_text().replace("\\\n", " ").split(":", 1)[1].split()
        used = [Path(p).resolve() for p in listed[1:]]  # [0] is the TU itself
        boost = [str(p) for p in used if "boost" in p.parts]
        check(not boost, f"<{header}> includes Boost headers: {boost[:5]}")
        ours = [p for p in used if p.is_relative_to(include.resolve())]
        public = (include / "bridge").resolve()
        check(ours and all(p.is_relative_to(public) and "detail" not in p.relative_to(public).parts
                           for p in ours),
              f"<{header}> read unexpected headers under {include}: {ours}")

    # Two at a time: each parses nlohmann/json, which takes seconds.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(compile_alone, headers))  # re-raises the first Failure
    print(f"install: each of the {len(headers)} headers compiles on its own, without Boost",
          flush=True)


def build_consumer(args, prefix, source, build):
    configure = [args.cmake, "-S", source, "-B", build, "-G", args.generator,
                 f"-DCMAKE_PREFIX_PATH={prefix}",
                 f"-DCMAKE_CXX_COMPILER={args.cxx}",
                 # The public headers must not need Boost: make it unfindable.
                 "-DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON",
                 # Only PREFIX may provide shmbridge (not a build tree registered
                 # in ~/.cmake/packages).
                 "-DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF",
                 "-DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF"]
    if args.make_program:
        configure.append(f"-DCMAKE_MAKE_PROGRAM={args.make_program}")
    if args.sanitize:
        # libbridge.a was built with the sanitizers: the program must link their runtimes.
        flag = f"-fsanitize={args.sanitize}"
        configure += [f"-DCMAKE_CXX_FLAGS={flag}", f"-DCMAKE_EXE_LINKER_FLAGS={flag}"]
    run(configure)
    cache = (build / "CMakeCache.txt").read_text()
    found = [line.split("=", 1)[1] for line in cache.splitlines()
             if line.startswith("shmbridge_DIR:")]
    check(found and Path(found[0]).resolve().is_relative_to(prefix.resolve()),
          f"find_package(shmbridge) did not use {prefix}: shmbridge_DIR = {found}")
    run([args.cmake, "--build", build])
    print(f"install: consumer built against {found[0]}", flush=True)
    return build / "app"


class Daemon:
    """The installed bridged on a private socket, ready once it says so."""

    def __init__(self, bridged, socket, log_path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        read_fd, write_fd = os.pipe()
        cmd = [str(bridged), "--socket", str(socket), "--ephemeral", "--ready-fd", str(write_fd)]
        print("+", " ".join(cmd), flush=True)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     pass_fds=(write_fd,))
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as ready:
            # One wait with a deadline; EOF without "ready" means it is exiting.
            readable, _, _ = select.select([ready], [], [], 30)
            line = ready.readline() if readable else b""
        if line != b"ready\n":
            self.kill()
            raise Failure(f"bridged did not become ready (got {line!r}):\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failure(f"bridged did not exit within 30 s of SIGTERM:\n{self.log()}")
        self._log.close()
        check(code == 0, f"bridged exited with {code} after SIGTERM:\n{self.log()}")

    def kill(self):
        """After a failure: SIGTERM first (--ephemeral then removes the
        segments), SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def run_against_installed_daemon(prefix, app, run_dir):
    run_dir.mkdir()
    socket = run_dir / "bridged.sock"
    ctl = [prefix / "bin" / "bridgectl", "--socket", socket]
    daemon = Daemon(prefix / "bin" / "bridged", socket, run_dir / "bridged.log")
    try:
        shm_prefix = json.loads(run([*ctl, "stats", "--json"]))["shm_prefix"].lstrip("/")
        check(shm_prefix.startswith("shmbridge."), f"odd shm prefix {shm_prefix!r}")
        print(run([app, "--socket", socket]), end="", flush=True)
        left = json.loads(run([*ctl, "ls", "--json"]))
        check(left == [], f"segments left after the consumer: {left}")
    except BaseException:
        daemon.kill()
        print(f"bridged log:\n{daemon.log()}", file=sys.stderr)
        raise
    daemon.stop()
    leftover = sorted(p.name for p in Path("/dev/shm").glob(shm_prefix + "*"))
    check(leftover == [], f"left in /dev/shm: {leftover}")
    print("install: the installed bridged served the consumer, stopped with 0, left no shm",
          flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, required=True)
    parser.add_argument("--source-dir", type=Path, required=True)
    parser.add_argument("--cmake", required=True)
    parser.add_argument("--cxx", required=True)
    parser.add_argument("--generator", default="Ninja")
    parser.add_argument("--make-program", default="")
    parser.add_argument("--sanitize", default="")
    args = parser.parse_args()

    # A fresh prefix that is on no default search path, unique per run.
    tmp = Path(tempfile.mkdtemp(prefix="shmbridge-install-test."))
    prefix = tmp / "prefix"
    try:
        run([args.cmake, "--install", args.build_dir, "--prefix", prefix])
        headers = check_include_tree(prefix, args.source_dir)
        check_headers_stand_alone(args.cxx, prefix, headers, tmp / "headers")
        app = build_consumer(args, prefix, args.source_dir / "tests" / "install" / "consumer",
                             tmp / "consumer-build")
        run_against_installed_daemon(prefix, app, tmp / "run")
    except Failure as e:
        print(f"install test FAILED (files kept in {tmp}):\n{e}", file=sys.stderr)
        return 1
    shutil.rmtree(tmp)
    print("install test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
