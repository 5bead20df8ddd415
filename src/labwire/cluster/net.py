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

Beacons whose source address is outside ``network`` are ignored by the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import sys
from typing import Any, Self

_Socket = socket.socket

__all__ = [
    "AsyncSocket",
    "beacon_targets",
    "close_quietly",
    "data_link_host",
    "local_interfaces",
    "open_beacon_socket",
]

_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
# Linux ioctl numbers (linux/sockios.h) and interface flags (net/if.h).
_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B
_IFF_UP = 0x1


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


def local_interfaces() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """The local IPv4 interfaces that are up: ``(name, address with its network)``.

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
                found.append((name, ipaddress.IPv4Interface(f"{address}/{netmask}")))
    return found


def beacon_targets(network: ipaddress.IPv4Network) -> list[str]:
    """The broadcast addresses beacons for ``network`` go to (see the module docs)."""
    if network.subnet_of(_LOOPBACK):
        return [str(_LOOPBACK.broadcast_address)]
    targets = []
    for _, interface in local_interfaces():
        if interface.ip in network and not interface.ip.is_loopback:
            broadcast = str(interface.network.broadcast_address)
            if broadcast not in targets and interface.network.prefixlen < 31:
                targets.append(broadcast)
    if not targets:
        targets.append(str(network.broadcast_address))
    return targets


def data_link_host(network: ipaddress.IPv4Network) -> str:
    """Where a device's data link listens: loopback for a loopback network, else everywhere."""
    return "127.0.0.1" if network.subnet_of(_LOOPBACK) else "*"


def close_quietly(sock: AsyncSocket | None) -> None:
    """Close ``sock`` if there is one, ignoring errors of a socket already gone."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
