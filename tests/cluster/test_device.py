"""Devices of one process on loopback: events, requests, send, every(), names, keys, bad input."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import zmq

from labwire.cluster import Context, Device, Member, UnknownPeer, group_to_port
from labwire.cluster.util import next_tick
from labwire.errors import CallTimeout, NotFound, RemoteError, Unavailable
from tests.cluster.conftest import BEACON, EXPIRY, LOOPBACK, until, wait_for


def make(name: str, group: str, **options: Any) -> Device:
    options.setdefault("beacon_interval", BEACON)
    options.setdefault("expiry", EXPIRY)
    options.setdefault("timeout", 2.0)
    return Device(name, group, network=LOOPBACK, **options)


@asynccontextmanager
async def running(*devices: Device) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for device in devices:
            await stack.enter_async_context(device)
        yield


def knows(device: Device, *names: str, catalog: bool = True) -> Callable[[], bool]:
    def check() -> bool:
        peers = {peer.name: peer for peer in device.peers()}
        return all(n in peers and (peers[n].has_catalog or not catalog) for n in names)

    return check


def test_glob_subscriptions_get_matching_events_only(group: str) -> None:
    async def main() -> None:
        gps, imu, nav = make("gps", group), make("imu", group), make("nav", group)
        seen: list[tuple[str, Any]] = []
        positions: list[tuple[str, Any]] = []

        @nav.on("*/GPSPosition")
        async def on_position(event: str, data: Any) -> None:
            positions.append((event, data))

        nav.on("imu/*", lambda event, data: seen.append((event, data)))
        async with running(gps, imu, nav):
            await until(knows(gps, "nav"), what="discovery")
            await until(knows(imu, "nav"), what="discovery")
            await gps.publish("GPSPosition", {"lat": 52.1})
            await gps.publish("Speed", 3)  # nobody subscribed: not even sent
            await imu.publish("Accel", [0, 0, 9.8])
            await until(lambda: positions and seen, what="delivery")
            await asyncio.sleep(0.1)
            assert positions == [("gps/GPSPosition", {"lat": 52.1})]
            assert seen == [("imu/Accel", [0, 0, 9.8])]
            # the publisher filters: nav got exactly what it subscribed to
            assert nav.stats.get("unhandled", 0) == 0
            # a device does not receive its own events
            assert gps.stats.get("unhandled", 0) == 0

    asyncio.run(main())


def test_receive_own_events_when_asked(group: str) -> None:
    async def main() -> None:
        solo = make("solo", group, receive_own=True)
        got: list[str] = []
        solo.on("solo/*", lambda event, data: got.append(event))
        async with running(solo):
            await solo.publish("tick", 1)
        assert got == ["solo/tick"]

    asyncio.run(main())


def test_requests_results_errors_and_unknown_endpoints(group: str) -> None:
    async def main() -> None:
        server, client = make("server", group), make("client", group)

        @server.on_request("add")
        async def add(x: int, y: int = 0) -> int:
            return x + y

        server.on_request("boom", lambda: 1 / 0)
        server.on_request("unsendable", lambda: object())
        async with running(server, client):
            await until(knows(client, "server"))
            assert await client.request("server", "add", 1, y=2) == 3
            with pytest.raises(RemoteError) as failure:
                await client.request("server", "boom")
            assert failure.value.remote_type == "ZeroDivisionError"
            assert "1 / 0" in failure.value.remote_traceback
            with pytest.raises(NotFound, match=r"no request endpoint 'nope'.*add, boom"):
                await client.request("server", "nope")
            with pytest.raises(RemoteError, match="TypeError"):
                await client.request("server", "unsendable")
            with pytest.raises(RemoteError, match="TypeError"):
                await client.request("server", "add", "a", y=1)
            with pytest.raises(TypeError):
                await client.request("server", "add", object())  # not JSON: refused here
            with pytest.raises(UnknownPeer, match=r"no member named 'ghost'.*server"):
                await client.request("ghost", "add", 1)
            assert await client.request("server", "add", 5) == 5  # still serving

    asyncio.run(main())


def test_slow_handler_does_not_stall_other_traffic_and_times_out(group: str) -> None:
    async def main() -> None:
        server, client = make("server", group), make("client", group, timeout=1.0)
        release = asyncio.Event()
        events: list[Any] = []

        @server.on_request("slow")
        async def slow() -> str:
            await release.wait()
            return "late"

        server.on_request("fast", lambda: "fast")
        server.on("client/ping", lambda event, data: events.append(data))
        async with running(server, client):
            await until(knows(client, "server"))
            slow_call = asyncio.ensure_future(client.request("server", "slow"))
            await asyncio.sleep(0.05)
            assert await client.request("server", "fast") == "fast"
            await client.publish("ping", 1)
            await until(lambda: events == [1], what="event while a handler is slow")
            with pytest.raises(CallTimeout, match=r"no answer within 1 s"):
                await slow_call
            client.timeout = "200ms"
            with pytest.raises(CallTimeout, match=r"no answer within 0\.2 s"):
                await client.request("server", "slow")
            with pytest.raises(ValueError, match="not a positive duration"):
                client.timeout = 0
            release.set()
            await until(lambda: client.stats.get("late_answers") == 2, what="late answers")
            assert await client.request("server", "fast") == "fast"

    asyncio.run(main())


def test_send_reaches_endpoint_callbacks(group: str) -> None:
    async def main() -> None:
        motor, joystick = make("motor", group), make("joystick", group)
        commands: list[tuple[str, Any]] = []
        motor.on("drive", lambda event, data: commands.append((event, data)))
        async with running(motor, joystick):
            await until(knows(joystick, "motor"))
            await joystick.send("motor", "drive", {"left": 0.5, "right": 0.4})
            await joystick.send("motor", "unknown", 1)
            await until(lambda: commands, what="send")
            assert commands == [("joystick/drive", {"left": 0.5, "right": 0.4})]
            await until(lambda: motor.stats.get("unhandled") == 1)
            with pytest.raises(UnknownPeer):
                await joystick.send("nobody", "drive", 1)

    asyncio.run(main())


def test_every_runs_again_and_survives_errors(group: str) -> None:
    async def main() -> None:
        device = make("loop", group)
        runs: list[int] = []

        @device.every("20ms")
        async def tick() -> None:
            runs.append(len(runs))
            if len(runs) == 2:
                raise RuntimeError("one bad run")

        async with running(device):
            await until(lambda: len(runs) >= 5, what="periodic runs")

    asyncio.run(main())


def test_fixed_rate_schedule_keeps_to_its_grid() -> None:
    # a run that takes 30 ms of a 50 ms period: the next one is still due 50 ms after it
    assert next_tick(1.00, 0.05, now=1.03) == pytest.approx(1.05)
    # a run that overran two ticks: the missed ticks are skipped, the grid is kept
    assert next_tick(1.00, 0.05, now=1.13) == pytest.approx(1.15)
    assert next_tick(1.00, 0.05, now=1.15) == pytest.approx(1.15)
    due = 0.0
    for _ in range(1000):  # no drift over many runs that each take 60 % of the period
        due = next_tick(due, 0.05, now=due + 0.03)
    assert due == pytest.approx(50.0)


@pytest.mark.parametrize("duration", [-1, 0, "soon", "5 parsecs", float("nan"), None])
def test_every_and_sleep_refuse_invalid_durations(group: str, duration: Any) -> None:
    async def main() -> None:
        device = make("loop", group)
        with pytest.raises(ValueError, match="not a positive duration"):
            device.every(duration)
        with pytest.raises(ValueError, match="not a positive duration"):
            await device.sleep(duration)

    asyncio.run(main())


def test_tasks_storage_and_several_devices_in_one_group(group: str) -> None:
    async def main() -> None:
        devices = [make(f"dev{index}", group) for index in range(4)]
        ready: list[str] = []
        for device in devices:
            device.storage.count = 0

            @device.task
            async def setup(device: Device = device) -> None:
                ready.append(device.name)

            @device.on_request("whoami")
            def whoami(device: Device = device) -> str:
                device.storage.count += 1
                return device.name

        async with running(*devices):
            names = [d.name for d in devices]
            for device in devices:
                await until(knows(device, *(n for n in names if n != device.name)))
            for device in devices:
                for other in names:
                    if other != device.name:
                        assert await device.request(other, "whoami") == other
            assert sorted(ready) == names
            assert [d.storage.count for d in devices] == [3, 3, 3, 3]

    asyncio.run(main())


def test_duplicate_name_first_keeps_it_until_it_expires(
    group: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        first, observer = make("twin", group), make("observer", group)
        second = make("twin", group)
        first.on_request("which", lambda: "first")
        second.on_request("which", lambda: "second")
        async with running(first, observer):
            await until(knows(observer, "twin"))
            with caplog.at_level(logging.WARNING, logger="labwire.cluster"):
                async with running(second):
                    await until(lambda: observer.stats.get("name_conflicts", 0) >= 3)
                    await until(lambda: second.stats.get("name_conflicts", 0) >= 1)
                    for _ in range(5):
                        assert await observer.request("twin", "which") == "first"
                    first.stop()  # the holder goes away: the other takes over after expiry

                    async def second_answers() -> bool:
                        try:
                            return await observer.request("twin", "which") == "second"
                        except (UnknownPeer, Unavailable, CallTimeout):
                            return False

                    deadline = time.monotonic() + 5
                    while not await second_answers():
                        assert time.monotonic() < deadline, "the second twin never took over"
                        await asyncio.sleep(0.05)
        warnings = [r.getMessage() for r in caplog.records if "also claimed" in r.getMessage()]
        assert warnings, "the conflict was not logged"

    asyncio.run(main())


def test_stopped_peer_expires_then_returns(group: str) -> None:
    async def main() -> None:
        watcher = make("watcher", group)
        async with running(watcher):
            peer = make("peer", group)
            peer.on_request("ping", lambda: "pong")
            async with running(peer):
                await until(knows(watcher, "peer"))
                assert await watcher.request("peer", "ping") == "pong"
            await until(lambda: not watcher.peers(), timeout=EXPIRY + 10, what="expiry")
            with pytest.raises(UnknownPeer):  # fails fast, no timeout
                await watcher.request("peer", "ping")
            assert watcher.stats["peers_expired"] == 1
            again = make("peer", group)
            again.on_request("ping", lambda: "pong again")
            async with running(again):
                await until(knows(watcher, "peer"))
                assert await watcher.request("peer", "ping") == "pong again"

    asyncio.run(main())


def test_wrong_key_is_ignored_and_counted(group: str) -> None:
    async def main() -> None:
        alpha = make("alpha", group, key="rover-secret")
        beta = make("beta", group, key="rover-secret")
        intruder = make("intruder", group, key="guess")
        open_device = make("open", group)
        beta.on_request("ping", lambda: "pong")
        async with running(alpha, beta, intruder, open_device):
            await until(knows(alpha, "beta"))
            assert await alpha.request("beta", "ping") == "pong"
            await until(lambda: alpha.stats.get("rejected_beacons", 0) >= 4)
            await until(lambda: intruder.stats.get("rejected_beacons", 0) >= 4)
            assert [p.name for p in alpha.peers()] == ["beta"]
            assert intruder.peers() == [] and open_device.peers() == []

    asyncio.run(main())


def test_keyed_data_link_refuses_clients_without_the_key(group: str) -> None:
    async def main() -> None:
        keyed = make("keyed", group, key="k1")
        keyed.on_request("ping", lambda: "pong")
        async with running(keyed):
            context = zmq.Context()
            raw = context.socket(zmq.DEALER)
            raw.connect(f"tcp://127.0.0.1:{keyed.member.data_port}")
            raw.send(b'{"kind":"request","sender":"x","uid":"u","id":1,"endpoint":"ping"}')
            assert raw.poll(300) == 0  # no handshake, no answer
            raw.close(0)
            context.term()

    asyncio.run(main())


@pytest.mark.parametrize(
    "frames",
    [
        [b"not json"],
        [b'{"kind":"request"}'],
        [b'{"kind":"mystery","sender":"x","uid":"u"}'],
        [b"[1, 2"],
        [b"\xff\xfe"],
        [b"{}", b"{}"],
        [b'{"kind":"request","sender":"x","uid":"u","id":1,"endpoint":"ping","args":{}}'],
    ],
)
def test_bad_input_is_counted_and_the_device_keeps_serving(group: str, frames: list[bytes]) -> None:
    async def main() -> None:
        server, client = make("server", group), make("client", group)
        server.on_request("ping", lambda: "pong")
        async with running(server, client):
            await until(knows(client, "server"))
            context = zmq.Context()
            raw = context.socket(zmq.DEALER)
            raw.connect(f"tcp://127.0.0.1:{server.member.data_port}")
            raw.send_multipart(frames)
            await until(lambda: server.stats.get("bad_messages") == 1)
            raw.close(0)
            context.term()
            assert await client.request("server", "ping") == "pong"

    asyncio.run(main())


def test_callback_errors_are_logged_and_delivery_goes_on(
    group: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        source, sink = make("source", group), make("sink", group)
        got: list[int] = []

        @sink.on("source/n")
        def fragile(event: str, data: int) -> None:
            if data == 1:
                raise RuntimeError("bad callback")
            got.append(data)

        @sink.on("source/*")
        async def fragile_async(event: str, data: int) -> None:
            if data == 2:
                raise RuntimeError("bad coroutine")

        async with running(source, sink):
            await until(knows(source, "sink"))
            for n in range(4):
                await source.publish("n", n)
            await until(lambda: got == [0, 2, 3])
        assert "bad callback" in caplog.text and "bad coroutine" in caplog.text

    asyncio.run(main())


def test_sync_program_on_a_context_thread(group: str) -> None:
    context = Context()
    try:
        gps = Device("gps", group, LOOPBACK, context, beacon_interval=BEACON, expiry=EXPIRY)
        nav = Device("nav", group, LOOPBACK, context, beacon_interval=BEACON, expiry=EXPIRY)
        got: list[Any] = []
        nav.on("gps/fix", lambda event, data: got.append(data))
        nav.on_request("route", lambda: ["a", "b"])
        gps.start()
        nav.start()
        wait_for(knows(gps, "nav"))
        asyncio.run_coroutine_threadsafe(gps.publish("fix", 7), gps.loop).result(2)
        wait_for(lambda: got == [7])
        route = asyncio.run_coroutine_threadsafe(gps.request("nav", "route"), gps.loop)
        assert route.result(2) == ["a", "b"]
        nav.stop()
        nav.wait()  # returns at once: stopped
        gps.stop()
    finally:
        context.stop()
    assert not context.is_alive() and context.loop.is_closed()


def test_member_api(group: str) -> None:
    async def main() -> None:
        port = group_to_port(group)
        first = Member("first", LOOPBACK, port, group=group, beacon_interval=BEACON)
        second = Member("second", LOOPBACK, port, group=group, beacon_interval=BEACON)
        got: list[tuple[str, Any]] = []
        second.subscribe("first", "news", lambda event, data: got.append((event, data)))
        second.on_recv("inbox", lambda event, data: got.append((event, data)))
        second.on_request("echo", lambda *args, **kwargs: [args, kwargs])
        assert second.is_wanted("first") and not second.is_wanted("other")
        async with first, second:
            await until(lambda: "second" in {p.name for p in first.peers() if p.has_catalog})
            assert first.try_peer("second").subscriptions == ("first/news",)
            assert first.try_peer("second").requests == ("echo",)
            with pytest.raises(UnknownPeer):
                first.try_peer("third")
            await first.publish("news", 1)
            await first.send("second", "inbox", 2)
            assert await first.request("second", "echo", 1, a=2) == [[1], {"a": 2}]
            await until(lambda: len(got) == 2)
            assert sorted(got) == [("first/inbox", 2), ("first/news", 1)]
            assert first.is_wanted("second")  # it sent to it

    asyncio.run(main())


def test_labwire_security_settings_secure_the_data_links(group: str) -> None:
    from labwire.config import Settings
    from labwire.transport.security import Security, ephemeral_secret_key

    def secured() -> Settings:
        return Settings(security=Security(secret_key=ephemeral_secret_key(), allow_any_client=True))

    async def main() -> None:
        server = make("server", group, settings=secured())
        client = make("client", group, settings=secured())
        server.on_request("ping", lambda: "pong")
        async with running(server, client):
            await until(knows(client, "server"))
            assert await client.request("server", "ping") == "pong"
            context = zmq.Context()
            plain = context.socket(zmq.DEALER)  # no CurveZMQ: no handshake, no answer
            plain.connect(f"tcp://127.0.0.1:{server.member.data_port}")
            plain.send(b'{"kind":"request","sender":"x","uid":"u","id":1,"endpoint":"ping"}')
            assert plain.poll(300) == 0
            plain.close(0)
            context.term()

    asyncio.run(main())


def test_garbage_datagrams_on_the_group_port_are_counted(group: str) -> None:
    import socket

    async def main() -> None:
        server, client = make("server", group), make("client", group)
        server.on_request("ping", lambda: "pong")
        async with running(server, client):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                for junk in (b"", b"garbage", b"LWCB\x01" + b"x" * 40, b"\xff" * 5000):
                    raw.sendto(junk, ("127.255.255.255", group_to_port(group)))
            await until(lambda: server.stats.get("rejected_beacons", 0) >= 4)
            await until(knows(client, "server"))
            assert await client.request("server", "ping") == "pong"

    asyncio.run(main())
