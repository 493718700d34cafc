# SPDX-License-Identifier: MIT
"""The binaries the other tests run are the sanitized ones when asked for.

`make test-asan` runs this whole pytest suite against the ASan+UBSan builds of
bridged, bridgectl and bridge_peer (BRIDGE_BIN_DIR=build/asan/bin) and sets
SHMBRIDGE_EXPECT_SANITIZED=address,undefined. Here each binary must carry
those runtimes, so a wrong BRIDGE_BIN_DIR cannot quietly turn that run into
a plain one. Without the variable (the normal run) there is nothing to check.
"""
import os
from pathlib import Path

import pytest

from conftest import binary

# A symbol every binary built with that -fsanitize= imports from its runtime.
MARKERS = {"address": b"__asan_init", "undefined": b"__ubsan_handle_"}
EXPECTED = [s for s in os.environ.get("SHMBRIDGE_EXPECT_SANITIZED", "").split(",") if s]


@pytest.mark.skipif(not EXPECTED, reason="SHMBRIDGE_EXPECT_SANITIZED is not set")
@pytest.mark.parametrize("name", ["bridged", "bridgectl", "bridge_peer"])
def test_binary_is_built_with_the_expected_sanitizers(name):
    unknown = [s for s in EXPECTED if s not in MARKERS]
    assert not unknown, f"no marker known for sanitizers {unknown}"
    image = Path(binary(name)).read_bytes()
    missing = [s for s in EXPECTED if MARKERS[s] not in image]
    assert not missing, f"{binary(name)} is not built with -fsanitize={','.join(missing)}"
