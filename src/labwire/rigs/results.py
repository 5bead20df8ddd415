"""What came back from each rig: a reply, a remote error or a timeout, never thrown away."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labwire.errors import CallTimeout, LabwireError, RemoteError
from labwire.wire.rigs import ExpMessage

__all__ = ["RigResult", "RigResults", "RigsFailed"]


@dataclass(frozen=True, slots=True)
class RigResult:
    """One rig's outcome for one message.

    Attributes:
        name: The rig's name.
        message: The message sent.
        data: The reply items (what follows the code on the wire), or None on failure.
        error: None on success; otherwise a :class:`~labwire.errors.RemoteError` (the rig
            refused or its handler failed), :class:`~labwire.errors.CallTimeout` (no reply in
            time: outcome unknown) or another labwire error (the rig cannot be reached).
        elapsed: Seconds from sending to the outcome.
    """

    name: str
    message: ExpMessage
    data: list[Any] | None
    error: LabwireError | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the rig replied."""
        return self.error is None

    @property
    def outcome(self) -> str:
        """``"reply"``, ``"error"`` (remote), ``"timeout"`` or ``"unavailable"``."""
        if self.error is None:
            return "reply"
        if isinstance(self.error, RemoteError):
            return "error"
        if isinstance(self.error, CallTimeout):
            return "timeout"
        return "unavailable"


class RigsFailed(LabwireError):
    """Not every rig replied; names every failed rig and keeps every result.

    Attributes:
        results: The per-rig results (replies included).
        failed: Names of the rigs that did not reply.
    """

    def __init__(self, results: RigResults) -> None:
        self.results = results
        self.failed = [r.name for r in results.values() if not r.ok]
        details = "; ".join(f"{r.name}: {r.outcome} ({r.error})" for r in results.failed.values())
        super().__init__(f"{results.message.name}: {len(self.failed)} rig(s) failed: {details}")

    @property
    def replies(self) -> dict[str, list[Any] | None]:
        """The replies that did come in, by rig name."""
        return self.results.replies


class RigResults(Mapping[str, RigResult]):
    """The outcome of one push: a read-only map of rig name to :class:`RigResult`.

    Args:
        message: The message pushed.
        results: The results in the order the rigs were given to the coordinator.
    """

    def __init__(self, message: ExpMessage, results: Mapping[str, RigResult]) -> None:
        self.message = message
        self._results = dict(results)

    def __getitem__(self, name: str) -> RigResult:
        return self._results[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)

    def __repr__(self) -> str:
        outcomes = ", ".join(f"{n}={r.outcome}" for n, r in self._results.items())
        return f"RigResults({self.message.name}: {outcomes})"

    @property
    def ok(self) -> bool:
        """Whether every rig replied."""
        return all(r.ok for r in self._results.values())

    @property
    def replies(self) -> dict[str, list[Any] | None]:
        """The reply items of every rig that replied, by name."""
        return {n: r.data for n, r in self._results.items() if r.ok}

    @property
    def failed(self) -> dict[str, RigResult]:
        """The results of the rigs that did not reply, by name."""
        return {n: r for n, r in self._results.items() if not r.ok}

    def raise_for_failures(self) -> RigResults:
        """Return self when every rig replied.

        Raises:
            RigsFailed: One error naming every failed rig (the results ride along).
        """
        if not self.ok:
            raise RigsFailed(self)
        return self

    def collate(self) -> dict[str, list[Any] | None] | RigsFailed:
        """The seed's ``push(wait=True)`` value: the replies by name, or the error.

        The error (returned, not raised) comes when not every rig replied; it keeps the
        partial replies.
        """
        return self.replies if self.ok else RigsFailed(self)
