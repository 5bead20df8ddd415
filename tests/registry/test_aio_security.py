"""The asyncio registry client against a secured registry: refused handshakes fail fast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labwire.config import Settings
from labwire.errors import AuthenticationError
from labwire.registry import AsyncRegistryClient, DeviceRegistry, WatchEventKind
from labwire.transport import Transport
from labwire.transport.security import Security
from tests.registry.conftest import HEARTBEAT
from tests.registry.test_security import Keys, foreign_publisher_registry

pytestmark = pytest.mark.timeout(15)

#: Longest time a refused handshake may take to be reported.
QUICK = 1.0


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def secured_registry(keys: Keys) -> Iterator[DeviceRegistry]:
    security = Security(
        secret_key=keys.secret["registry"],
        allowed_keys=frozenset({keys.public["user"]}),
    )
    service = DeviceRegistry(
        Transport(None, Settings(security=security)),
        "127.0.0.1",
        "0",
        heartbeat_interval=HEARTBEAT,
    )
    service.start()
    yield service
    service.stop()


def test_allowed_client_lists_devices(secured_registry, keys):
    async def scenario() -> None:
        settings = keys.client("user")
        async with AsyncRegistryClient(secured_registry.url, settings=settings) as client:
            assert await client.list_devices() == []
            async with await client.watch() as watch:
                snapshot = await watch.next_event(timeout=5)
                assert snapshot is not None and snapshot.kind == WatchEventKind.SNAPSHOT
                assert snapshot.devices == ()

    asyncio.run(asyncio.wait_for(scenario(), 10))


@pytest.mark.parametrize("who", ["stranger", "wrong-registry-key"])
def test_refused_client_fails_fast(secured_registry, keys, who):
    if who == "stranger":
        settings = keys.client("stranger")
    else:
        settings = keys.client("user", registry_key=keys.public["device"])
    authenticator = secured_registry.transport.authenticator
    assert authenticator is not None
    denied_before = authenticator.denied_count

    async def scenario() -> None:
        async with AsyncRegistryClient(secured_registry.url, settings=settings, timeout=5) as c:
            started = time.monotonic()
            with pytest.raises(AuthenticationError):
                await c.list_devices()
            assert time.monotonic() - started < QUICK
            started = time.monotonic()
            with pytest.raises(AuthenticationError):  # at once, without a new handshake
                await c.list_devices()
            assert time.monotonic() - started < 0.2
            if who == "stranger":
                assert authenticator.denied_count - denied_before == 1  # no reconnect loop
            started = time.monotonic()  # a watch has its own connection, refused as fast
            with pytest.raises(AuthenticationError):
                await c.watch()
            assert time.monotonic() - started < QUICK

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_watch_refused_by_the_event_publisher_fails_fast(keys):
    async def scenario(url: str) -> None:
        settings = keys.client("user")
        async with AsyncRegistryClient(url, settings=settings, timeout=5) as client:
            assert await client.list_devices() == []  # the request socket lets the user in
            started = time.monotonic()
            with pytest.raises(AuthenticationError):
                await client.watch()
            assert time.monotonic() - started < QUICK

    with foreign_publisher_registry(keys) as url:
        asyncio.run(asyncio.wait_for(scenario(url), 10))
