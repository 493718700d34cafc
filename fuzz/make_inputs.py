#!/usr/bin/env python3
"""Writes the request fuzzer's seed corpus (fuzz/corpus/) and hand-made nasty
inputs (fuzz/regressions/). Deterministic: rerun after changing it and commit
what it writes. Crash reproducers found by fuzzing are copied into
regressions/ by hand (keep their names: crash-<sha1>) and are not touched here.

Input format (see request_fuzzer.cpp): one control byte, then a byte stream of
4-byte little-endian length prefixes and JSON payloads.
"""

import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

AUTO = 0x00  # the fuzzer sends a valid hello first
NO_HELLO = 0x07  # the stream greets by itself
UNDO_CREATES = 0x18  # every create's reply "cannot be delivered"
DROP_SUBSCRIBERS = 0x60  # event delivery fails
OTHER_USERS = 0x80  # every second connection is another uid (this uid + 4242)
STRANGER = 4242  # that uid when the fuzzer runs as root (as CI does)

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128"]


def frame(payload):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload, separators=(",", ":"))
    if isinstance(payload, str):
        payload = payload.encode("utf-8", "surrogatepass")
    return struct.pack("<I", len(payload)) + payload


def req(rid, op, **body):
    return frame(dict(id=rid, op=op, **body))


def stream(control, *frames):
    return bytes([control]) + b"".join(frames)


def hello(rid=0, protocol=2):
    return req(rid, "hello", protocol=protocol, client="seed")


def create(rid, name, shape=(4,), dtype="uint8", meta=None):
    body = dict(name=name, dtype=dtype, shape=list(shape))
    if meta is not None:
        body["meta"] = meta
    return req(rid, "create", **body)


def raw_create(rid, fields):
    """A create whose body is given as JSON text fragments (for bad tokens)."""
    return frame('{"id":%d,"op":"create",%s}' % (rid, fields))


