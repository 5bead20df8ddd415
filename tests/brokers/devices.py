"""A small device with one signal, and its client, for the signal-broker tests.

Run as a program (for the multi-host test)::

    python -m tests.brokers.devices device BIND BROKER_IN   # emits a count every 20 ms
    python -m tests.brokers.devices subscribe BROKER_OUT    # prints each value received

Each prints ``READY`` once set up, and runs until its standard input closes.
"""

from __future__ import annotations

import sys
import threading

from labwire.rpc import AsyncRPCClient, RPCClient, RPCServer, RPCSignal, RPCSignalReceiver


class Thermometer(RPCServer):
    temperatureChanged = RPCSignal(float)


class ThermometerClient(RPCClient):
    temperatureChanged = RPCSignal(float)


class AsyncThermometerClient(AsyncRPCClient):
    temperatureChanged = RPCSignal(float)


def _until_stdin_closes(work: threading.Event) -> None:
    sys.stdin.read()
    work.set()


def main(argv: list[str]) -> None:
    stop = threading.Event()
    threading.Thread(target=_until_stdin_closes, args=(stop,), daemon=True).start()
    if argv[0] == "device":
        device = Thermometer(None, argv[1], signal_broker=argv[2]).start()
        print("READY", device.endpoint, flush=True)
        count = 0
        while not stop.wait(0.02):
            count += 1
            device.temperatureChanged.emit(float(count))
        device.close()
    else:
        local = {"temperatureChanged": RPCSignal(float)}
        local["temperatureChanged"].connect(lambda value: print("VALUE", value, flush=True))
        receiver = RPCSignalReceiver(None, argv[1], local)
        receiver.start()
        print("READY", argv[1], flush=True)
        stop.wait()
        receiver.close()


if __name__ == "__main__":
    main(sys.argv[1:])
