# SPDX-License-Identifier: MIT
"""scripts/install-deps.sh against stand-ins for dpkg-query, apt-cache,
apt-get, sudo, cmake and the venv's python (nothing is installed or downloaded).

Each case copies the script into a temporary tree (it works relative to its
own folder), puts stubs first on PATH that report a chosen set of installed
Debian packages, a chosen candidate version of libboost-dev and whether
`import torch` works, and records what the script asks apt-get and pip to do.
The real `dpkg --compare-versions` compares versions.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-deps.sh"
OTHER_DEBS = ["g++", "make", "ninja-build", "nlohmann-json3-dev", "libgtest-dev",
              "libgmock-dev", "libcli11-dev", "clang-format", "clang", "libclang-rt-14-dev",
              "libbenchmark-dev", "systemd", "libpng-dev"]

# The stubs are shell scripts (a Python one per call would make each case
# take seconds on a busy machine).
#
# dpkg-query -W -f=FORMAT PATTERN: the packages listed in $FAKE_DPKG (lines of
# "name version") are installed; the others are unknown.
DPKG_QUERY = r"""#!/bin/bash
fmt='${Package}\t${Version}\n'
for arg in "$@"; do
  case $arg in -f=*) fmt=${arg#-f=} ;; -*) ;; *) pattern=$arg ;; esac
done
found=0
while read -r name version; do
  [[ -n $name && $name == $pattern ]] || continue
  found=1
  out=${fmt//'${Package}'/$name}
  out=${out//'${Version}'/$version}
  out=${out//'${db:Status-Abbrev}'/ii }
  out=${out//'${Status}'/install ok installed}
  printf "${out//%/%%}"
done < "$FAKE_DPKG"
((found)) || { echo "dpkg-query: no packages found matching $pattern" >&2; exit 1; }
"""
# apt-cache policy libboost-dev: $FAKE_BOOST_CANDIDATE is the candidate.
APT_CACHE = r"""#!/bin/sh
[ "$*" = "policy libboost-dev" ] || { echo "unexpected apt-cache $*" >&2; exit 99; }
printf 'libboost-dev:\n  Installed: (none)\n  Candidate: %s\n  Version table:\n' \
  "$FAKE_BOOST_CANDIDATE"
"""
# apt-get and the venv's python: append the call to $FAKE_LOG (fields
# separated by \x1f); `python -c "import ..."` fails when it names a module
# listed in $FAKE_PY_MISSING.
RECORD = r"""#!/bin/bash
{ printf '%s\x1f' "$(basename "$0")" "$@"; printf '\n'; } >> "$FAKE_LOG"
if [ "$1" = "-c" ]; then
  for module in $FAKE_PY_MISSING; do
    [[ " ${2//,/ } " == *" $module "* ]] && exit 1
  done
fi
exit 0
"""
SUDO = '#!/bin/sh\nexec "$@"\n'
CMAKE = '#!/bin/sh\necho "cmake version 3.25.1"\n'  # new enough: no pip install of cmake


def write_stub(path, source):
    path.write_text(source)
    path.chmod(0o755)


def run_script(tmp_path, installed, candidate="1.74.0.3", py_missing=""):
    root = tmp_path / "tree"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / "install-deps.sh")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    write_stub(stubs / "dpkg-query", DPKG_QUERY)
    write_stub(stubs / "apt-cache", APT_CACHE)
    write_stub(stubs / "apt-get", RECORD)
    write_stub(stubs / "sudo", SUDO)
    write_stub(stubs / "cmake", CMAKE)
    (root / ".venv" / "bin").mkdir(parents=True)
    write_stub(root / ".venv" / "bin" / "python", RECORD)
    log = tmp_path / "calls.log"
    log.touch()
    dpkg = tmp_path / "installed.txt"
    dpkg.write_text("".join(f"{name} {version}\n" for name, version in installed.items()))
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", FAKE_LOG=str(log),
               FAKE_DPKG=str(dpkg), FAKE_BOOST_CANDIDATE=candidate, FAKE_PY_MISSING=py_missing)
    proc = subprocess.run(["bash", str(root / "scripts" / "install-deps.sh")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = [line.split("\x1f")[:-1] for line in log.read_text().splitlines()]
    return proc, calls


def apt_installs(calls):
    """The packages passed to apt-get install, in one set."""
    return {word for call in calls if call[:2] == ["apt-get", "install"]
            for word in call[2:] if not word.startswith("-")}


def pip_installs(calls):
    return [call for call in calls if call[1:4] == ["-m", "pip", "install"]]


DEBIAN12 = {name: "1" for name in OTHER_DEBS}  # everything but Boost


@pytest.mark.parametrize("installed_boost", [
    {"libboost1.81-dev": "1.81.0-5+deb12u1"},                         # Debian 12, as the README says
    {"libboost-dev": "1.83.0.2+b2"},                                  # Debian 13's own
    {"libboost1.83-dev": "1.83.0-4", "libboost-dev": "1.83.0.2+b2"},  # both
])
def test_nothing_missing_is_quiet_and_installs_nothing(tmp_path, installed_boost):
    proc, calls = run_script(tmp_path, {**DEBIAN12, **installed_boost})
    assert proc.stdout == "" and proc.stderr == ""
    assert not any(call[0] == "apt-get" for call in calls), calls
    assert pip_installs(calls) == []


@pytest.mark.parametrize("installed_boost", [
    {},                                                          # no Boost at all
    {"libboost-dev": "1.74.0.3", "libboost1.74-dev": "1.74.0-18.1"},  # Debian 12's default, too old
])
def test_old_distribution_boost_gets_libboost1_81_dev(tmp_path, installed_boost):
    proc, calls = run_script(tmp_path, {**DEBIAN12, **installed_boost}, candidate="1.74.0.3")
    assert apt_installs(calls) == {"libboost1.81-dev"}
    assert ["apt-get", "update", "-qq"] in calls
    assert "libboost1.81-dev" in proc.stdout


def test_new_distribution_boost_is_taken(tmp_path):
    proc, calls = run_script(tmp_path, DEBIAN12, candidate="1.83.0.2+b2")
    assert apt_installs(calls) == {"libboost-dev"}


def test_no_candidate_falls_back_to_libboost1_81_dev(tmp_path):
    proc, calls = run_script(tmp_path, DEBIAN12, candidate="(none)")
    assert apt_installs(calls) == {"libboost1.81-dev"}


def test_other_missing_packages_come_with_boost(tmp_path):
    installed = {name: "1" for name in OTHER_DEBS if name != "clang"}
    proc, calls = run_script(tmp_path, installed, candidate="1.83.0.2+b2")
    assert apt_installs(calls) == {"clang", "libboost-dev"}


def test_torch_installed_only_when_import_fails(tmp_path):
    proc, calls = run_script(tmp_path, {**DEBIAN12, "libboost1.81-dev": "1.81.0-5"},
                             py_missing="torch")
    assert [call[4:] for call in pip_installs(calls)] == [
        ["-q", "--disable-pip-version-check", "torch==2.13.0"]]
    assert "torch" in proc.stdout
    assert not any(call[0] == "apt-get" for call in calls)


@pytest.mark.parametrize("module,package", [("prometheus_client", "prometheus_client"),
                                            ("PIL", "Pillow")])
def test_cli_test_modules_installed_when_import_fails(tmp_path, module, package):
    """The CLI tests' parsers (stats --prometheus, show --png) come with the venv."""
    proc, calls = run_script(tmp_path, {**DEBIAN12, "libboost1.81-dev": "1.81.0-5"},
                             py_missing=module)
    (install,) = pip_installs(calls)
    assert package in install
    checks = [call for call in calls if call[1:2] == ["-c"] and module in call[2]]
    assert checks, calls


def test_libpng_dev_installed_when_missing(tmp_path):
    installed = {name: "1" for name in OTHER_DEBS if name != "libpng-dev"}
    proc, calls = run_script(tmp_path, {**installed, "libboost1.81-dev": "1.81.0-5"})
    assert apt_installs(calls) == {"libpng-dev"}
