#!/usr/bin/env bash
# Installs what shmbridge needs to build and test, and nothing twice:
# Debian packages (only the missing ones) and a Python venv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# clang and its runtime libraries (libFuzzer, sanitizers) build the fuzz
# targets (make fuzz); libclang-rt-14-dev is only a Recommends of clang-14.
debs=(g++ make ninja-build libboost1.81-dev nlohmann-json3-dev libgtest-dev libgmock-dev
      libcli11-dev clang-format clang libclang-rt-14-dev)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
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
if ! .venv/bin/python -c "import numpy, nanobind, pytest, scikit_build_core" 2>/dev/null; then
  echo "install-deps: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check \
    numpy 'nanobind>=2' 'scikit-build-core>=0.10' pytest
fi
