"""The sync client's channels: each thread's own DEALER connection to the server.

Each thread that calls gets a channel on its first call: a DEALER socket with
``ZMQ_IMMEDIATE`` (writable only while connected) and a lock that :meth:`Channels.close`
takes before closing it, so a call in progress in another thread is never cut mid-receive.
A channel follows the server: when the client's URL changes (a device that moved), the
thread's next call opens a channel to the new address. The table also closes the channels
of threads that ended, when a new one is made.
"""

from __future__ import annotations

import threading
import weakref

from labwire.transport import Socket, SocketType, Transport

__all__ = ["Channel", "Channels"]


class Channel:
    """One thread's connection to the server.

    Attributes:
        socket: The DEALER socket; replaced by :meth:`Channels.renew`.
        url: The address it connects to.
        thread: The thread it belongs to (weakly).
        lock: Held while a call uses the socket.
    """

    __slots__ = ("lock", "socket", "thread", "url")

    def __init__(self, socket: Socket, url: str) -> None:
        self.socket = socket
        self.url = url
        self.thread = weakref.ref(threading.current_thread())
        self.lock = threading.Lock()


class _ThreadChannel(threading.local):
    """Each thread's channel, None until the thread's first call."""

    channel: Channel | None = None  # a class default: reading it raises nothing


class Channels:
    """The channels of one client, one per calling thread.

    Args:
        transport: Makes the sockets.

    Attributes:
        local: This thread's channel as ``local.channel`` (None before its first call); the
            call path reads it directly, then checks its URL.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self.local = _ThreadChannel()
        self._table: dict[int, Channel] = {}
        self._lock = threading.Lock()

    def current(self, url: str, server_key: str | None) -> Channel:
        """This thread's channel to ``url``, made (or remade, if it was to another URL) now."""
        # A channel's socket is open for as long as the channel is this thread's: whatever
        # closes it (a Lazy Pirate retry, close()) drops or replaces the channel too.
        channel = self.local.channel
        if channel is not None and channel.url == url:
            return channel
        if channel is not None:
            self.drop(channel)
        channel = Channel(self._connect(url, server_key), url)
        self.local.channel = channel
        with self._lock:
            for ident, other in list(self._table.items()):
                owner = other.thread()
                if owner is None or not owner.is_alive():
                    other.socket.close()
                    del self._table[ident]
            self._table[threading.get_ident()] = channel
        return channel

    def one_off(self, url: str, server_key: str | None) -> Channel:
        """A channel for one request, not this thread's; the caller closes its socket.

        Its socket has no ``ZMQ_IMMEDIATE``: with it, libzmq discards a reply that arrived just
        before the peer closed the connection (which is when a STOP_SERVER reply arrives).
        """
        return Channel(self._transport.connect(SocketType.DEALER, url, server_key=server_key), url)

    def drop(self, channel: Channel) -> None:
        """Close ``channel``'s socket; this thread's next call makes a new channel."""
        channel.socket.close(0)
        if self.local.channel is channel:  # not a one-off
            self.local.channel = None
        with self._lock:
            if self._table.get(threading.get_ident()) is channel:
                del self._table[threading.get_ident()]

    def renew(self, channel: Channel, server_key: str | None) -> None:
        """Give ``channel`` a fresh socket to its URL.

        A fresh socket connects at once, where the old one may be waiting out its reconnection
        backoff (up to ``reconnect_ivl_max``) since the server went away.
        """
        stale = channel.socket
        channel.socket = self._connect(channel.url, server_key)
        stale.close(0)

    def close(self) -> None:
        """Close every channel's socket (also when the context was terminated)."""
        with self._lock:
            channels = list(self._table.values())
            self._table.clear()
        for channel in channels:
            if channel.lock.acquire(timeout=0.5):
                try:
                    channel.socket.close()
                finally:
                    channel.lock.release()

    def _connect(self, url: str, server_key: str | None) -> Socket:
        return self._transport.connect(SocketType.DEALER, url, server_key=server_key, immediate=1)
