"""How an RPC server publishes its signals.

One XPUB socket (a PUB that also reads its subscribers' subscriptions) publishes each emission
once, whatever the number of subscribers, numbered per signal under the server's incarnation
id so that subscribers can count what they missed. Optionally every emission also goes to a
signal broker. Any thread may emit, so publishing is guarded by a lock. The subscriptions read
back hold the probes clients send after subscribing (``SIGNAL_CHECK``): a client's
``connect()`` returns once its probe has arrived, so the first emission after it is not lost.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from labwire.errors import LabwireError
from labwire.transport import Socket, SocketType, Transport, parse_endpoint
from labwire.wire.signals import encode_signal, probe_token

__all__ = ["SignalPublisher"]

_log = logging.getLogger(__name__)

#: Subscription messages read from a publisher at a time, and probe tokens remembered.
_SUBSCRIPTIONS_AT_ONCE = 1000
_PROBES_KEPT = 256


class SignalPublisher:
    """The publisher of one server's signals.

    Args:
        transport: Makes the sockets.
        endpoint: The server's bound endpoint; signals are published next to it (a free TCP
            port on the same host, or ``PATH.signals`` for ipc/inproc).
        server_id: The server's incarnation id (each emission carries it).
        hwm: Emissions queued per subscriber before new ones are dropped.
        broker: The in (XSUB) address of a signal broker to publish to as well, or None.

    Attributes:
        endpoint: Where subscribers connect.
        seq: The number of the last emission of each signal.
    """

    def __init__(
        self, transport: Transport, endpoint: str, server_id: str, hwm: int, broker: str | None
    ) -> None:
        self._server_id = server_id
        self._lock = threading.Lock()
        #: Probe tokens whose subscription reached a publisher, the newest last.
        self._probes: dict[str, None] = {}
        self.seq: dict[str, int] = {}
        bound = parse_endpoint(endpoint, for_bind=True)
        if bound.is_tcp:
            url = str(bound.with_port(0))
        elif bound.scheme == "ipc":
            url = f"ipc://{bound.path}.signals"
        else:
            url = f"inproc://{bound.path}.signals"
        self._socket: Socket | None = transport.bind(SocketType.XPUB, url, sndhwm=hwm)
        self.endpoint = self._socket.endpoint
        self._broker: Socket | None = None
        if broker is not None:
            try:
                self._broker = transport.connect(SocketType.XPUB, broker, sndhwm=hwm)
            except LabwireError:
                self._socket.close(0)
                raise

    def publish(self, name: str, args: tuple[Any, ...]) -> None:
        """Publish one emission of signal ``name`` (dropped when the queue is full)."""
        with self._lock:
            if self._socket is None:
                return
            self.seq[name] = seq = self.seq.get(name, 0) + 1
            frame = encode_signal(name, args, self._server_id, seq)
            if not self._socket.send([frame], nowait=True):
                _log.debug("signal %s #%d dropped: publisher queue full", name, seq)
            if self._broker is not None:
                self._broker.send([frame], nowait=True)

    def read_subscriptions(self) -> None:
        """Read what subscribers sent, keeping the tokens of probes."""
        with self._lock:
            for publisher in (self._socket, self._broker):
                if publisher is None:
                    continue
                for subscription in publisher.recv_frames_nowait(_SUBSCRIPTIONS_AT_ONCE):
                    token = probe_token(subscription)
                    if token is not None:
                        self._probes[token] = None
                        if len(self._probes) > _PROBES_KEPT:
                            del self._probes[next(iter(self._probes))]

    def probe_arrived(self, token: str) -> bool:
        """Whether the probe ``token`` has reached a publisher (it is then forgotten)."""
        self.read_subscriptions()
        with self._lock:
            arrived = token in self._probes
            self._probes.pop(token, None)
        return arrived

    def close(self, linger: int | None = None) -> None:
        """Close the sockets; later emissions are dropped."""
        with self._lock:
            sockets = (self._socket, self._broker)
            self._socket = self._broker = None
        for publisher in sockets:
            if publisher is not None:
                publisher.close(linger)
