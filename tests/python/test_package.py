# SPDX-License-Identifier: MIT
"""The package surface: exception table, typing marker, no exit-time cleanup."""
import ast
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
    assert issubclass(pybridge.NotFound, KeyError) and issubclass(pybridge.NotFound, LookupError)
    assert issubclass(pybridge.PermissionDenied, PermissionError)
    assert issubclass(pybridge.Timeout, TimeoutError)
    # `except KeyError` / `except PermissionError` catch only what they name.
    for cls in set(pybridge.ERRORS_BY_CODE.values()) - {pybridge.NotFound}:
        assert not issubclass(cls, LookupError), cls
    for cls in set(pybridge.ERRORS_BY_CODE.values()) - {pybridge.PermissionDenied}:
        assert not issubclass(cls, PermissionError), cls


def test_str_is_the_message_and_code_is_kept():
    for cls in set(pybridge.ERRORS_BY_CODE.values()):
        err = cls("may not attach 'x'")
        assert str(err) == "may not attach 'x'" == err.message
        assert err.code == cls.code
        assert cls("m", "other_code").code == "other_code"


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


# ---- the hand-written stub (_pybridge.pyi) against the built extension ----------

def _stub_function(node):
    """(kind, parameter names, how many have defaults) of a stub def."""
    decorators = {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
    kind = ("property" if "property" in decorators else
            "staticmethod" if "staticmethod" in decorators else "function")
    args = node.args
    params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    defaults = len(args.defaults) + sum(d is not None for d in args.kw_defaults)
    return kind, params, defaults


def _stub_surface():
    """What _pybridge.pyi (the one shipped with the package) declares:
    {name: kind or (kind, ...)}, classes as {"class": {member: ...}}."""
    tree = ast.parse((Path(pybridge.__file__).parent / "_pybridge.pyi").read_text())
    surface = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            surface[node.name] = _stub_function(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            surface[node.target.id] = "constant"
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                surface[target.id] = "constant"
        elif isinstance(node, ast.ClassDef):
            members = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members[item.name] = _stub_function(item)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members[item.target.id] = "attribute"
            surface[node.name] = {"class": members}
    return surface


def _nb_function(fn, kind):
    """(kind, parameter names, how many have defaults) of a nanobind function,
    from the signature nanobind records for it (__nb_signature__)."""
    (signature, _doc, defaults), *overloads = fn.__nb_signature__
    assert not overloads, f"{fn.__name__} is overloaded: give the stub @overload variants"
    tree = ast.parse(re.sub(r"\\\d+", "None", signature) + ": ...")
    args = tree.body[0].args
    params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return kind, params, len(defaults or ())


def _runtime_surface():
    """The same, introspected from the built pybridge._pybridge."""
    surface = {}
    for name, value in vars(_pybridge).items():
        if name.startswith("__") and name != "__version__":
            continue
        if isinstance(value, type):
            members = {}
            for member, attr in vars(value).items():
                kind = type(attr).__name__
                if member.startswith("__") and kind != "nb_method":
                    continue  # Python's own, or nanobind's __init__ refusing construction
                if isinstance(attr, property):
                    members[member] = ("property", ["self"], 0)
                elif kind == "nb_method":
                    members[member] = _nb_function(attr, "function")
                elif kind == "nb_func":  # def_static: a plain function in the class
                    members[member] = _nb_function(attr, "staticmethod")
                else:
                    members[member] = "attribute"
            surface[name] = {"class": members}
        elif type(value).__name__ == "nb_func":
            surface[name] = _nb_function(value, "function")
        else:
            surface[name] = "constant"
    return surface


def test_stub_matches_the_extension():
    """A binding added, removed or renamed (a function, a class, a method or
    property, a parameter) without the same change in _pybridge.pyi fails
    here, naming what differs."""
    stub, runtime = _stub_surface(), _runtime_surface()
    assert sorted(stub) == sorted(runtime), "module-level names differ"
    for name in runtime:
        if isinstance(runtime[name], dict):
            ours, theirs = stub[name]["class"], runtime[name]["class"]
            assert sorted(ours) == sorted(theirs), f"members of {name} differ"
            for member in theirs:
                assert ours[member] == theirs[member], f"{name}.{member}"
        else:
            assert stub[name] == runtime[name], name
