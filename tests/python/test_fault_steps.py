# SPDX-License-Identifier: MIT
"""The daemon SIGKILLed at each step of create and destroy (BRIDGED_FAULT,
see daemon/src/fault.hpp) and restarted without the fault: the segment is
fully there (listed, attaches, header validates, data as it was) or fully
gone (not listed, no object under the prefix, the name can be created
again), never half of either; no staging object survives the restart.
"""
import signal
import time

import numpy as np
import pytest

import pybridge
from conftest import TIME_SCALE
from crash_helpers import (assert_prefix_consistent, daemons,  # noqa: F401
                           object_path, objects, staging, stop_clean)

#: step -> what a restart must find. Before the rename into place nothing
#: exists under the name; after it the whole segment does. A destroy killed
#: before it claims the segment (its `destroyed` word) leaves it whole; once
#: claimed it is gone, the restart finishing the unlink.
STEPS = {
    "create:sized": "gone",
    "create:reserved": "gone",
    "create:written": "gone",
    "create:published": "there",
    "destroy:unlinking": "there",
    "destroy:claimed": "gone",
    "destroy:unlinked": "gone",
}

NAME = "victim"
SHAPE = (32, 3)
META = {"camera": "front", "n": [1, 2]}


@pytest.mark.parametrize("step", list(STEPS))
def test_daemon_killed_at_fault_step(daemons, step):
    # The daemon's own create and destroy (what clients of other users, and
    # every client of a daemon started so, use): direct ones make no step
    # of the daemon's (test_direct_create.py has their crashes).
    d = daemons.start_with_fault(step, "--no-direct-create")
    expected_values = np.zeros(SHAPE, "float32")
    expected_version = 0
    with pybridge.connect(d.socket) as c:
        if step.startswith("destroy:"):
            with c.create(NAME, SHAPE, "float32", meta=META) as seg:
                expected_values = np.arange(96, dtype="float32").reshape(SHAPE)
                with seg.write() as arr:
                    arr[...] = expected_values
                expected_version = seg.version
            request = lambda: c.destroy(NAME)  # noqa: E731
        else:
            request = lambda: c.create(NAME, SHAPE, "float32", meta=META)  # noqa: E731
        start = time.monotonic()
        with pytest.raises(pybridge.DaemonUnavailable):
            request()
        assert time.monotonic() - start < 5 * TIME_SCALE, "the request hung on the dying daemon"
    # The daemon really died at the step (else this test proves nothing).
    assert d.proc.wait(timeout=20) == -signal.SIGKILL, d.log()
    d.stop()
    left = staging(d)
    if step in ("create:sized", "create:reserved", "create:written"):
        assert len(left) == 1, f"no staging object at {step}: {objects(d)}"
    else:
        assert left == []

    restarted = daemons.start()  # no BRIDGED_FAULT
    assert staging(restarted) == [], "a staging object survived the restart"
    with pybridge.connect(restarted.socket) as c:
        assert c.stats()["quarantined"] == []
        assert_prefix_consistent(restarted, c)
        listed = [s["name"] for s in c.list()]
        if STEPS[step] == "there":
            assert listed == [NAME]
            info = c.info(NAME)
            assert info["dtype"] == "float32" and info["shape"] == list(SHAPE)
            assert info["meta"] == META
            assert info["version"] == expected_version
            assert info["attached"] == 0  # the dead daemon's attachments are gone
            with c.attach(NAME) as seg:  # the client validates the header
                assert np.array_equal(seg.array, expected_values)
                with seg.write(timeout=1) as arr:  # the lock is usable
                    arr[0, 0] = -1
            with pytest.raises(pybridge.AlreadyExists):
                c.create(NAME, SHAPE, "float32")
        else:
            assert listed == []
            assert objects(restarted) == []
            assert not object_path(restarted, NAME).exists()
            with pytest.raises(pybridge.NotFound):
                c.info(NAME)
            with pytest.raises(pybridge.NotFound):
                c.attach(NAME)
            with c.create(NAME, SHAPE, "float32", meta={"again": True}) as seg:
                assert not seg.array.any()
    stop_clean(restarted)
