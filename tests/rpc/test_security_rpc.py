"""Security on the RPC layer: CurveZMQ calls, refused clients, admin-only operations."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from labwire.config import Settings
from labwire.errors import AuthenticationError, PermissionDenied
from labwire.transport.security import Security, generate_keypair, load_public_key, load_secret_key
from tests.rpc.devices import Camera, CameraClient

pytestmark = pytest.mark.timeout(30)


class Keys:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def pair(self, name: str) -> tuple[str, str]:
        public, secret = generate_keypair(self.folder, name)
        return load_public_key(public), load_secret_key(secret)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def secured(keys: Keys) -> Iterator[tuple[Camera, Keys, dict[str, tuple[str, str]]]]:
    pairs = {name: keys.pair(name) for name in ("server", "user", "admin", "stranger")}
    security = Security(
        secret_key=pairs["server"][1],
        allowed_keys=frozenset({pairs["user"][0]}),
        admin_keys=frozenset({pairs["admin"][0]}),
    )
    context = zmq.Context()
    server = Camera(
        context,
        "tcp://127.0.0.1:0",
        settings=Settings(security=security),
        admin_operations=("stop", "set_property"),
    ).start()
    yield server, keys, pairs
    server.close()
    context.term()


def _client_settings(pairs: dict[str, tuple[str, str]], who: str, server_key: str = "") -> Settings:
    return Settings(
        security=Security(
            client_secret_key=pairs[who][1], server_key=server_key or pairs["server"][0]
        )
    )


def test_allowed_client_calls_over_curve(secured: tuple[Camera, Keys, dict]) -> None:
    server, _, pairs = secured
    context = zmq.Context()
    try:
        with CameraClient(context, server.endpoint, settings=_client_settings(pairs, "user")) as c:
            assert c.add(20, 22) == 42
            buffer, info = c.get_image(lores=True)
            assert len(buffer) == info["size"]
            assert c.sum_buffer(b"\x01\x02\x03") == 6  # a buffer argument
            assert c.mode == "STILL"
    finally:
        context.term()


@pytest.mark.parametrize("who", ["stranger", "wrong-server-key"])
def test_refused_client_gets_authentication_error_quickly(
    secured: tuple[Camera, Keys, dict], who: str
) -> None:
    server, keys, pairs = secured
    if who == "wrong-server-key":
        settings = _client_settings(pairs, "user", server_key=keys.pair("impostor")[0])
    else:
        settings = _client_settings(pairs, "stranger")
    context = zmq.Context()
    try:
        start = time.monotonic()
        with pytest.raises(AuthenticationError):
            CameraClient(context, server.endpoint, timeout=5000, settings=settings)
        assert time.monotonic() - start < 1.5
    finally:
        context.term()
    executed_before = server.executed()
    assert server.executed() == executed_before


def test_stop_and_property_set_need_an_admin_key(secured: tuple[Camera, Keys, dict]) -> None:
    server, _, pairs = secured
    context = zmq.Context()
    pairs["user2"] = pairs["user"]
    try:
        with CameraClient(context, server.endpoint, settings=_client_settings(pairs, "user")) as c:
            assert c.stop_server() is False
            with pytest.raises(PermissionDenied, match="admin"):
                c.mode = "VIDEO"
            assert c.add(1) == 2  # still serving
        admin = _client_settings(pairs, "admin")
        with CameraClient(context, server.endpoint, settings=admin) as c:
            c.mode = "VIDEO"
            assert c.mode == "VIDEO"
            assert c.stop_server() is True
        assert server.wait_stopped(2)
    finally:
        context.term()


def test_async_client_over_curve_and_refused_quickly(secured: tuple[Camera, Keys, dict]) -> None:
    import asyncio

    from labwire.rpc import AsyncRPCClient

    server, _, pairs = secured

    async def main() -> None:
        context = zmq.Context()
        try:
            good = _client_settings(pairs, "user")
            async with AsyncRPCClient(context, server.endpoint, settings=good) as client:
                assert await client.call("add", 1, 2) == 3
            start = time.monotonic()
            with pytest.raises(AuthenticationError):
                await AsyncRPCClient.open(
                    context, server.endpoint, 5000, settings=_client_settings(pairs, "stranger")
                )
            assert time.monotonic() - start < 1.5
        finally:
            context.term()

    asyncio.run(main())