SEEDS = {
    "session": stream(AUTO,
                      create(1, "frames", (4, 5, 3), meta={"camera": "front"}),
                      req(2, "attach", name="frames"),
                      req(3, "set_meta", name="frames", meta={"camera": "rear", "n": [1, 2]}),
                      req(4, "list"),
                      req(5, "info", name="frames"),
                      req(6, "stats"),
                      req(7, "detach", name="frames", segment_id=1),
                      req(8, "destroy", name="frames"),
                      req(9, "list")),
    "every-dtype": stream(AUTO, *[create(i + 1, "dt-" + d, (2, 3), d)
                                  for i, d in enumerate(DTYPES)], req(99, "list")),
    "explicit-hello": stream(NO_HELLO, hello(7), req(8, "list"), create(9, "a", (1,)),
                             req(10, "destroy", name="a")),
    "subscribe-then-changes": stream(AUTO, req(1, "subscribe"),
                                     create(2, "watched", (8,), "float32"),
                                     req(3, "set_meta", name="watched", meta={"k": 1}),
                                     req(4, "destroy", name="watched")),
    "subscribe-one-name": stream(AUTO, req(1, "subscribe", name="one"), create(2, "one", (2,)),
                                 create(3, "other", (2,)), req(4, "destroy", name="one")),
    "undo-creates": stream(UNDO_CREATES, create(1, "undone", (16,)), req(2, "list"),
                           create(3, "undone", (16,)), req(4, "info", name="undone")),
    "drop-subscribers": stream(DROP_SUBSCRIBERS, req(1, "subscribe"), create(2, "x", (1,)),
                               create(3, "y", (1,))),
    "shapes": stream(AUTO, create(1, "scalar", ()), create(2, "empty", (0, 3)),
                     create(3, "wide", (1,) * 32), create(4, "max", (1 << 20,)),
                     create(5, "big-empty", (0, 1 << 62)), req(6, "list")),
    # After subscribe the stream continues on a new connection: another user.
    "grant-to-another-user": stream(OTHER_USERS, create(1, "shared", (4,)),
                                    req(2, "grant", name="shared", uid=STRANGER, access="read"),
                                    create(3, "private", (4,)), req(4, "subscribe"),
                                    req(5, "attach", name="shared"), req(6, "info", name="shared"),
                                    req(7, "set_meta", name="shared", meta={"x": 1}),
                                    req(8, "destroy", name="shared"),
                                    req(9, "attach", name="private"),
                                    req(10, "grant", name="shared", uid=STRANGER, access="write"),
                                    create(11, "theirs", (2,)),
                                    req(12, "grant", name="theirs", uid=0, access="read"),
                                    req(13, "grant", name="theirs", uid=7, access="write"),
                                    req(14, "list")),
    "grant-write-then-revoke": stream(OTHER_USERS, create(1, "w", (8,), "float64"),
                                      req(2, "grant", name="w", uid=STRANGER, access="write"),
                                      req(3, "grant", name="w", uid=99, access="read"),
                                      req(4, "info", name="w"), req(5, "subscribe", name="w"),
                                      req(6, "attach", name="w"),
                                      req(7, "set_meta", name="w", meta={"by": "stranger"}),
                                      req(8, "subscribe"), req(9, "grant", name="w",
                                                               uid=STRANGER, access="none"),
                                      req(10, "subscribe"), req(11, "attach", name="w"),
                                      req(12, "destroy", name="w")),
    # Notices ("reply": false): detach and reattach, right and wrong.
    "notices": stream(AUTO, create(1, "n", (4,)), req(2, "attach", name="n"),
                      req(3, "reattach", name="n", segment_id=1, reply=False),
                      req(4, "detach", name="n", segment_id=1, reply=False),
                      req(5, "reattach", name="ghost", segment_id=7, reply=False),
                      req(6, "detach", name="n", segment_id=2, reply=False),
                      req(7, "list", reply=False), req(8, "create", name="m", dtype="uint8",
                                                       shape=[1], reply=False),
                      req(9, "detach", name="n", segment_id=1, reply="no"),
                      req(10, "info", name="n"), req(11, "destroy", name="n")),
    # Streams: made (right and wrong), opened both ways, mistaken for segments.
    "streams": stream(AUTO, req(1, "create_stream", name="cam", dtype="uint8", shape=[4, 4, 3],
                                slots=4, overflow="block", meta={"fps": 60}),
                      req(2, "open_stream", name="cam", role="publish"),
                      req(3, "open_stream", name="cam", role="subscribe"),
                      req(4, "attach", name="cam"), create(5, "plain", (4,)),
                      req(6, "open_stream", name="plain", role="subscribe"),
                      req(7, "create_stream", name="one", dtype="uint8", shape=[1], slots=1),
                      req(8, "create_stream", name="odd", dtype="uint8", shape=[1], slots=4,
                          overflow="sideways"),
                      req(9, "open_stream", name="cam", role="spectate"),
                      req(14, "open_stream", name="cam", role="reader_table", table=0),
                      req(15, "open_stream", name="cam", role="reader_table", table=4294967295),
                      req(10, "info", name="cam"), req(11, "list"),
                      req(12, "destroy", name="cam"), req(13, "destroy", name="plain")),
    # A read grantee (after subscribe: another user) subscribes to a stream,
    # and may not publish to it or destroy it.
    "stream-read-grant": stream(OTHER_USERS,
                                req(1, "create_stream", name="cam", dtype="uint8", shape=[8],
                                    slots=2),
                                req(2, "grant", name="cam", uid=STRANGER, access="read"),
                                req(3, "subscribe"),
                                req(4, "open_stream", name="cam", role="subscribe"),
                                req(5, "open_stream", name="cam", role="publish"),
                                req(6, "open_stream", name="cam", role="reader_table", table=0),
                                req(7, "destroy", name="cam"), req(8, "info", name="cam")),
    "errors": stream(AUTO, req(1, "attach", name="ghost"), create(2, "twice", (1,)),
                     create(3, "twice", (1,)), req(4, "info", name="ghost"),
                     req(5, "set_meta", name="ghost", meta={}), req(6, "destroy", name="ghost"),
                     req(7, "detach", name="ghost", segment_id=5)),
}

DEEP = 10_000
BIG_META = {"pad": "x" * (64 * 1024 - len('{"pad":""}'))}
OVER_META = {"pad": "x" * (64 * 1024 + 1 - len('{"pad":""}'))}

