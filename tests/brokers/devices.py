"""A small device with one signal, and its client, for the signal-broker tests."""

from __future__ import annotations

from labwire.rpc import RPCClient, RPCServer, RPCSignal


class Thermometer(RPCServer):
    temperatureChanged = RPCSignal(float)


class ThermometerClient(RPCClient):
    temperatureChanged = RPCSignal(float)
