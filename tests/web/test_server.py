"""The dashboard server without a browser: forms, addresses, access rules, bad requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from labwire.registry import DeviceRegistry
from labwire.web import Dashboard, is_loopback, parse_bind
from labwire.web.forms import parameters


def test_parameters_are_read_from_a_signature() -> None:
    found = parameters("(self, x: float, n: 'int' = 3, *rest, flag: bool = False, **more) -> None")
    assert found is not None
    assert [(p["name"], p["kind"], p["type"], p["required"]) for p in found] == [
        ("x", "positional", "float", True),
        ("n", "positional", "int", False),
        ("rest", "args", "json", False),
        ("flag", "keyword", "bool", False),
        ("more", "kwargs", "json", False),
    ]
    assert found[1]["default"] == 3
    odd = parameters("(when=time.time())")
    assert odd is not None and odd[0]["default_text"] == "time.time()"
    assert parameters("(x: float") is None
    assert parameters("); import os; (") is None


def test_bind_addresses() -> None:
    assert parse_bind("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert parse_bind("[::1]:0") == ("::1", 0)
    for bad in ("8765", "host:", ":80", "host:99999", "a b:80", "host:http"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_bind(bad)
    assert is_loopback("localhost") and is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_a_token_is_made_for_other_addresses_only() -> None:
    assert Dashboard("tcp://127.0.0.1:1", host="127.0.0.1").token == ""
    wide = Dashboard("tcp://127.0.0.1:1", host="0.0.0.0")
    assert len(wide.token) >= 20 and f"?token={wide.token}" in wide.url


async def _serve(token: str | None, check: Any) -> None:
    registry = DeviceRegistry(None, "127.0.0.1", "0", heartbeat_interval=0.2)
    registry.start()
    dashboard = Dashboard(registry.url, host="127.0.0.1", port=0, token=token)
    try:
        await dashboard.start()
        async with aiohttp.ClientSession() as session:
            await check(dashboard, session, f"http://127.0.0.1:{dashboard.port}")
    finally:
        await dashboard.close()
        await asyncio.to_thread(registry.stop)


def test_a_token_guards_the_page_the_socket_and_the_results() -> None:
    async def check(dashboard: Dashboard, session: aiohttp.ClientSession, base: str) -> None:
        for path in ("/", "/ws", "/blob/anything", "/?token=wrong"):
            async with session.get(base + path) as response:
                assert response.status == 403, path
                assert "token" in await response.text()
        async with session.get(dashboard.url) as response:
            assert response.status == 200
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        async with session.get(base + "/static/app.js") as response:
            assert response.status == 200
        async with session.get(f"{base}/blob/nothing?token={dashboard.token}") as response:
            assert response.status == 404

    asyncio.run(_serve("s3cret-token-for-tests", check))


def test_other_sites_and_other_host_names_are_refused() -> None:
    async def check(dashboard: Dashboard, session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(base + "/", headers={"Host": "evil.example:80"}) as response:
            assert response.status == 403
        headers = {"Origin": "http://evil.example"}
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(base + "/ws", headers=headers)
        async with session.ws_connect(base + "/ws") as socket:
            first = json.loads((await socket.receive(timeout=5)).data)
            assert first["type"] == "registry"

    asyncio.run(_serve(None, check))


def test_bad_requests_get_an_error_reply_and_the_connection_stays() -> None:
    async def check(dashboard: Dashboard, session: aiohttp.ClientSession, base: str) -> None:
        async with session.ws_connect(base + "/ws") as socket:
            sent = [
                "not json",
                "[1, 2]",
                json.dumps({"id": 1, "op": "call"}),
                json.dumps({"id": 2, "op": "call", "device": "nobody", "method": "m"}),
                json.dumps({"id": 3, "op": "fly", "device": "nobody"}),
            ]
            for text in sent:
                await socket.send_str(text)
            errors = []
            while len(errors) < len(sent):
                message = json.loads((await socket.receive(timeout=5)).data)
                if message["type"] == "reply":
                    assert message["ok"] is False
                    errors.append(message["error"])
            assert any("JSON" in e or "Expecting value" in e for e in errors)
            assert any("'device' must be a non-empty string" in e for e in errors)
            assert any("'nobody' is not connected" in e for e in errors)
            await socket.send_str(json.dumps({"id": 4, "op": "set", "device": ""}))
            reply = json.loads((await socket.receive(timeout=5)).data)
            while reply["type"] != "reply":
                reply = json.loads((await socket.receive(timeout=5)).data)
            assert reply["id"] == 4 and not reply["ok"]

    asyncio.run(_serve(None, check))


def test_operations_started_elsewhere_are_listed_and_cancelled_by_id() -> None:
    from labwire.rpc import OperationCancelled, RPCClient
    from labwire.sim import SimStage

    stage = SimStage(None, "tcp://127.0.0.1:0", speed=5.0).start()

    async def receive(socket: aiohttp.ClientWebSocketResponse, wanted: Any) -> dict[str, Any]:
        while True:
            message = json.loads((await socket.receive(timeout=10)).data)
            if wanted(message):
                return dict(message)

    async def check(dashboard: Dashboard, session: aiohttp.ClientSession, base: str) -> None:
        stage.register_to_registry("stage", "slow", dashboard.registry_url)
        client = RPCClient(None, stage.endpoint)
        try:
            async with session.ws_connect(base + "/ws") as socket:
                panel = await receive(
                    socket, lambda m: m["type"] == "device" and m["status"] == "up"
                )
                assert panel["operations"] == []
                kinds = {m["name"]: m["operation"] for m in panel["methods"]}
                assert kinds["move_to"] and kinds["home"] and not kinds["halt"]
                handle = await asyncio.to_thread(client.start_operation, "move_to", 40, 0, 0)
                listed = await receive(
                    socket,
                    lambda m: (
                        m["type"] == "operations"
                        and any(op["id"] == handle.id and op["fraction"] for op in m["operations"])
                    ),
                )
                (running,) = listed["operations"]
                assert (running["method"], running["state"]) == ("move_to", "running")
                for number, bad in enumerate(({}, {"operation": "no-such-operation"}), 1):
                    request = {"id": number, "op": "cancel", "device": "slow", **bad}
                    await socket.send_str(json.dumps(request))
                    reply = await receive(socket, lambda m: m["type"] == "reply")
                    assert not reply["ok"]
                    assert "operation" in reply["error"]
                request = {"id": 9, "op": "cancel", "device": "slow", "operation": handle.id}
                await socket.send_str(json.dumps(request))
                reply = await receive(socket, lambda m: m["type"] == "reply")
                assert reply["ok"] and reply["result"] in ("cancelling", "cancelled")
                ended = await receive(
                    socket,
                    lambda m: (
                        m["type"] == "operations" and m["operations"][0]["state"] == "cancelled"
                    ),
                )
                assert ended["operations"][0]["cause"] == "caller"
                with pytest.raises(OperationCancelled):
                    await asyncio.to_thread(handle.result, 10)
                handle.close()
        finally:
            await asyncio.to_thread(client.close)

    try:
        asyncio.run(_serve(None, check))
    finally:
        stage.close()
