"""A fork's child cannot use its parent's labwire objects: it gets a clear error, never a hang."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest

from labwire.registry import DeviceRegistry, RegistryClient
from labwire.rpc import AsyncRPCClient, RPCClient, RPCServer

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.platform == "win32", reason="fork() is POSIX only"),
]

LOCAL = "tcp://127.0.0.1:0"


class Echo(RPCServer):
    @RPCServer.register_method_json(timeout=2000)
    def echo(self, value: Any) -> Any:
        return value


def in_child(use: Callable[[], object]) -> str:
    """Run ``use`` in a forked child; return what it raised (type and message) or "ok"."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, without running the parent's cleanup
        try:
            use()
            outcome = "ok"
        except BaseException as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        os.write(write_end, outcome.encode())
        os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            return pipe.read().decode()  # the child's report; a hung child fails by the timeout
    finally:
        os.waitpid(pid, 0)


def test_an_rpc_client_used_in_a_fork_child_says_so_and_the_parent_goes_on() -> None:
    with Echo(None, LOCAL) as server, RPCClient(None, server.endpoint) as client:
        assert client.call("echo", 1) == 1
        outcome = in_child(lambda: client.call("echo", 2))
        assert outcome.startswith("ClosedError: client for tcp://")
        assert f"made in process {os.getpid()}" in outcome and "make a new one" in outcome
        assert in_child(client.close) == "ok"  # closing it in the child leaves the parent's
        assert client.call("echo", 3) == 3


def test_a_new_client_made_in_the_child_works() -> None:
    with Echo(None, LOCAL) as server:

        def fresh() -> None:
            with RPCClient(None, server.endpoint) as client:
                assert client.call("echo", 4) == 4

        assert in_child(fresh) == "ok"


def test_an_asyncio_client_and_a_registry_client_say_so_too() -> None:
    with Echo(None, LOCAL) as server, DeviceRegistry(None, "127.0.0.1", "0") as registry:

        async def call_in(client: AsyncRPCClient) -> Any:
            return await client.call("echo", 5)

        async def opened() -> AsyncRPCClient:
            return await AsyncRPCClient.open(None, server.endpoint)

        client = asyncio.run(opened())
        try:
            assert "ClosedError: client for tcp://" in in_child(
                lambda: asyncio.run(call_in(client))
            )
        finally:
            asyncio.run(client.aclose())
        with RegistryClient(registry.url, timeout=1.0) as registry_client:
            assert registry_client.list_devices() == []
            outcome = in_child(registry_client.list_devices)
            assert outcome.startswith("ClosedError: registry connection to tcp://")
            assert registry_client.list_devices() == []
