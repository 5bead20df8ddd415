"""Background brokers (seed ``zmq.devices``): queues, forwarders and streamers with a real stop().

Code written for pyzmq's ``zmq.devices`` runs here by changing only the import::

    import zmq
    from labwire.brokers import ThreadDevice

    dev = ThreadDevice(zmq.FORWARDER, zmq.XSUB, zmq.XPUB)   # a signal broker
    dev.bind_in("tcp://*:5570")     # publishers connect here
    dev.bind_out("tcp://*:5571")    # subscribers connect here
    dev.start()                     # binding errors raise here
    ...
    print(dev.statistics())         # frames and bytes each way, while it runs
    dev.stop()                      # prompt under load; other sockets untouched

* :class:`Device` (runs in the caller's thread), :class:`ThreadDevice`, :class:`ProcessDevice`
  and their base :class:`BackgroundDevice`; device types :data:`QUEUE` (ROUTER/DEALER),
  :data:`FORWARDER` (SUB or XSUB to PUB or XPUB) and :data:`STREAMER` (PULL to PUSH).
* :class:`Proxy` / :class:`ThreadProxy` / :class:`ProcessProxy`: a copy of every message to a
  monitor socket; :class:`MonitoredQueue` / :class:`ThreadMonitoredQueue` /
  :class:`ProcessMonitoredQueue`: copies tagged with their direction, ROUTER-to-ROUTER too.
* :class:`Statistics`: frames and bytes per side, from ``statistics()``.

``labwire broker signals|queue|streamer`` runs one from the command line. An RPC server
publishes its signals into a signal broker with ``RPCServer(..., signal_broker=IN_URL)``; a
subscriber that only knows the broker's address receives them: an ``RPCSignalReceiver`` on
``OUT_URL``, or ``RPCClient(..., signal_url=OUT_URL)`` (``AsyncRPCClient`` too), which keeps
only its own device's emissions when the broker carries many devices.
"""

from labwire.brokers.device import BackgroundDevice, Device, ProcessDevice, ThreadDevice
from labwire.brokers.pairing import FORWARDER, QUEUE, STREAMER, DeviceType, check_pairing
from labwire.brokers.proxy import (
    MonitoredQueue,
    MonitoredQueueBase,
    ProcessMonitoredQueue,
    ProcessProxy,
    Proxy,
    ProxyBase,
    ThreadMonitoredQueue,
    ThreadProxy,
)
from labwire.transport.proxy import RelayStatistics as Statistics
from labwire.transport.proxy import SideCounts

__all__ = [
    "FORWARDER",
    "QUEUE",
    "STREAMER",
    "BackgroundDevice",
    "Device",
    "DeviceType",
    "MonitoredQueue",
    "MonitoredQueueBase",
    "ProcessDevice",
    "ProcessMonitoredQueue",
    "ProcessProxy",
    "Proxy",
    "ProxyBase",
    "SideCounts",
    "Statistics",
    "ThreadDevice",
    "ThreadMonitoredQueue",
    "ThreadProxy",
    "check_pairing",
]
