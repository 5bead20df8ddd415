"""Operations: the states a long-running call goes through, and the messages that report them.

An operation is a method call that runs in a thread of its own on the server and that clients
watch and cancel while it runs (the events are described with the rest of the RPC protocol in
:mod:`labwire.wire.rpc`). Its life is a small state machine, written out as a table
(:data:`TRANSITIONS`): it starts ``running``; a cancel request moves it to ``cancelling``
(the handler is told, and may clean up); it ends ``succeeded``, ``failed`` or ``cancelled``.
A handler that returns normally after a cancel request still ends ``succeeded``: its result is
real, and the caller gets it; one that raises anything once cancelled ends ``cancelled`` (what
it raised is the cancellation's consequence, e.g. a halted move).

Each progress report is an update numbered from 1: ``[seq, fraction, message, result]``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from labwire.errors import ProtocolError

__all__ = [
    "ENDED",
    "TRANSITIONS",
    "OperationInfo",
    "OperationState",
    "Update",
    "decode_info",
    "decode_updates",
    "next_state",
]


class OperationState(StrEnum):
    """Where an operation is in its life."""

    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Event(StrEnum):
    """What can happen to an operation."""

    CANCEL = "cancel"
    RETURN = "return"
    RAISE = "raise"
    STOP = "stop"


#: ``(state, event) -> new state``; a pair missing from the table leaves the state as it is.
TRANSITIONS: dict[tuple[OperationState, Event], OperationState] = {
    (OperationState.RUNNING, Event.CANCEL): OperationState.CANCELLING,
    (OperationState.RUNNING, Event.RETURN): OperationState.SUCCEEDED,
    (OperationState.RUNNING, Event.RAISE): OperationState.FAILED,
    (OperationState.CANCELLING, Event.RETURN): OperationState.SUCCEEDED,
    (OperationState.CANCELLING, Event.RAISE): OperationState.CANCELLED,
    (OperationState.CANCELLING, Event.STOP): OperationState.CANCELLED,
    (OperationState.RUNNING, Event.STOP): OperationState.CANCELLED,
}

#: The states an operation never leaves.
ENDED = frozenset({OperationState.SUCCEEDED, OperationState.FAILED, OperationState.CANCELLED})


def next_state(state: OperationState, event: Event) -> OperationState:
    """The state an operation in ``state`` moves to when ``event`` happens."""
    return TRANSITIONS.get((state, event), state)


class OperationInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a server says about an operation.

    Attributes:
        id: The operation id (unique per server incarnation, which it names).
        method: The method running.
        state: An :class:`OperationState` value.
        seq: The number of the last progress update.
        started: When it started, on the server's wall clock (seconds since the epoch).
        elapsed: Seconds it has run (until it ended).
        remaining: Seconds it should still run, estimated from its last progress fraction
            (None when it ended or reported no fraction yet).
        deadline: Seconds it may run in all, or None.
        on_disconnect: ``"cancel"`` or ``"finish"``: what happens once no client watches it.
        fraction: The last progress fraction reported (0..1), or None.
        message: The last progress message reported.
        error: Why it failed or was cancelled ("" otherwise).
        cause: Who cancelled it: ``"caller"`` (a client asked), ``"deadline"`` (it passed),
            ``"disconnect"`` (no client watched it) or ``"server"`` (stopping); "" if nobody.
        etype: The exception type it failed with ("" otherwise).
        traceback: The remote traceback of a failure ("" otherwise).
    """

    id: str
    method: str
    state: OperationState
    seq: int = 0
    started: float = 0.0
    elapsed: float = 0.0
    remaining: float | None = None
    deadline: float | None = None
    on_disconnect: str = "finish"
    fraction: float | None = None
    message: str = ""
    error: str = ""
    cause: str = ""
    etype: str = ""
    traceback: str = ""

    @property
    def ended(self) -> bool:
        """Whether the operation has ended (succeeded, failed or cancelled)."""
        return self.state in ENDED


class Update(msgspec.Struct, frozen=True, array_like=True):
    """One progress report.

    Attributes:
        seq: Its number, from 1.
        fraction: How much is done, 0..1, or None when unknown.
        message: What the handler says it is doing.
        result: An intermediate result, or None.
    """

    seq: int
    fraction: float | None
    message: str
    result: Any = None


def decode_info(value: Any) -> OperationInfo:
    """Read an operation's ``info`` object from a reply.

    Raises:
        ProtocolError: ``value`` is not an operation info object (the message says why).
    """
    try:
        return msgspec.convert(value, OperationInfo)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"bad operation info in reply: {exc}") from None


def decode_updates(value: Any) -> list[Update]:
    """Read the ``updates`` list of an OP_POLL reply.

    Raises:
        ProtocolError: ``value`` is not a list of updates.
    """
    try:
        return msgspec.convert(value if value is not None else [], list[Update])
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"bad operation updates in reply: {exc}") from None
