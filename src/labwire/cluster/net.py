"""UDP plumbing of the cluster: an asyncio socket wrapper and the beacon socket.

Theory of operation
-------------------
Every device of a group binds one UDP socket to the group's port with ``SO_REUSEADDR`` and
``SO_REUSEPORT``, so several processes (and several devices in one process) share the port.
Beacons are sent to *broadcast* addresses, which the kernel delivers to every socket bound to
the port (a unicast datagram would reach only one of them). Which broadcast addresses depends
on ``network`` (:func:`beacon_targets`):

* inside ``127.0.0.0/8``: ``127.255.255.255``, so the devices of one machine find each other
  over loopback alone (no LAN needed);
* otherwise: the broadcast address of every local IPv4 interface whose address is inside
  ``network`` (so a multi-homed host announces itself on each matching LAN, and only there);
  ``0.0.0.0/0`` matches every interface. With no matching interface, the network's own
  broadcast address.

Where the network allows, beacons also go to the group's multicast address
(:func:`labwire.wire.cluster.group_to_multicast`, in ``239.255.0.0/16``, TTL 1), sent out of
each local interface inside ``network`` that does multicast; the beacon socket joins that
address on those interfaces. So a LAN that filters broadcast but passes multicast (or the
reverse) still works; a peer heard both ways is one peer. Loopback has no multicast.

Beacons whose source address is outside ``network`` are ignored by the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any, Self

_Socket = socket.socket

__all__ = [
    "AsyncSocket",
    "Interface",
    "beacon_targets",
    "close_quietly",
    "data_link_host",
    "join_multicast",
    "local_interfaces",
    "multicast_interfaces",
    "open_beacon_socket",
    "open_multicast_sender",
]

_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# Linux ioctl numbers (linux/sockios.h) and interface flags (net/if.h).
_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_IFF_UP = 0x1
_IFF_BROADCAST = 0x2
_IFF_MULTICAST = 0x1000


class AsyncSocket:
    """A standard socket driven by asyncio: the socket's methods, awaited where they block.

    Blocking operations (``accept``, ``connect``, ``recv``, ``recvfrom``, ``send``, ``sendall``,
    ``sendto``, ``sendfile``) are coroutines run by the event loop; every other attribute is
    the wrapped socket's own.

    Args:
        *args: Arguments of :class:`socket.socket` (family, type, proto) for a new socket.
        socket: An existing socket to wrap instead (made non-blocking).
        loop: The event loop; default the running loop of each call.
        **kwargs: Keyword arguments of :class:`socket.socket`.
    """

    def __init__(
        self,
        *args: Any,
        socket: _Socket | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        self._socket = socket if socket is not None else _new_socket(*args, **kwargs)
        self._socket.setblocking(False)
        self._loop = loop

    @classmethod
    def from_socket(
        cls,
        socket: _Socket,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Self:
        """Wrap an existing socket (it is made non-blocking)."""
        return cls(socket=socket, loop=loop)

    @property
    def socket(self) -> _Socket:
        """The wrapped socket."""
        return self._socket

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop if self._loop is not None else asyncio.get_running_loop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._socket, name)

    async def accept(self) -> tuple[AsyncSocket, Any]:
        """Wait for an incoming connection: ``(socket object, address info)``.

        The new socket is an :class:`AsyncSocket` too; for IP sockets the address is a pair
        ``(hostaddr, port)``.
        """
        conn, address = await self._get_loop().sock_accept(self._socket)
        return AsyncSocket(socket=conn, loop=self._loop), address

    async def connect(self, address: Any) -> None:
        """Connect to a remote address (for IP sockets a pair ``(host, port)``)."""
        await self._get_loop().sock_connect(self._socket, address)

    async def connect_ex(self, address: Any) -> int:
        """Like :meth:`connect`, but return an errno value (0 on success) instead of raising."""
        try:
            await self.connect(address)
        except OSError as exc:
            return exc.errno or -1
        return 0

    def dup(self) -> AsyncSocket:
        """A new socket object for the same system resource (non-inheritable)."""
        return AsyncSocket(socket=self._socket.dup(), loop=self._loop)

    async def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send a file (opened in binary mode) until EOF or ``count`` bytes; return bytes sent.

        Uses ``os.sendfile`` where available, plain sends otherwise; the socket must be of
        ``SOCK_STREAM`` type.
        """
        return await self._get_loop().sock_sendfile(self._socket, file, offset, count)

    async def recv(self, size: int) -> bytes:
        """Receive up to ``size`` bytes."""
        return await self._get_loop().sock_recv(self._socket, size)

    async def recvfrom(self, size: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to ``size`` bytes: ``(data, address)``."""
        return await self._get_loop().sock_recvfrom(self._socket, size)

    async def send(self, data: bytes) -> int:
        """Send all of ``data``; return its length."""
        await self.sendall(data)
        return len(data)

    async def sendall(self, data: bytes) -> None:
        """Send all of ``data``."""
        await self._get_loop().sock_sendall(self._socket, data)

    async def sendto(self, data: bytes, address: Any) -> int:
        """Send a datagram to ``address``; return the number of bytes sent."""
        return await self._get_loop().sock_sendto(self._socket, data, address)

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _new_socket(*args: Any, **kwargs: Any) -> _Socket:
    return _Socket(*args, **kwargs)


def open_beacon_socket(port: int) -> AsyncSocket:
    """A UDP socket bound to ``port`` on every address, shared with other sockets, broadcasting.

    Raises:
        OSError: The port cannot be bound (the message names it).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("", port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"cannot bind the cluster's UDP port {port}: {exc.strerror}"
        ) from None
    return AsyncSocket(socket=sock)


@dataclass(frozen=True, slots=True)
class Interface:
    """A local IPv4 interface that is up.

    Attributes:
        name: Its name (``eth0``).
        address: Its address, with its network.
        can_broadcast: Whether it has a broadcast address (``IFF_BROADCAST``).
        can_multicast: Whether it does multicast (``IFF_MULTICAST``).
    """

    name: str
    address: ipaddress.IPv4Interface
    can_broadcast: bool
    can_multicast: bool


def local_interfaces() -> list[Interface]:
    """The local IPv4 interfaces that are up (their first address each).

    Linux only (interface ioctls); an empty list elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("16s16x", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(probe, _SIOCGIFFLAGS, request), 16)[0]
                address = socket.inet_ntoa(fcntl.ioctl(probe, _SIOCGIFADDR, request)[20:24])
                netmask = socket.inet_ntoa(fcntl.ioctl(probe, _SIOCGIFNETMASK, request)[20:24])
            except OSError:
                continue  # no IPv4 address on this interface
            if flags & _IFF_UP:
                interface = ipaddress.IPv4Interface(f"{address}/{netmask}")
                found.append(
                    Interface(
                        name,
                        interface,
                        bool(flags & _IFF_BROADCAST) and interface.network.prefixlen < 31,
                        bool(flags & _IFF_MULTICAST),
                    )
                )
    return found


def _lan_interfaces(network: ipaddress.IPv4Network) -> list[Interface]:
    return [
        interface
        for interface in local_interfaces()
        if interface.address.ip in network and not interface.address.ip.is_loopback
    ]


def beacon_targets(network: ipaddress.IPv4Network) -> list[str]:
    """The broadcast addresses beacons for ``network`` go to (see the module docs)."""
    if network.subnet_of(_LOOPBACK):
        return [str(_LOOPBACK.broadcast_address)]
    targets = []
    for interface in _lan_interfaces(network):
        broadcast = str(interface.address.network.broadcast_address)
        if interface.can_broadcast and broadcast not in targets:
            targets.append(broadcast)
    return targets or [str(network.broadcast_address)]


def multicast_interfaces(network: ipaddress.IPv4Network) -> list[str]:
    """The addresses of the local interfaces inside ``network`` that do multicast."""
    if network.subnet_of(_LOOPBACK):
        return []
    return [str(i.address.ip) for i in _lan_interfaces(network) if i.can_multicast]


def join_multicast(sock: AsyncSocket, group: str, interfaces: list[str]) -> None:
    """Make the beacon socket receive ``group``'s multicast datagrams on each interface.

    Raises:
        OSError: The kernel refused a membership (the message names the interface).
    """
    for address in interfaces:
        membership = socket.inet_aton(group) + socket.inet_aton(address)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                continue  # joined already (the interface went away and came back)
            message = f"cannot join multicast group {group} on {address}: {exc.strerror}"
            raise OSError(exc.errno, message) from None


def open_multicast_sender(interface: str) -> AsyncSocket:
    """A UDP socket that sends multicast out of the interface with address ``interface``.

    Datagrams stay on the local network (TTL 1) and are also delivered to this host's own
    sockets (loop), so devices on one host hear each other this way too.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    except OSError:
        sock.close()
        raise
    return AsyncSocket(socket=sock)


def data_link_host(network: ipaddress.IPv4Network) -> str:
    """Where a device's data link listens: loopback for a loopback network, else everywhere."""
    return "127.0.0.1" if network.subnet_of(_LOOPBACK) else "*"


def close_quietly(sock: AsyncSocket | None) -> None:
    """Close ``sock`` if there is one, ignoring errors of a socket already gone."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
