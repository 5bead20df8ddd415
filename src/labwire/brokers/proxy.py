"""Proxies and monitored queues: devices with a third, *monitor* socket.

A proxy (pyzmq's ``Proxy``) relays like a QUEUE device and also sends a copy of every message
to its monitor socket. A monitored queue (pyzmq's ``MonitoredQueue``) puts a first frame on
each copy saying which way the message went (``in_prefix`` for messages that came in on the
in socket, ``out_prefix`` for those that came in on the out socket), drops copies its monitor
socket cannot take rather than slowing the traffic, and can relay between two ROUTER sockets
(the sender's and the addressee's routing ids are swapped on the way, so a client sends
``[worker_id, request...]`` and the worker receives ``[client_id, request...]``).

Both add ``bind_mon``, ``connect_mon`` and ``setsockopt_mon`` to the device API, and exist
as foreground (:class:`Proxy`), thread (:class:`ThreadProxy`) and process
(:class:`ProcessProxy`) variants of the one :class:`~labwire.brokers.Device` implementation.
A proxy only needs an in socket that receives and an out socket that sends (no device type).
"""

from __future__ import annotations

from typing import Any

from labwire.brokers.device import Device, ProcessDevice, ThreadDevice
from labwire.brokers.pairing import DeviceType, _socket_type, check_pairing
from labwire.brokers.runners import _Plan, _Side
from labwire.config import Settings
from labwire.errors import ConfigurationError
from labwire.transport import SocketType

__all__ = [
    "MonitoredQueue",
    "MonitoredQueueBase",
    "ProcessMonitoredQueue",
    "ProcessProxy",
    "Proxy",
    "ProxyBase",
    "ThreadMonitoredQueue",
    "ThreadProxy",
]


class ProxyBase(Device):
    """A device with a monitor socket that gets a copy of every message.

    Args:
        in_type: The in socket's type.
        out_type: The out socket's type; < 0: the in socket serves both sides.
        mon_type: The monitor socket's type (default PUB, which never blocks). A monitor
            socket given no address is left out.
        settings: labwire settings for the sockets.

    Raises:
        ConfigurationError: The in socket cannot receive, the out or monitor socket cannot
            send.
    """

    def __init__(
        self,
        in_type: int | SocketType,
        out_type: int | SocketType,
        mon_type: int | SocketType = SocketType.PUB,
        *,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(DeviceType.QUEUE, in_type, out_type, settings=settings)
        self.mon_type = mon_type
        mon_kind = _socket_type(mon_type, "mon_type")
        if mon_kind in (SocketType.SUB, SocketType.PULL):
            raise ConfigurationError(f"the monitor socket sends: {mon_kind.name} cannot")
        self._sides["mon"] = _Side(mon_kind)

    def _check_pairing(self, in_kind: SocketType, out_kind: SocketType | None) -> None:
        check_pairing(None, in_kind, out_kind)

    def bind_mon(self, addr: str) -> None:
        """Queue an address for the monitor socket to listen on (port 0: any free port).

        Raises:
            EndpointError: ``addr`` is not a valid address to bind.
        """
        self._queue("mon", "bind", addr)

    def connect_mon(self, addr: str) -> None:
        """Queue an address for the monitor socket to connect to.

        Raises:
            EndpointError: ``addr`` is not a valid address.
        """
        self._queue("mon", "connect", addr)

    def setsockopt_mon(self, opt: int, value: Any) -> None:
        """Queue ``setsockopt(opt, value)`` for the monitor socket.

        Raises:
            ConfigurationError: Unknown option, wrong value type, or a value ZeroMQ refuses.
        """
        self._queue_option("mon", opt, value)

    def _tags(self) -> tuple[bytes, bytes] | None:
        return None

    def _plan(self) -> _Plan:
        plan = super()._plan()
        mon = self._sides["mon"]
        capture = mon.config() if mon.binds or mon.connects else None
        return _Plan(plan.in_side, plan.out_side, capture, self._tags(), plan.settings)

    @property
    def mon_endpoints(self) -> list[str]:
        """The real addresses the monitor socket listens on, once started."""
        return self._endpoints("capture")


class MonitoredQueueBase(ProxyBase):
    """A proxy whose monitor copies start with a frame naming their direction.

    Args:
        in_type: The in socket's type (ROUTER on both sides is allowed).
        out_type: The out socket's type.
        mon_type: The monitor socket's type (default PUB).
        in_prefix: First frame of copies of messages that came in on the in socket.
        out_prefix: First frame of copies of messages that came in on the out socket.
        settings: labwire settings for the sockets.

    Raises:
        ConfigurationError: As for :class:`ProxyBase`, or a prefix is not bytes.
    """

    def __init__(
        self,
        in_type: int | SocketType,
        out_type: int | SocketType,
        mon_type: int | SocketType = SocketType.PUB,
        in_prefix: bytes = b"in",
        out_prefix: bytes = b"out",
        *,
        settings: Settings | None = None,
    ) -> None:
        for name, prefix in (("in_prefix", in_prefix), ("out_prefix", out_prefix)):
            if not isinstance(prefix, bytes):
                raise ConfigurationError(f"{name} must be bytes, got {prefix!r}")
        super().__init__(in_type, out_type, mon_type, settings=settings)
        self.in_prefix = in_prefix
        self.out_prefix = out_prefix

    def _tags(self) -> tuple[bytes, bytes] | None:
        return (self.in_prefix, self.out_prefix)


class Proxy(ProxyBase):
    """A proxy run in the thread that starts it (see :class:`ProxyBase`)."""


class ThreadProxy(ProxyBase, ThreadDevice):
    """A proxy run in a background thread (see :class:`ProxyBase`)."""


class ProcessProxy(ProxyBase, ProcessDevice):
    """A proxy run in a child process (see :class:`ProxyBase` and ProcessDevice)."""


class MonitoredQueue(MonitoredQueueBase):
    """A monitored queue run in the thread that starts it (see :class:`MonitoredQueueBase`)."""


class ThreadMonitoredQueue(MonitoredQueueBase, ThreadDevice):
    """A monitored queue run in a background thread (see :class:`MonitoredQueueBase`)."""


class ProcessMonitoredQueue(MonitoredQueueBase, ProcessDevice):
    """A monitored queue run in a child process (see :class:`MonitoredQueueBase`)."""
