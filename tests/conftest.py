"""Fixtures shared by every test package."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from labwire.testing import NamespaceNetwork, namespaces_unavailable
from tests.commands import Running


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
