# SPDX-License-Identifier: MIT
"""pybridge.EventStream: the daemon's events, from :meth:`Client.events`."""
from __future__ import annotations

import json
from typing import Any, Dict, Iterator, Optional

from . import _pybridge
from .errors import Closed


class EventStream:
    """An iterator over daemon events, in the order the daemon saw them::

        with client.events("frames") as events:
            for event in events:                  # blocks; Ctrl-C works
                print(event["event"], event["version"])
            event = events.next(timeout=1.0)      # raises pybridge.Timeout after 1 s

    Each event is a dict ``{"event", "name", "segment_id", "version",
    "meta_version", "pid", "time_unix_ms"}`` where ``"event"`` is
    ``"created"``, ``"destroyed"``, ``"meta_changed"`` or ``"committed"``
    (the objects ``bridgectl watch --json`` prints). Commits faster than the
    reader coalesce into one ``committed`` event with the latest version.
    Only segments this user may attach are reported.

    The stream outlives its daemon: when the daemon restarts (or drops this
    subscriber for falling too far behind) the stream subscribes again by
    itself and yields ``{"event": "reconnected", ...}``, since events in
    between may be missing: list the segments again.

    The stream has a connection of its own. Waiting releases the GIL. One
    thread reads at a time; :meth:`close` may be called from any thread, and
    ends a blocked iteration (StopIteration) or ``next()`` (Closed).
    """

    __slots__ = ("_core",)

    def __init__(self, core: _pybridge.EventStream) -> None:
        self._core = core

    @property
    def name(self) -> Optional[str]:
        """The segment name this stream is filtered to (None: every segment)."""
        return self._core.name

    @property
    def closed(self) -> bool:
        return not self._core.is_open

    def next(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The next event, waiting up to ``timeout`` seconds (None: forever).
        Raises Timeout when the timeout passes first (as every wait in
        pybridge does), Closed after close()."""
        return json.loads(self._core.next_json(timeout))

    @property
    def reconnects(self) -> int:
        """How many times the stream subscribed again after losing the daemon."""
        return self._core.reconnects

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        try:
            return self.next()
        except Closed:
            raise StopIteration from None

    def close(self) -> None:
        """Ends the subscription. Idempotent."""
        self._core.close()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        target = "every segment" if self.name is None else repr(self.name)
        return f"<pybridge.EventStream {target} {state}>"
