"""Relays: the loop of a broker, moving messages between two sockets until it is stopped.

Theory of operation
-------------------
A :class:`Relay` owns the sockets of one broker: the *in* side (ZeroMQ's frontend), the *out*
side (the backend; it may be the in socket itself), an optional *capture* socket that gets a
copy of every message, and an ``inproc://`` PAIR of control sockets. :meth:`Relay.open` makes,
configures, binds and connects every socket in the caller's thread through a
:class:`~labwire.transport.Transport` (so the process's security settings apply and any error,
such as an address that cannot be bound, is raised there); :meth:`Relay.run` then moves the
sockets to the thread that calls it (ZeroMQ allows that across a full memory barrier, which
starting a thread provides) and relays until told to stop.

Two engines speak one control protocol on the PAIR (``PAUSE``, ``RESUME``, ``TERMINATE``,
``STATISTICS``; the latter answered with eight 64-bit counters, see :class:`RelayStatistics`):

* libzmq's ``zmq_proxy_steerable``, in C with the GIL released, for plain relays (with or
  without an untagged capture copy). It forwards a side only while the other side can take
  messages, so it keeps answering its control socket under any load;
* a Python loop for what libzmq cannot do: a capture copy tagged with its direction (the
  monitored queue), and a ROUTER-to-ROUTER queue (the first two frames, the sender's and the
  addressee's routing ids, are swapped on the way). It reads a side only while the other side
  can take a message, likewise, and drops capture copies the capture socket cannot take.

:meth:`Relay.stop` works from any thread: under a lock it pauses the loop, reads the final
counters and terminates it; the loop's thread closes its sockets. Nothing else of the process
is touched: no context is ever terminated here.

Counts are ZeroMQ message parts (frames) and their bytes, the way libzmq counts them: a
three-part message counts three, and a ROUTER side counts its routing-id frames.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from labwire.errors import ClosedError, ConfigurationError, LabwireError, TransportError
from labwire.transport.sockets import Socket, SocketType, Transport, translate_errors

__all__ = [
    "Relay",
    "RelayStatistics",
    "SideConfig",
    "SideCounts",
    "check_option",
    "option_name",
]

_log = logging.getLogger(__name__)

_COUNTER = struct.Struct("=Q")
#: Messages one side may relay before the Python loop looks at its control socket again.
_BATCH = 256
#: Options that add up when set again (each SUBSCRIBE adds a prefix) instead of replacing.
_CUMULATIVE = {int(zmq.SUBSCRIBE), int(zmq.UNSUBSCRIBE)}
_STEER_TIMEOUT_MS = 1000


@dataclass(frozen=True, slots=True)
class SideConfig:
    """How to make one socket of a relay.

    Attributes:
        kind: The socket pattern.
        binds: Addresses to listen on (port 0: any free port).
        connects: Addresses to connect to.
        options: ``(option, value)`` pairs, ZeroMQ option numbers, applied in order before
            binding and connecting (SUBSCRIBE / UNSUBSCRIBE once the socket is made).
    """

    kind: SocketType
    binds: tuple[str, ...] = ()
    connects: tuple[str, ...] = ()
    options: tuple[tuple[int, int | bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class SideCounts:
    """Traffic on one side of a relay.

    Attributes:
        frames_received: Message parts received on this side (and relayed to the other).
        bytes_received: Their bytes.
        frames_sent: Message parts sent on this side (coming from the other).
        bytes_sent: Their bytes.
    """

    frames_received: int = 0
    bytes_received: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0


@dataclass(frozen=True, slots=True)
class RelayStatistics:
    """Traffic through a relay, per side.

    Messages from the in side to the out side show in ``in_side.frames_received`` and
    ``out_side.frames_sent``; replies (or subscriptions, on a signal broker) the other way.

    Attributes:
        in_side: Counters of the in (frontend) socket.
        out_side: Counters of the out (backend) socket.
    """

    in_side: SideCounts = SideCounts()
    out_side: SideCounts = SideCounts()

    @classmethod
    def from_frames(cls, frames: Sequence[bytes]) -> RelayStatistics:
        """Decode a ``STATISTICS`` reply (eight native-endian 64-bit counters).

        Raises:
            TransportError: The reply does not have that shape.
        """
        if len(frames) != 8 or any(len(frame) != _COUNTER.size for frame in frames):
            raise TransportError("relay statistics reply is not eight 64-bit counters")
        counts = [_COUNTER.unpack(frame)[0] for frame in frames]
        return cls(SideCounts(*counts[:4]), SideCounts(*counts[4:]))


def option_name(option: int) -> str:
    """The ZeroMQ name of a socket option number, e.g. ``"SNDHWM"``.

    Raises:
        ConfigurationError: ``option`` is not a ZeroMQ socket option.
    """
    if not isinstance(option, int) or isinstance(option, bool):
        raise ConfigurationError(f"a socket option is a ZeroMQ option number, got {option!r}")
    try:
        return str(zmq.SocketOption(option).name)
    except ValueError:
        raise ConfigurationError(f"{option} is not a ZeroMQ socket option") from None


def check_option(kind: SocketType, option: int, value: object) -> int | bytes:
    """Check that ``option`` can be set to ``value`` on a socket of ``kind``, now.

    The option is set on a scratch socket of that kind, so a value ZeroMQ refuses (a negative
    high-water mark, SUBSCRIBE on a PUB socket) is reported to the caller, not to a broker's
    background thread.

    Args:
        kind: The socket pattern.
        option: A ZeroMQ socket option number (e.g. ``zmq.SNDHWM``).
        value: An int for integer options; bytes (or text, sent as UTF-8) for the others.

    Returns:
        The value as it will be set (text encoded).

    Raises:
        ConfigurationError: Unknown option, wrong value type, or a value ZeroMQ refuses; the
            message names the option.
    """
    name = option_name(option)
    kind_of_value = zmq.SocketOption(option)._opt_type
    checked: int | bytes
    if kind_of_value is zmq.constants._OptType.bytes:
        if isinstance(value, str):
            checked = value.encode()
        elif isinstance(value, bytes | bytearray | memoryview):
            checked = bytes(value)
        else:
            raise ConfigurationError(
                f"socket option {name} takes bytes, got {type(value).__name__} {value!r}"
            )
    elif kind_of_value is zmq.constants._OptType.fd:
        raise ConfigurationError(f"socket option {name} can only be read")
    else:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigurationError(
                f"socket option {name} takes an integer, got {type(value).__name__} {value!r}"
            )
        checked = value
    scratch: zmq.Socket[Any] = zmq.Context.instance().socket(kind.value)
    try:
        scratch.setsockopt(option, checked)
    except zmq.ZMQError as exc:
        raise ConfigurationError(
            f"socket option {name}={checked!r} is refused on a {kind.name} socket: {exc.strerror}"
        ) from None
    finally:
        scratch.close(linger=0)
    return checked


def _open_side(transport: Transport, config: SideConfig, role: str) -> tuple[Socket, list[str]]:
    """Make, configure, bind and connect one socket of a relay; also its real bound addresses."""
    if not config.binds and not config.connects:
        raise ConfigurationError(f"the {role} socket has no address: bind or connect it")
    if (
        transport.security is not None
        and config.binds
        and any(not url.startswith("inproc://") for url in config.connects)
    ):
        raise ConfigurationError(
            f"with security on, the {role} socket either binds (CurveZMQ server) or connects "
            "(CurveZMQ client), not both"
        )
    plain: dict[str, Any] = {}
    cumulative: list[tuple[int, int | bytes]] = []
    for option, value in config.options:
        if option in _CUMULATIVE:
            cumulative.append((option, value))
        else:
            plain[option_name(option).lower()] = value
    if config.binds:
        sock = transport.bind(config.kind, config.binds[0], **plain)
        rest_binds, connects = config.binds[1:], config.connects
    else:
        sock = transport.connect(config.kind, config.connects[0], **plain)
        rest_binds, connects = (), config.connects[1:]
    try:
        endpoints = [sock.endpoint] if config.binds else []
        for url in rest_binds:
            endpoints.append(sock.bind(url))
        for url in connects:
            sock.connect(url)
        if config.kind is SocketType.SUB and not any(o == zmq.SUBSCRIBE for o, _ in cumulative):
            sock.subscribe(b"")
        raw = sock.fileno()
        for option, value in cumulative:
            with translate_errors(f"set socket option {option_name(option)}"):
                raw.setsockopt(option, value)
    except LabwireError:
        sock.close(0)
        raise
    return sock, endpoints


class Relay:
    """The sockets and loop of one broker (see the module docs).

    Made by :meth:`open`; :meth:`run` relays in the calling thread until :meth:`stop`.

    Attributes:
        endpoints: The real addresses each side listens on, by role (``"in"``, ``"out"``,
            ``"capture"``), in the order they were given (port 0 resolved).
    """

    def __init__(
        self,
        sockets: dict[str, Socket],
        endpoints: dict[str, list[str]],
        control: Socket,
        steer: Socket,
        tags: tuple[bytes, bytes] | None,
    ) -> None:
        self._sockets = sockets
        self._control = control
        self._steer = steer
        self._tags = tags
        self.endpoints = endpoints
        self._lock = threading.Lock()
        self._state = "ready"  # ready -> running -> finished, or ready -> finished
        self._finished = threading.Event()
        self._final: RelayStatistics | None = None

    @classmethod
    def open(
        cls,
        transport: Transport,
        in_side: SideConfig,
        out_side: SideConfig | None,
        capture: SideConfig | None = None,
        *,
        tags: tuple[bytes, bytes] | None = None,
    ) -> Relay:
        """Make every socket of a relay, in the caller's thread.

        Args:
            transport: Makes the sockets (security, heartbeats, linger).
            in_side: The in (frontend) socket.
            out_side: The out (backend) socket; None: the in socket serves both sides.
            capture: A socket that gets a copy of every message relayed, or None.
            tags: With a capture socket: a first frame added to each copy, for messages from
                the in side and from the out side respectively (the Python loop is used).

        Raises:
            ConfigurationError: A side has no address, or mixes binding and connecting with
                security on, or an option is refused.
            EndpointError: An address is invalid or cannot be bound.
            SecurityConfigError: Security is on and a connecting side has no server key.
        """
        opened: dict[str, Socket] = {}
        endpoints: dict[str, list[str]] = {}
        sides = {"in": in_side, "out": out_side, "capture": capture}
        try:
            for role, config in sides.items():
                if config is not None:
                    opened[role], endpoints[role] = _open_side(transport, config, role)
            url = Transport.unique_inproc("relay-control")
            control = transport.bind(SocketType.PAIR, url)
            opened["control"] = control
            steer = transport.connect(SocketType.PAIR, url)
        except BaseException:
            for sock in opened.values():
                sock.close(0)
            raise
        del opened["control"]
        if out_side is None:
            endpoints["out"] = endpoints["in"]
        return cls(opened, endpoints, control, steer, tags)

    @property
    def is_finished(self) -> bool:
        """Whether the loop has ended (or will never run)."""
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the loop has ended; False if it still runs after ``timeout`` seconds."""
        return self._finished.wait(timeout)

    def run(self) -> None:
        """Relay in the calling thread until :meth:`stop`; then close the relay's sockets.

        Returns at once if the relay was stopped before it ran.

        Raises:
            TransportError: The loop failed (e.g. the context was terminated by its owner).
        """
        with self._lock:
            if self._state != "ready":
                return
            self._state = "running"
        ins = self._sockets["in"].fileno()
        outs = self._sockets["out"].fileno() if "out" in self._sockets else ins
        capture = self._sockets["capture"].fileno() if "capture" in self._sockets else None
        control = self._control.fileno()
        try:
            with translate_errors("relay"):
                if self._tags is not None or (ins.type == zmq.ROUTER and outs.type == zmq.ROUTER):
                    _PythonLoop(ins, outs, capture, control, self._tags).run()
                else:
                    zmq.proxy_steerable(ins, outs, capture, control)
        except ClosedError:
            _log.warning("relay stopped: its sockets or context were closed by someone else")
        finally:
            for sock in (*self._sockets.values(), self._control):
                sock.close()
            self._finished.set()

    def _ask(self, command: bytes) -> list[bytes] | None:
        """Send a control command (the lock is held); return the reply to STATISTICS.

        Other commands are answered with one empty frame (libzmq >= 4.3.5 does so on a PAIR
        control socket); those answers are skipped while looking for the counters.
        """
        if not self._steer.send([command], nowait=True):
            raise TransportError("the relay loop does not take commands")
        if command != b"STATISTICS":
            return None
        while True:
            frames = self._steer.recv(_STEER_TIMEOUT_MS)
            if frames is None:
                raise TransportError("the relay loop did not report its statistics in time")
            if len(frames) != 1 or len(frames[0]):
                return [bytes(frame) for frame in frames]

    def statistics(self) -> RelayStatistics:
        """Counters so far; the final ones once stopped (zeros before it ran).

        Raises:
            TransportError: The loop did not answer in time.
        """
        with self._lock:
            if self._final is not None:
                return self._final
            if self._state != "running" or self._finished.is_set():
                return RelayStatistics()
            frames = self._ask(b"STATISTICS")
            assert frames is not None
            return RelayStatistics.from_frames(frames)

    def stop(self, timeout: float = 1.0) -> RelayStatistics:
        """Stop the loop (from any thread) and return the final counters; idempotent.

        Args:
            timeout: Seconds to wait for the loop to end and close its sockets.

        Returns:
            The final counters (zeros when the relay never ran).
        """
        with self._lock:
            if self._final is not None:
                return self._final
            state, self._state = self._state, "finished"
            if state == "ready":  # never ran: its sockets are still ours
                for sock in self._sockets.values():
                    sock.close()
                self._control.close()
                self._finished.set()
                self._final = RelayStatistics()
            else:
                final = RelayStatistics()
                if not self._finished.is_set():
                    try:
                        self._ask(b"PAUSE")
                        frames = self._ask(b"STATISTICS")
                        assert frames is not None
                        final = RelayStatistics.from_frames(frames)
                        self._ask(b"TERMINATE")
                    except TransportError as exc:
                        _log.warning("relay did not take its stop command: %s", exc)
                self._final = final
                if not self._finished.wait(timeout):
                    _log.warning("relay loop did not end within %.1f s", timeout)
            self._steer.close()
            return self._final


