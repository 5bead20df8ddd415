"""Helpers of the seed's API: Looper, Context, AttributeDict, AsyncSocket, ip_info, debug."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import pytest

import labwire.cluster.util
from labwire.cluster import AsyncSocket, AttributeDict, Context, Looper, debug, ip_info
from tests.cluster.conftest import until


def test_attribute_dict() -> None:
    storage = AttributeDict(a=1)
    storage.b = 2
    assert storage == {"a": 1, "b": 2} and storage.a == 1
    del storage.a
    with pytest.raises(AttributeError):
        _ = storage.a
    with pytest.raises(AttributeError):
        del storage.missing


def test_ip_info() -> None:
    assert ip_info("10.0.0.7")[0] == socket.AF_INET
    family, address = ip_info("::1")
    assert family == socket.AF_INET6 and address.is_loopback
    with pytest.raises(ValueError):
        ip_info("not an address")


def test_debug_writes_to_stderr_only_when_enabled(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    debug("quiet")
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(labwire.cluster.util, "DEBUG", True)
    debug("loud")
    assert "loud" in capsys.readouterr().err


def test_looper_tasks_and_daemons_start_stop_and_restart() -> None:
    async def main() -> None:
        looper = Looper()
        assert looper.loop is asyncio.get_running_loop()
        runs: list[str] = []

        async def once(label: str) -> None:
            runs.append(label)

        async def daemon() -> None:
            runs.append("daemon")
            raise RuntimeError("restart me")

        looper.create_task(once, "early")
        looper.create_daemon(daemon)
        await asyncio.sleep(0.05)
        assert runs == []  # nothing before start
        with looper:
            await until(lambda: runs.count("daemon") >= 2, what="daemon restarted")
            looper.create_task(once, label="late")
            await until(lambda: "late" in runs)
        count = runs.count("daemon")
        await looper.sleep(0.25)
        assert runs.count("daemon") == count  # stopped
        assert "early" in runs

    asyncio.run(main())


def test_context_runs_a_loop_thread_until_stopped() -> None:
    context = Context()
    context.ensure_started()
    try:
        looper = Looper(context.loop)
        ran = threading.Event()

        async def work() -> None:
            ran.set()

        looper.create_task(work)
        looper.start()
        assert ran.wait(2)
        looper.stop()
    finally:
        context.stop()
    assert not context.is_alive() and context.loop.is_closed()
    context.wait()  # returns at once once stopped


def test_default_context_instance_is_shared() -> None:
    first = Context.instance()
    try:
        assert Context.instance() is first and first.is_alive()
    finally:
        first.stop()
    again = Context.instance()  # a stopped default is replaced
    try:
        assert again is not first and again.is_alive()
    finally:
        again.stop()


def test_async_socket_udp_and_tcp() -> None:
    async def main() -> None:
        with AsyncSocket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
            receiver.bind(("127.0.0.1", 0))
            with AsyncSocket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                await sender.sendto(b"ping", receiver.getsockname())
                data, _ = await receiver.recvfrom(100)
                assert data == b"ping"
        with AsyncSocket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client = AsyncSocket(socket.AF_INET, socket.SOCK_STREAM)
            accepted: list[Any] = []

            async def accept() -> None:
                accepted.append(await listener.accept())

            task = asyncio.ensure_future(accept())
            assert await client.connect_ex(listener.getsockname()) == 0
            await task
            conn, _ = accepted[0]
            await client.sendall(b"hello")
            assert await conn.recv(5) == b"hello"
            copy = conn.dup()
            copy.close()
            conn.close()
            client.close()
            refused = AsyncSocket.from_socket(socket.socket())
            assert await refused.connect_ex(("127.0.0.1", 1)) != 0
            refused.close()

    asyncio.run(main())