REGRESSIONS = {
    # Framing.
    "prefix-ffffffff": stream(AUTO, b"\xff\xff\xff\xff"),
    "prefix-over-request-limit": stream(AUTO, struct.pack("<I", (1 << 20) + 1) + b"{}"),
    "prefix-zero": stream(AUTO, b"\0\0\0\0", req(1, "list")),
    "truncated-prefix": stream(AUTO, b"\x10\0"),
    "truncated-body": stream(AUTO, b"\x40\0\0\0{\"id\":1,"),
    "garbage": stream(AUTO, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    # JSON that must be refused before or while parsing.
    "deep-array": stream(AUTO, frame("[" * DEEP + "]" * DEEP), req(1, "list")),
    "deep-meta": stream(AUTO, raw_create(1, '"name":"d","dtype":"uint8","shape":[1],"meta":{"a":'
                                         + "[" * DEEP + "]" * DEEP + "}"), req(2, "list")),
    "deep-unbalanced": stream(AUTO, frame("]" * 100 + "[" * DEEP), req(1, "list")),
    "deep-in-string-then-real": stream(AUTO, frame('{"s":"' + "[" * 100 + '","a":' + "[" * 70
                                                   + "]" * 70 + "}")),
    "nan-infinity": stream(AUTO, raw_create(1, '"name":"n","dtype":"uint8","shape":[NaN]'),
                           raw_create(2, '"name":"n","dtype":"uint8","shape":[Infinity]'),
                           raw_create(3, '"name":"n","dtype":"uint8","shape":[1],"meta":{"x":NaN}'),
                           raw_create(4, '"name":"n","dtype":"uint8","shape":[-Infinity]')),
    "1e400": stream(AUTO, raw_create(1, '"name":"e","dtype":"uint8","shape":[1e400]'),
                    raw_create(2, '"name":"e","dtype":"uint8","shape":[1],"meta":{"x":1e400,'
                                  '"y":-1e400,"z":1e-400}'),
                    req(3, "info", name="e"), req(4, "set_meta", name="e", meta={}),
                    frame('{"id":1e400,"op":"list"}')),
    "huge-numbers": stream(AUTO, create(1, "h", (1 << 63,)), create(2, "h", (1 << 64,)),
                           create(3, "h", (-1,)), create(4, "h", (-(1 << 63),)),
                           create(5, "h", (2, 13, 419, 691, 823, 2977518503)),
                           create(6, "h", (1,) * 33), create(7, "h", ((1 << 20) + 1,)),
                           create(8, "h", (1 << 17,), "float64"),
                           create(9, "h", (1 << 32, 1 << 32)),
                           raw_create(10, '"name":"h","dtype":"uint8","shape":'
                                      '[123456789012345678901234567890]'),
                           req(11, "detach", name="h", segment_id=-1),
                           req(12, "detach", name="h", segment_id=1 << 64),
                           req(1 << 64, "list"), req(-1, "list"), req(18446744073709551615, "list")),
    "wrong-types": stream(AUTO,
                          req(1, "create", name=5, dtype="uint8", shape=[1]),
                          req(2, "create", name="w", dtype="uint8", shape="3"),
                          req(3, "create", name="w", dtype={"a": 1}, shape=[1]),
                          req(4, "create", name="w", dtype="uint8", shape=[1], meta=[1]),
                          req(5, "create", name="w", dtype="uint8", shape=[1.5]),
                          req(6, "create", name="w", dtype="uint8", shape=[True]),
                          req(7, "create", name="w", dtype="uint8", shape=[[1]]),
                          req(8, "create", name="w", dtype="uint8", shape=None),
                          req(9, "create", name=None, dtype=None, shape=None, meta=None),
                          req(10, "create", name="w", dtype=7, shape={"0": 1}, meta="m"),
                          req(11, "attach", name=["w"]), req(12, "info", name={"n": "w"}),
                          req(13, "set_meta", name="w", meta=None),
                          req(14, "detach", name="w", segment_id="1"),
                          req(15, "subscribe", name=3), req(16, "hello", protocol="1"),
                          frame('{"id":"17","op":"list"}'), frame('{"id":18,"op":5}'),
                          frame('{"id":19.5,"op":"list"}'), frame('{"id":true,"op":"list"}'),
                          frame('{"id":20,"op":"list","name":{}}'), create(21, "g", (1,)),
                          req(22, "grant", name="g", uid="7", access="read"),
                          req(23, "grant", name="g", uid=-7, access="read"),
                          req(24, "grant", name="g", uid=1 << 32, access="read"),
                          req(25, "grant", name="g", uid=7, access="admin"),
                          req(26, "grant", name="g", uid=7, access=1),
                          req(27, "grant", name="g", uid=0, access="write"),
                          req(28, "grant", name="g", uid=7), req(29, "list")),
    "missing-fields": stream(AUTO, req(1, "create"), req(2, "create", name="m"),
                             req(3, "create", name="m", dtype="uint8"),
                             req(4, "create", name="m", shape=[1]), req(5, "attach"),
                             req(6, "detach", name="m"), req(7, "set_meta", name="m"),
                             req(8, "info"), req(9, "destroy"), frame('{"op":"list"}'),
                             frame('{"id":10}'), frame("{}"), req(11, "hello")),
    "invalid-utf8": stream(AUTO, frame(b'{"id":1,"op":"create","name":"caf\xc3","dtype":"uint8",'
                                       b'"shape":[1]}'),
                           frame(b'{"id":2,"op":"create","name":"m","dtype":"uint8","shape":[1],'
                                 b'"meta":{"k":"\xff\xfe"}}'),
                           frame(b'{"id":3,"op":"create","name":"m","dtype":"uint8","shape":[1],'
                                 b'"meta":{"\xed\xa0\x80":1}}'),
                           frame(b'{"id":4,"op":"list","x":"\xc0\xaf"}'),
                           frame('{"id":5,"op":"create","name":"\\ud800","dtype":"uint8",'
                                 '"shape":[1]}'),
                           frame('{"id":6,"op":"create","name":"s","dtype":"uint8","shape":[1],'
                                 '"meta":{"k":"\\udc00\\ud800"}}'),
                           frame(b"\xef\xbb\xbf" + b'{"id":7,"op":"list"}'),
                           req(8, "list")),
    "names": stream(AUTO, *[create(i + 1, n, (1,)) for i, n in enumerate(
        ["", ".", "..", "../x", "a/b", "/abs", "a\0b", "a" * 129, "caf\u00e9", " ", "a b",
         "\u2028", "-", "_", "a" * 128])],
                    req(50, "attach", name="a\0b"), req(51, "subscribe", name="../x"),
                    req(52, "list")),
    "meta-limits": stream(AUTO, create(1, "m", (1,), meta=BIG_META),
                          create(2, "m2", (1,), meta=OVER_META),
                          req(3, "set_meta", name="m", meta=OVER_META),
                          req(4, "set_meta", name="m", meta=BIG_META), req(5, "info", name="m")),
    "greeting": stream(NO_HELLO, req(1, "list"), req(2, "create", name="g", dtype="uint8",
                                                     shape=[1]),
                       hello(3, protocol=999), hello(4, protocol=1 << 32), hello(5, protocol=-1),
                       hello(6), hello(7), req(8, "list")),
    "json-oddities": stream(AUTO, frame('{"id":1,"op":"list","op":"stats"}'),
                            frame('{"id":2,"op":"list"} trailing'),
                            frame('{"id":3,"op":"list"}\0'), frame(' \n\t{"id":4,"op":"list"} '),
                            frame('{"id":5,"op":"list",}'), frame('{"id":6,"op":"li\\u0073t"}'),
                            frame('{"id":7,"op":"list\\u0000"}'), frame('"just a string"'),
                            frame("null"), frame("[]"), frame("1"), frame('{"id":-0,"op":"list"}'),
                            frame('{"id":8,"op":"create","name":"dup","name":"a/b","dtype":"uint8",'
                                  '"shape":[1]}')),
    "subscribed-then-more": stream(AUTO, req(1, "subscribe"), req(2, "subscribe"),
                                   req(3, "subscribe", name="z"), create(4, "z", (1,)),
                                   req(5, "set_meta", name="z", meta={"v": 2}),
                                   req(6, "destroy", name="z")),
}


def write(folder, inputs):
    path = os.path.join(HERE, folder)
    os.makedirs(path, exist_ok=True)
    for name, data in inputs.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


def main():
    write("corpus", SEEDS)
    write("regressions", REGRESSIONS)
    print(f"wrote {len(SEEDS)} seeds and {len(REGRESSIONS)} regression inputs", file=sys.stderr)


if __name__ == "__main__":
    main()