class _PythonLoop:
    """The relay loop for tagged captures and ROUTER-to-ROUTER queues."""

    def __init__(
        self,
        ins: zmq.Socket[Any],
        outs: zmq.Socket[Any],
        capture: zmq.Socket[Any] | None,
        control: zmq.Socket[Any],
        tags: tuple[bytes, bytes] | None,
    ) -> None:
        self.ins, self.outs, self.capture, self.control = ins, outs, capture, control
        self.in_tag: bytes | None = None if tags is None else tags[0]
        self.out_tag: bytes | None = None if tags is None else tags[1]
        self.swap = ins.type == zmq.ROUTER and outs.type == zmq.ROUTER
        # received frames, received bytes, sent frames, sent bytes: in side, then out side
        self.counts = [0] * 8
        self.capture_dropped = 0
        self.poller = zmq.Poller()
        self.blocked: dict[Any, bool] = {ins: False, outs: False}  # by source: waits for room

    def _arm(self, paused: bool) -> None:
        """Poll each socket for input unless paused or its peer is full; for room if needed."""
        sockets = (self.ins,) if self.ins is self.outs else (self.ins, self.outs)
        for sock in sockets:
            peer = self.outs if sock is self.ins else self.ins
            flags = 0
            if not paused and not self.blocked[sock]:
                flags |= zmq.POLLIN
            if not paused and self.blocked[peer]:
                flags |= zmq.POLLOUT
            self.poller.register(sock, flags)

    def run(self) -> None:
        self.poller.register(self.control, zmq.POLLIN)
        paused = False
        self._arm(paused)
        while True:
            events = dict(self.poller.poll())
            if self.control in events:
                command = self.control.recv()
                if command == b"STATISTICS":
                    self.control.send_multipart([_COUNTER.pack(value) for value in self.counts])
                    continue
                self.control.send(b"")  # the empty answer libzmq gives other commands
                if command == b"TERMINATE":
                    if self.capture_dropped:
                        _log.info("relay dropped %d capture copies", self.capture_dropped)
                    return
                if command in (b"PAUSE", b"RESUME"):
                    paused = command == b"PAUSE"
                else:
                    _log.warning("relay ignored unknown control command %r", command[:32])
                self._arm(paused)
                continue
            if paused:
                continue
            if self.ins in events or self.blocked[self.ins]:
                self._relay(self.ins, self.outs, self.in_tag, 0)
            if self.outs is not self.ins and (self.outs in events or self.blocked[self.outs]):
                self._relay(self.outs, self.ins, self.out_tag, 4)
            self._arm(paused)

    def _relay(self, source: Any, target: Any, tag: bytes | None, base: int) -> None:
        """Move up to a batch of messages while ``target`` has room; note if it is full."""
        counts = self.counts
        other = 4 - base
        for _ in range(_BATCH):
            if not source.get(zmq.EVENTS) & zmq.POLLIN:
                self.blocked[source] = False
                return
            if not target.get(zmq.EVENTS) & zmq.POLLOUT:
                self.blocked[source] = True
                return
            frames = source.recv_multipart()
            size = sum(len(frame) for frame in frames)
            if self.swap and len(frames) >= 2:
                frames[0], frames[1] = frames[1], frames[0]
            target.send_multipart(frames)
            counts[base] += len(frames)
            counts[base + 1] += size
            counts[other + 2] += len(frames)
            counts[other + 3] += size
            if self.capture is not None:
                copy = frames if tag is None else [tag, *frames]
                try:
                    self.capture.send_multipart(copy, zmq.NOBLOCK)
                except zmq.Again:
                    self.capture_dropped += 1
        self.blocked[source] = False
