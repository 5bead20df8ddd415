"""The duplicate table of an RPC server: replies kept to answer a repeated request again.

Requests from labwire clients carry a client id and a request id. A request seen before (a
client's retry after a lost reply) is answered from this table instead of running twice.
Replies are kept in two generations: the newer takes every reply and retires the older once
it holds ``ENTRIES`` replies or is ``SECONDS`` old. So a reply is kept for at least
``ENTRIES`` later replies or ``SECONDS`` (whichever ends first), and for at most twice that.
Replies over ``MAX_BYTES`` are remembered (a repeat is refused) but not kept.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ENTRIES", "MAX_BYTES", "SECONDS", "ReplyCache"]

ENTRIES = 2048
SECONDS = 30.0
MAX_BYTES = 64 * 1024

Key = tuple[str, int]


class ReplyCache:
    """Replies by (client id, request id); None for a request running or too large to keep.

    Used by one thread at a time (the runner that owns the server's socket).
    """

    __slots__ = ("_older", "_recent", "_since")

    def __init__(self, now: float) -> None:
        self._recent: dict[Key, list[Any] | None] = {}
        self._older: dict[Key, list[Any] | None] = {}
        self._since = now

    def __contains__(self, key: Key) -> bool:
        return key in self._recent or key in self._older

    def get(self, key: Key) -> list[Any] | None:
        """The reply kept for ``key`` (None: running, or too large to keep); KeyError if none."""
        recent = self._recent
        return recent[key] if key in recent else self._older[key]

    def mark_running(self, key: Key) -> None:
        """Remember that the request ``key`` is running: a repeat must not run it again."""
        self._recent[key] = None

    def remember(self, key: Key, body: list[Any], now: float) -> None:
        """Keep the reply ``body`` sent for ``key`` at ``now``."""
        size = len(body[0]) if len(body) == 1 else sum(memoryview(f).nbytes for f in body)
        recent = self._recent
        recent[key] = body if size <= MAX_BYTES else None
        if len(recent) >= ENTRIES or now - self._since >= SECONDS:
            self._retire(now)

    def age(self, now: float) -> None:
        """Let replies age out while no new ones arrive to push them (call when idle)."""
        if now - self._since >= SECONDS:
            self._retire(now)

    def _retire(self, now: float) -> None:
        """Forget the older generation of replies; the newer becomes the older."""
        self._older, self._recent, self._since = self._recent, {}, now
