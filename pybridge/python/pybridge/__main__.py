# SPDX-License-Identifier: MIT
"""python -m pybridge --cmake-dir | --include-dir | --version

Where the C++ SDK that came with this package lies, for CMake projects:
``cmake -Dshmbridge_DIR=$(python -m pybridge --cmake-dir)``, then
``find_package(shmbridge CONFIG)`` and ``target_link_libraries(app PRIVATE
shmbridge::bridge)``."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from . import __version__, cmake_dir, include_dir
from .errors import NotFound


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pybridge",
        description="Paths of the C++ SDK installed with pybridge (the shmbridge wheel).")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--cmake-dir", action="store_true",
                      help="the directory holding shmbridgeConfig.cmake (for shmbridge_DIR "
                           "or CMAKE_PREFIX_PATH)")
    what.add_argument("--include-dir", action="store_true",
                      help="the directory holding bridge/bridge.hpp")
    what.add_argument("--version", action="store_true", help="the package version")
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    try:
        print(cmake_dir() if args.cmake_dir else include_dir())
    except NotFound as exc:
        print(f"python -m pybridge: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
