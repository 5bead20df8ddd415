"""Operation messages and the operation state machine, without sockets."""

from __future__ import annotations

from typing import Any

import pytest

from labwire.errors import ProtocolError
from labwire.wire.operations import (
    ENDED,
    TRANSITIONS,
    Event,
    OperationState,
    Update,
    decode_info,
    decode_updates,
    next_state,
)
from labwire.wire.rpc import ExtensionEvents, parse_request


def test_op_start_reads_a_call_and_a_deadline() -> None:
    header = {
        "event": "OP_START",
        "method": "move_to",
        "params": {"args": [1, 2], "kwargs": {"z": 3}},
        "deadline": 1500,
        "lw": {"v": 1, "cid": "ab", "rid": 4},
    }
    request = parse_request(header)
    assert request.event == ExtensionEvents.OP_START
    assert (request.name, request.args, request.kwargs, request.value) == (
        "move_to",
        [1, 2],
        {"z": 3},
        1500,
    )


def test_op_poll_and_cancel_read_the_id() -> None:
    poll = parse_request({"event": "OP_POLL", "op": "abc-1", "after": 7, "lw": {"v": 1}})
    assert (poll.name, poll.value) == ("abc-1", 7)
    cancel = parse_request({"event": "OP_CANCEL", "op": "abc-1", "reason": "no", "lw": {"v": 1}})
    assert (cancel.name, cancel.value) == ("abc-1", "no")
    assert parse_request({"event": "OP_LIST", "lw": {"v": 1}}).event == "OP_LIST"


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ({"event": "OP_START"}, "needs a 'method' field"),
        ({"event": "OP_START", "method": "m", "deadline": -1}, "'deadline'"),
        ({"event": "OP_START", "method": "m", "deadline": True}, "'deadline'"),
        ({"event": "OP_START", "method": "m", "params": []}, "'params'"),
        ({"event": "OP_POLL"}, "needs a 'op' field"),
        ({"event": "OP_POLL", "op": ""}, "1 to 64 characters"),
        ({"event": "OP_POLL", "op": "x" * 65}, "1 to 64 characters"),
        ({"event": "OP_POLL", "op": "a", "after": -1}, "'after'"),
        ({"event": "OP_POLL", "op": "a", "after": 1.5}, "'after'"),
        ({"event": "OP_CANCEL", "op": "a", "reason": 3}, "'reason'"),
        ({"event": "OP_CANCEL", "op": "a", "reason": "r" * 300}, "'reason'"),
    ],
)
def test_bad_operation_requests_are_named(header: dict[str, Any], words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_request({**header, "lw": {"v": 1}})


def test_the_state_table() -> None:
    running, cancelling = OperationState.RUNNING, OperationState.CANCELLING
    assert next_state(running, Event.CANCEL) == cancelling
    assert next_state(running, Event.RETURN) == OperationState.SUCCEEDED
    assert next_state(running, Event.RAISE) == OperationState.FAILED
    # Once cancelled, whatever the handler raises is the cancellation's consequence...
    assert next_state(cancelling, Event.RAISE) == OperationState.CANCELLED
    # ...but a result it still returns is real.
    assert next_state(cancelling, Event.RETURN) == OperationState.SUCCEEDED
    for state in ENDED:  # an ended operation never moves
        for event in Event:
            assert next_state(state, event) == state
            assert (state, event) not in TRANSITIONS


def test_info_and_updates_are_checked() -> None:
    info = decode_info({"id": "s-1", "method": "m", "state": "running", "seq": 2})
    assert not info.ended and info.seq == 2
    assert decode_info({"id": "s-1", "method": "m", "state": "cancelled"}).ended
    assert decode_updates([[1, 0.5, "half", None]]) == [Update(1, 0.5, "half", None)]
    assert decode_updates(None) == []
    with pytest.raises(ProtocolError, match="bad operation info"):
        decode_info({"id": "s-1", "method": "m", "state": "exploded"})
    with pytest.raises(ProtocolError, match="bad operation updates"):
        decode_updates([["one", 0.5, "half"]])
