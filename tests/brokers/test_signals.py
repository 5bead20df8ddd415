"""A device's RPC signals reach a subscriber that only knows a signal broker's address."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from labwire.brokers import FORWARDER, ThreadDevice
from labwire.errors import EndpointError
from labwire.rpc import RPCSignal, RPCSignalReceiver
from tests.brokers.conftest import wait_for
from tests.brokers.devices import AsyncThermometerClient, Thermometer, ThermometerClient


def test_signals_reach_a_subscriber_through_the_broker() -> None:
    broker = ThreadDevice(FORWARDER, zmq.XSUB, zmq.XPUB)
    broker.bind_in("tcp://127.0.0.1:0")
    broker.bind_out("tcp://127.0.0.1:0")
    broker.start()
    device = Thermometer(None, "tcp://127.0.0.1:0", signal_broker=broker.in_endpoints[0])
    device.start()
    readings: list[float] = []
    local = {"temperatureChanged": RPCSignal(float)}
    local["temperatureChanged"].connect(readings.append)
    receiver = RPCSignalReceiver(None, broker.out_endpoints[0], local)
    receiver.start()
    try:
        # Subscriptions travel up through the broker to the device: probe until one arrives.
        wait_for(lambda: (device.temperatureChanged.emit(-1.0), readings)[1], timeout=10)
        for value in (20.5, 21.0, 21.5):
            device.temperatureChanged.emit(value)
        wait_for(lambda: [r for r in readings if r != -1.0] == [20.5, 21.0, 21.5])
        assert receiver.tracker.gaps == 0
        assert broker.statistics().in_side.frames_received >= 3
    finally:
        receiver.close()
        device.close()
        broker.stop()


def test_a_bad_broker_address_is_refused_at_construction() -> None:
    with pytest.raises(EndpointError):
        Thermometer(None, "tcp://127.0.0.1:0", signal_broker="tcp://nowhere:port")


def test_a_client_pointed_at_the_broker_gets_only_its_device_signals() -> None:
    broker = ThreadDevice(FORWARDER, zmq.XSUB, zmq.XPUB)
    broker.bind_in("tcp://127.0.0.1:0")
    broker.bind_out("tcp://127.0.0.1:0")
    broker.start()
    into = broker.in_endpoints[0]
    kitchen = Thermometer(None, "tcp://127.0.0.1:0", signal_broker=into).start()
    cellar = Thermometer(None, "tcp://127.0.0.1:0", signal_broker=into).start()
    client = ThermometerClient(None, kitchen.endpoint, signal_url=broker.out_endpoints[0])
    readings: list[float] = []
    try:
        client.temperatureChanged.connect(readings.append)
        wait_for(lambda: (kitchen.temperatureChanged.emit(-1.0), readings)[1], timeout=10)
        for value in (12.0, 13.0):
            cellar.temperatureChanged.emit(value + 100)  # same signal, another device
            kitchen.temperatureChanged.emit(value)
        wait_for(lambda: [r for r in readings if r != -1.0] == [12.0, 13.0])
        relayed = broker.statistics().in_side.frames_received
        wait_for(  # until one reached the broker, which relays it before what comes next
            lambda: (
                cellar.temperatureChanged.emit(150.0),
                broker.statistics().in_side.frames_received > relayed,
            )[1]
        )
        kitchen.temperatureChanged.emit(14.0)
        wait_for(lambda: readings[-1] == 14.0)
        assert all(value < 100 for value in readings)
        assert client._subscriptions.receiver is not None
        assert client._subscriptions.receiver.url == broker.out_endpoints[0]
    finally:
        client.close()
        kitchen.close()
        cellar.close()
        broker.stop()


def test_an_async_client_pointed_at_the_broker_gets_only_its_device_signals() -> None:
    broker = ThreadDevice(FORWARDER, zmq.XSUB, zmq.XPUB)
    broker.bind_in("tcp://127.0.0.1:0")
    broker.bind_out("tcp://127.0.0.1:0")
    broker.start()
    into = broker.in_endpoints[0]
    kitchen = Thermometer(None, "tcp://127.0.0.1:0", signal_broker=into).start()
    cellar = Thermometer(None, "tcp://127.0.0.1:0", signal_broker=into).start()

    async def main() -> None:
        out = broker.out_endpoints[0]
        async with AsyncThermometerClient(None, kitchen.endpoint, signal_url=out) as client:
            got: asyncio.Queue[float] = asyncio.Queue()
            client.temperatureChanged.connect(got.put_nowait)
            while got.empty():
                kitchen.temperatureChanged.emit(-1.0)
                await asyncio.sleep(0.02)
            relayed = broker.statistics().in_side.frames_received
            while broker.statistics().in_side.frames_received == relayed:
                cellar.temperatureChanged.emit(150.0)  # another device, same signal
                await asyncio.sleep(0.005)
            kitchen.temperatureChanged.emit(14.0)
            values = []
            while not values or values[-1] != 14.0:
                values.append(await asyncio.wait_for(got.get(), 3))
            assert all(value < 100 for value in values)

    try:
        asyncio.run(main())
    finally:
        kitchen.close()
        cellar.close()
        broker.stop()
