# SPDX-License-Identifier: MIT
"""The package surface: exception table, typing marker, no exit-time cleanup."""
import re
from pathlib import Path

import pytest

import pybridge
from pybridge import _pybridge
from pb_helpers import run_python


def camel(code):
    return "".join(part.capitalize() for part in code.split("_"))


def test_every_cpp_error_code_has_a_class():
    codes = _pybridge.error_codes()
    assert len(codes) == 16 and len(set(codes)) == len(codes)
    assert tuple(codes) == pybridge.ERROR_CODES
    for code in codes:
        cls = pybridge.ERRORS_BY_CODE[code]
        assert cls.__name__ == camel(code)
        assert getattr(pybridge, cls.__name__) is cls
        assert issubclass(cls, pybridge.BridgeError)
        assert cls.code == code
        instance = cls("message")
        assert instance.code == code and str(instance) == "message"
    assert set(pybridge.ERRORS_BY_CODE) == set(codes)


def test_builtin_bases():
    assert issubclass(pybridge.InvalidArgument, ValueError)
    assert issubclass(pybridge.TypeMismatch, TypeError)
    assert issubclass(pybridge.BridgeError, Exception)
    assert not issubclass(pybridge.NotFound, (ValueError, TypeError))


def test_spec_class_names():
    for name in ["InvalidArgument", "NotFound", "AlreadyExists", "PermissionDenied", "NoSpace",
                 "DaemonUnavailable", "ProtocolError", "ProtocolMismatch", "TypeMismatch",
                 "CorruptSegment", "LimitExceeded", "IoError", "Internal", "Closed"]:
        assert issubclass(getattr(pybridge, name), pybridge.BridgeError)


def test_py_typed_and_stub_ship_with_the_package():
    here = Path(pybridge.__file__).parent
    assert (here / "py.typed").exists()
    assert (here / "_pybridge.pyi").exists()


def test_version():
    assert re.fullmatch(r"\d+\.\d+\.\d+", pybridge.__version__)


def test_public_names():
    for name in pybridge.__all__:
        assert hasattr(pybridge, name), name


def test_no_exit_hooks_or_resource_tracker(daemon):
    out = run_python("""
        import atexit, sys
        import pybridge  # (nanobind itself registers one typing-cache cleanup)
        before = atexit._ncallbacks()
        c = pybridge.connect(sys.argv[1])
        s = c.create("x", (2,), "uint8")
        a = s.array
        print(atexit._ncallbacks() - before, "multiprocessing.resource_tracker" in sys.modules)
        s.close(); c.destroy("x"); c.close()
    """, daemon.socket)
    assert out.stdout.split() == ["0", "False"]


def test_no_leak_warnings_at_exit(daemon):
    """nanobind reports leaked instances at shutdown; a script that exits with
    live clients, segments and arrays must not trigger that."""
    out = run_python("""
        import sys, pybridge
        c = pybridge.connect(sys.argv[1])
        s = c.create("x", (2,), "uint8")
        a = s.array
        t = c.attach("x")
        holder = [c, s, t, a]
        holder.append(holder)  # a cycle, collected at shutdown
    """, daemon.socket)
    assert "leak" not in out.stderr.lower(), out.stderr
