"""The server's compiled lane: which calls it answers, and that the rest still get answers.

Over labwire's direct libzmq calls, a common compact call (a JSON method, scalar arguments, no
keywords) is answered without entering the server's Python request path; over pyzmq alone
every request takes that path. Either way each call gets the same answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from labwire.rpc import NoResult
from tests.rpc.devices import Camera, CameraClient

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("transport_path")]


@pytest.fixture
def entered(camera: Camera) -> Iterator[list[Any]]:
    """The requests that entered the server's Python request path (``_on_message``)."""
    seen: list[Any] = []
    general = camera._on_message

    def counting(identity: bytes, parts: list[Any], origin: Any) -> None:
        seen.append(parts)
        general(identity, parts, origin)

    camera._on_message = counting  # type: ignore[method-assign]
    yield seen
    del camera._on_message


def test_common_calls_are_answered_by_the_lane(
    camera: Camera, client: CameraClient, entered: list[Any], transport_path: str
) -> None:
    requests = camera.stats.requests
    assert [client.add(i) for i in range(30)] == list(range(1, 31))
    assert client.echo("text") == "text" and client.echo(None) is None
    assert client.echo(2.5) == 2.5 and client.echo(True) is True
    assert camera.stats.requests - requests == 34
    assert len(entered) == (0 if transport_path == "direct" else 34)


def test_a_failure_or_a_result_that_is_not_a_scalar_is_answered_by_the_server(
    camera: Camera, client: CameraClient, entered: list[Any], transport_path: str
) -> None:
    result = client.fail("broken lens")
    assert isinstance(result, NoResult) and result.error_type == "ValueError"
    assert "raise ValueError(message)" in result.traceback
    unsent = client.unserialisable()
    assert isinstance(unsent, NoResult) and "cannot be sent" in unsent.error
    # The lane ran both handlers; the server's Python code wrote the replies.
    assert len(entered) == (0 if transport_path == "direct" else 2)
    assert client.add(1) == 2  # and the lane goes on


def test_calls_the_lane_declines_take_the_general_path(
    client: CameraClient, entered: list[Any], transport_path: str
) -> None:
    assert client.add(1, b=5) == 6  # keyword arguments
    assert client.echo([1, {"a": 2}]) == [1, {"a": 2}]  # containers
    assert client.echo(-(2**62)) == -(2**62)
    assert len(entered) == (2 if transport_path == "direct" else 3)
