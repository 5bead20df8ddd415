"""Fixtures shared by every test package."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from labwire.testing import NamespaceNetwork, namespaces_unavailable
from labwire.transport import sockets
from tests.commands import Running


@pytest.fixture(params=["direct", "pyzmq"])
def transport_path(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Run a test once over labwire's direct libzmq calls and once over pyzmq alone.

    Sockets read the choice on every call, so it covers servers and clients of this process;
    ``LABWIRE_DIRECT`` carries it to the subprocesses the test starts.
    """
    if request.param == "pyzmq":
        monkeypatch.setattr(sockets, "_DIRECT", None)
        monkeypatch.setenv("LABWIRE_DIRECT", "0")
    elif sockets._DIRECT is None:
        pytest.fail("labwire.transport._direct is not built: install labwire with a C compiler")
    yield request.param


@contextlib.contextmanager
def namespace_network(subnet: str = "10.77.0.0/24") -> Iterator[NamespaceNetwork]:
    """Hosts in network namespaces on one bridge; skips the test where namespaces are missing."""
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    with NamespaceNetwork(subnet) as net:
        yield net


@pytest.fixture
def network() -> Iterator[NamespaceNetwork]:
    """A namespace network for a multi-host test (see :func:`namespace_network`)."""
    with namespace_network() as net:
        yield net


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    """Start long-running commands; every one is stopped when the test ends."""
    started: list[Running] = []

    def start(*args: str, registry: str | None = None) -> Running:
        command = Running(*args, registry=registry)
        started.append(command)
        return command

    try:
        yield start
    finally:
        for command in started:
            command.stop()
