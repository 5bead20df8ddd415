"""Devices: a broker between two sockets, run in the foreground, a thread or a process.

Theory of operation
-------------------
A device is configured with socket *types* and queued actions (``bind_in``, ``connect_out``,
``setsockopt_in``...), as in pyzmq, and then started. Everything that can be checked is
checked in the caller's thread, when it can be:

* at construction: the socket types, and whether they can make the device type (a QUEUE
  relays between ROUTER and DEALER sockets, a FORWARDER from SUB/XSUB to PUB/XPUB, a STREAMER
  from PULL to PUSH; see :func:`check_pairing`);
* at each call: the address syntax, and each socket option (number, value type, and the value
  itself, set on a scratch socket of that type);
* at :meth:`Device.start`: opening the sockets. A thread device makes, binds and connects
  its sockets in the caller's thread and hands them to its thread; a process device starts
  its process and waits until the child reports its sockets ready, or the error that
  stopped it, which ``start()`` raises. Either way an address that cannot be bound raises
  from ``start()``, and ports given as 0 are read back afterwards (:attr:`Device.in_endpoints`).

There is one implementation, parameterised by where it runs: :class:`Device` runs in the
thread that calls ``start()`` (it returns when stopped), :class:`ThreadDevice` in a thread,
:class:`ProcessDevice` in a child process (``fork`` or ``spawn``: the child gets a plain,
picklable plan and makes its own context). The relay loop itself is
:class:`labwire.transport.proxy.Relay` (libzmq's steerable proxy, or a Python loop for tagged
captures and ROUTER-to-ROUTER queues).

``stop()`` works on every variant from any thread and returns promptly under load: it sends
the loop a control message on a private ``inproc://`` socket (never terminating a shared
context); a process device asks its child over a pipe, then terminates and, at last, kills
it, and joins it. The final statistics stay readable after ``stop()``.

Sockets are made by :class:`~labwire.transport.Transport`, so they get labwire's settings:
bounded LINGER, heartbeats on TCP, and CurveZMQ when security is on (a binding side is a
CURVE server that only lets in allowed keys, a connecting side a CURVE client). Frames are
limited to ``Settings.limits.max_frame_bytes`` like every labwire socket unless a
``MAXMSGSIZE`` option says otherwise. A SUB in-socket without a SUBSCRIBE option subscribes
to everything (a forwarder that forwards nothing is never what was meant).
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, ClassVar, Self

from labwire.config import Settings, default_settings
from labwire.errors import ClosedError, ConfigurationError, LabwireError, TransportError
from labwire.transport import Context, SocketType, Transport, default_context, parse_endpoint
from labwire.transport.proxy import (
    Relay,
    RelayStatistics,
    SideConfig,
    check_option,
)

__all__ = [
    "FORWARDER",
    "QUEUE",
    "STREAMER",
    "BackgroundDevice",
    "Device",
    "DeviceType",
    "ProcessDevice",
    "ThreadDevice",
    "check_pairing",
]

_log = logging.getLogger(__name__)

#: How long ``ProcessDevice.start()`` waits for the child to report its sockets.
_CHILD_START_TIMEOUT = 30.0


class DeviceType(enum.IntEnum):
    """The device types, with ZeroMQ's numbers (``zmq.QUEUE`` and friends work too)."""

    STREAMER = 1
    FORWARDER = 2
    QUEUE = 3


STREAMER = DeviceType.STREAMER
FORWARDER = DeviceType.FORWARDER
QUEUE = DeviceType.QUEUE

_RECEIVING = frozenset(
    {
        SocketType.PULL,
        SocketType.SUB,
        SocketType.XSUB,
        SocketType.XPUB,
        SocketType.ROUTER,
        SocketType.DEALER,
        SocketType.PAIR,
    }
)
_SENDING = frozenset(
    {
        SocketType.PUSH,
        SocketType.PUB,
        SocketType.XPUB,
        SocketType.XSUB,
        SocketType.ROUTER,
        SocketType.DEALER,
        SocketType.PAIR,
    }
)
#: Types one socket can serve both sides with (it receives, and sends back).
_SINGLE = frozenset({SocketType.ROUTER, SocketType.DEALER, SocketType.PAIR, SocketType.REP})
_DEVICE_SIDES = {
    DeviceType.QUEUE: (
        frozenset({SocketType.ROUTER, SocketType.DEALER}),
        frozenset({SocketType.ROUTER, SocketType.DEALER}),
    ),
    DeviceType.FORWARDER: (
        frozenset({SocketType.SUB, SocketType.XSUB}),
        frozenset({SocketType.PUB, SocketType.XPUB}),
    ),
    DeviceType.STREAMER: (frozenset({SocketType.PULL}), frozenset({SocketType.PUSH})),
}


def _socket_type(value: object, what: str) -> SocketType:
    if isinstance(value, SocketType):
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a ZeroMQ socket type, got {value!r}")
    try:
        return SocketType(value)
    except ValueError:
        raise ConfigurationError(f"{what} {value} is not a socket type a broker can use") from None


def _names(kinds: frozenset[SocketType]) -> str:
    return "/".join(sorted(kind.name for kind in kinds))


def check_pairing(
    device_type: DeviceType | None, in_kind: SocketType, out_kind: SocketType | None
) -> None:
    """Refuse socket types that cannot make a working broker.

    Args:
        device_type: QUEUE, FORWARDER or STREAMER; None for a proxy, which only needs an in
            socket that receives and an out socket that sends.
        in_kind: The in socket's type.
        out_kind: The out socket's type; None when the in socket serves both sides.

    Raises:
        ConfigurationError: The pairing cannot work; the message says which types can.
    """
    label = "proxy" if device_type is None else device_type.name
    if out_kind is None:
        if device_type not in (None, DeviceType.QUEUE) or in_kind not in _SINGLE:
            raise ConfigurationError(
                f"one socket serving both sides (out_type < 0) must be a "
                f"{_names(_SINGLE)} socket of a QUEUE or proxy; got {in_kind.name} in a {label}"
            )
        return
    if device_type is None:
        if in_kind not in _RECEIVING:
            raise ConfigurationError(
                f"a proxy's in socket receives: {in_kind.name} cannot "
                f"(use one of {_names(_RECEIVING)})"
            )
        if out_kind not in _SENDING:
            raise ConfigurationError(
                f"a proxy's out socket sends: {out_kind.name} cannot "
                f"(use one of {_names(_SENDING)})"
            )
        return
    ins, outs = _DEVICE_SIDES[device_type]
    if in_kind not in ins or out_kind not in outs:
        raise ConfigurationError(
            f"a {label} relays from {_names(ins)} to {_names(outs)} sockets; "
            f"got in={in_kind.name}, out={out_kind.name}"
        )


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything needed to open a device's sockets, picklable for a spawned process."""

    in_side: SideConfig
    out_side: SideConfig | None
    capture: SideConfig | None
    tags: tuple[bytes, bytes] | None
    settings: Settings


class _Side:
    """The queued actions for one socket of a device."""

    def __init__(self, kind: SocketType) -> None:
        self.kind = kind
        self.binds: list[str] = []
        self.connects: list[str] = []
        self.options: list[tuple[int, int | bytes]] = []

    def config(self, merged: _Side | None = None) -> SideConfig:
        sides = (self,) if merged is None else (self, merged)
        return SideConfig(
            self.kind,
            tuple(url for side in sides for url in side.binds),
            tuple(url for side in sides for url in side.connects),
            tuple(option for side in sides for option in side.options),
        )


class _Runner:
    """A running relay in this process: in the caller's thread, or in a thread of its own."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.endpoints = relay.endpoints
        self.thread: threading.Thread | None = None

    def statistics(self) -> RelayStatistics:
        return self.relay.statistics()

    def stop(self, timeout: float) -> RelayStatistics:
        deadline = time.monotonic() + timeout
        final = self.relay.stop(timeout)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        return final

    def join(self, timeout: float | None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
        elif not self.relay.is_finished:
            self.relay.wait(timeout)

    @property
    def is_finished(self) -> bool:
        return self.relay.is_finished and (self.thread is None or not self.thread.is_alive())


class _ChildRunner:
    """A relay in a child process, driven over a pipe."""

    def __init__(self, process: Any, pipe: Connection, endpoints: dict[str, list[str]]) -> None:
        self.process = process
        self.pipe = pipe
        self.endpoints = endpoints
        self._lock = threading.Lock()
        self._final: RelayStatistics | None = None

    def statistics(self) -> RelayStatistics:
        with self._lock:
            if self._final is not None:
                return self._final
            try:
                self.pipe.send("statistics")
                if self.pipe.poll(1.0):
                    reply = self.pipe.recv()
                    if isinstance(reply, RelayStatistics):
                        return reply
            except (OSError, EOFError):
                pass
            raise TransportError("the broker process did not report its statistics")

    def stop(self, timeout: float) -> RelayStatistics:
        """Ask the child to stop; past 80% of ``timeout`` terminate it, past 90% kill it."""
        with self._lock:
            if self._final is not None:
                return self._final
            start = time.monotonic()
            final = RelayStatistics()
            try:
                self.pipe.send("stop")
                if self.pipe.poll(timeout * 0.6):
                    reply = self.pipe.recv()
                    if isinstance(reply, RelayStatistics):
                        final = reply
            except (OSError, EOFError):
                pass
            self._final = final
            process = self.process
            process.join(max(0.0, start + timeout * 0.8 - time.monotonic()))
            if process.is_alive():
                _log.warning("broker process %s did not stop; terminating it", process.pid)
                process.terminate()
                process.join(max(0.0, start + timeout * 0.9 - time.monotonic()))
            if process.is_alive():
                process.kill()  # also ends a stopped (SIGSTOP) process
                process.join(1.0)
            self.pipe.close()
            return final

    def join(self, timeout: float | None) -> None:
        self.process.join(timeout)

    @property
    def is_finished(self) -> bool:
        return not self.process.is_alive()


def _serve_in_child(plan: _Plan, context_factory: Callable[[], Any], pipe: Connection) -> None:
    """The body of a process device: open the relay, report, relay until told to stop."""
    context = context_factory()
    relay: Relay | None = None
    thread: threading.Thread | None = None
    try:
        try:
            relay = Relay.open(
                Transport(context, plan.settings),
                plan.in_side,
                plan.out_side,
                plan.capture,
                tags=plan.tags,
            )
        except LabwireError as exc:
            pipe.send(("error", exc))
            return
        thread = threading.Thread(target=relay.run, name="labwire-broker", daemon=True)
        thread.start()
        pipe.send(("ready", relay.endpoints))
        while True:
            command = pipe.recv()
            if command == "statistics":
                pipe.send(relay.statistics())
            elif command == "stop":
                pipe.send(relay.stop())
                return
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent went away (or the terminal's Ctrl-C): stop below
    finally:
        if relay is not None:
            relay.stop()
        if thread is not None:
            thread.join(1.0)
        pipe.close()
        context.term()


class Device:
    """A broker between an in socket and an out socket, run in the thread that starts it.

    As in pyzmq, socket *types* are given, and the sockets are configured with queued
    ``bind_*``, ``connect_*`` and ``setsockopt_*`` calls::

        dev = ThreadDevice(QUEUE, zmq.ROUTER, zmq.DEALER)
        dev.bind_in("tcp://127.0.0.1:0")
        dev.bind_out("tcp://127.0.0.1:5560")
        dev.start()
        print(dev.in_endpoints)           # ['tcp://127.0.0.1:40123']
        ...
        dev.stop()

    ``Device`` itself runs in the caller's thread: :meth:`start` returns once another thread
    calls :meth:`stop`. :class:`ThreadDevice` and :class:`ProcessDevice` run in the background.

    Args:
        device_type: QUEUE, FORWARDER or STREAMER (``zmq.QUEUE`` etc. are the same numbers).
        in_type: The in socket's type (e.g. ``zmq.ROUTER`` or ``SocketType.ROUTER``).
        out_type: The out socket's type; < 0: the in socket serves both sides.
        settings: labwire settings for the sockets (security, linger, heartbeats); default
            :func:`~labwire.config.default_settings`.

    Attributes:
        device_type: The device type.
        in_type: The in socket's type, as given.
        out_type: The out socket's type, as given.
        daemon: Whether a background thread or process is a daemon (default True, so it
            never keeps the program alive).
        settings: The labwire settings of the sockets.
        launcher: The thread or process running the device (None before start, and for a
            foreground device).
        error: What ended the relay loop when it failed on its own, else None.

    Raises:
        TypeError: ``in_type`` or ``out_type`` is missing.
        ConfigurationError: The socket types cannot make this device type (see
            :func:`check_pairing`).
    """

    #: Makes the context of the device's sockets: the process-wide one for devices in this
    #: process; a fresh one in a process device's child (never a stale, inherited one).
    context_factory: ClassVar[Any] = staticmethod(default_context)
    launcher: Any = None

    def __init__(
        self,
        device_type: int = QUEUE,
        in_type: int | SocketType | None = None,
        out_type: int | SocketType | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        if in_type is None:
            raise TypeError("in_type must be specified")
        if out_type is None:
            raise TypeError("out_type must be specified")
        try:
            self.device_type = DeviceType(device_type)
        except ValueError:
            raise ConfigurationError(
                f"device_type must be QUEUE, FORWARDER or STREAMER, got {device_type!r}"
            ) from None
        self.in_type = in_type
        self.out_type = out_type
        in_kind = _socket_type(in_type, "in_type")
        single = isinstance(out_type, int) and not isinstance(out_type, SocketType) and out_type < 0
        out_kind = None if single else _socket_type(out_type, "out_type")
        self._sides: dict[str, _Side] = {"in": _Side(in_kind), "out": _Side(out_kind or in_kind)}
        self._single = single
        self._check_pairing(in_kind, out_kind)
        self.settings = settings if settings is not None else default_settings()
        self.daemon = True
        self._lock = threading.Lock()
        self._runner: _Runner | _ChildRunner | None = None
        self._started = False
        self._stopped = False
        self.error: BaseException | None = None

    def _check_pairing(self, in_kind: SocketType, out_kind: SocketType | None) -> None:
        check_pairing(self.device_type, in_kind, out_kind)

    # ------------------------------------------------------------------ configuration

    def _queue(self, role: str, verb: str, addr: str) -> None:
        if not isinstance(addr, str):
            raise ConfigurationError(f"{verb}_{role} takes an address string, got {addr!r}")
        parse_endpoint(addr, for_bind=verb == "bind")
        with self._lock:
            self._check_configurable()
            side = self._sides[role]
            (side.binds if verb == "bind" else side.connects).append(addr)

    def _queue_option(self, role: str, option: int, value: Any) -> None:
        checked = check_option(self._sides[role].kind, option, value)
        with self._lock:
            self._check_configurable()
            self._sides[role].options.append((option, checked))

    def _check_configurable(self) -> None:
        if self._started:
            raise ClosedError("the device is already started: configure it before start()")

    def bind_in(self, addr: str) -> None:
        """Queue an address for the in socket to listen on (port 0: any free port).

        Raises:
            EndpointError: ``addr`` is not a valid address to bind.
        """
        self._queue("in", "bind", addr)

    def bind_out(self, addr: str) -> None:
        """Queue an address for the out socket to listen on (port 0: any free port).

        Raises:
            EndpointError: ``addr`` is not a valid address to bind.
        """
        self._queue("out", "bind", addr)

    def connect_in(self, addr: str) -> None:
        """Queue an address for the in socket to connect to.

        Raises:
            EndpointError: ``addr`` is not a valid address.
        """
        self._queue("in", "connect", addr)

    def connect_out(self, addr: str) -> None:
        """Queue an address for the out socket to connect to.

        Raises:
            EndpointError: ``addr`` is not a valid address.
        """
        self._queue("out", "connect", addr)

    def setsockopt_in(self, opt: int, value: Any) -> None:
        """Queue ``setsockopt(opt, value)`` for the in socket (applied before bind/connect).

        Raises:
            ConfigurationError: Unknown option, wrong value type, or a value ZeroMQ refuses
                for this socket type (checked now, on a scratch socket).
        """
        self._queue_option("in", opt, value)

    def setsockopt_out(self, opt: int, value: Any) -> None:
        """Queue ``setsockopt(opt, value)`` for the out socket (applied before bind/connect).

        Raises:
            ConfigurationError: Unknown option, wrong value type, or a value ZeroMQ refuses
                for this socket type (checked now, on a scratch socket).
        """
        self._queue_option("out", opt, value)

    def _plan(self) -> _Plan:
        sides = self._sides
        if self._single:
            return _Plan(sides["in"].config(sides["out"]), None, None, None, self.settings)
        return _Plan(sides["in"].config(), sides["out"].config(), None, None, self.settings)

    # ------------------------------------------------------------------ running

    def _claim_start(self) -> _Plan:
        with self._lock:
            if self._started:
                raise ClosedError("a device can be started only once; make a new one")
            if self._stopped:
                raise ClosedError("this device was stopped; make a new one")
            self._started = True
            return self._plan()

    def _open(self, plan: _Plan) -> _Runner:
        """Open the sockets in the caller's thread (errors raise here)."""
        try:
            relay = Relay.open(
                Transport(self.context_factory(), plan.settings),
                plan.in_side,
                plan.out_side,
                plan.capture,
                tags=plan.tags,
            )
        except BaseException:
            with self._lock:
                self._stopped = True
            raise
        runner = _Runner(relay)
        with self._lock:
            self._runner = runner
        return runner

    def start(self) -> None:
        """Open the sockets and relay in this thread until :meth:`stop` is called.

        Raises:
            EndpointError: An address cannot be bound or is invalid.
            ConfigurationError: A socket has no address, or an option is refused.
            ClosedError: The device was already started or stopped.
        """
        self._open(self._claim_start())
        self.run()

    def run(self) -> None:
        """Relay until stopped (the body of the device; call :meth:`start` instead).

        A failure of the loop itself (e.g. the context terminated by its owner) is logged and
        kept in :attr:`error`.
        """
        runner = self._runner
        if runner is None:  # called directly, as pyzmq allows: open the sockets here
            runner = self._open(self._claim_start())
        if not isinstance(runner, _Runner):
            raise ClosedError("a process device runs in its own process; use start()")
        try:
            runner.relay.run()
        except LabwireError as exc:
            self.error = exc
            _log.error("broker stopped by an error: %s", exc)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the device and wait for it to end (at most about ``timeout`` seconds).

        Safe from any thread, idempotent, and prompt under load. Other sockets and the
        context of the process are left alone. Statistics stay readable afterwards.
        """
        with self._lock:
            self._stopped = True
            runner = self._runner
        if runner is not None:
            runner.stop(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the device has ended, like ``Thread.join``.

        Args:
            timeout: Seconds to wait at most; None waits until it ends.
        """
        runner = self._runner
        if runner is not None:
            runner.join(timeout)

    @property
    def done(self) -> bool:
        """Whether the device has run and ended."""
        runner = self._runner
        return runner is not None and runner.is_finished

    def statistics(self) -> RelayStatistics:
        """Frames and bytes relayed so far in each direction, readable while running.

        Returns:
            The counters (zeros before start; the final ones after :meth:`stop`).

        Raises:
            TransportError: The device did not report in time.
        """
        runner = self._runner
        return RelayStatistics() if runner is None else runner.statistics()

    def _endpoints(self, role: str) -> list[str]:
        runner = self._runner
        return [] if runner is None else list(runner.endpoints.get(role, []))

    @property
    def in_endpoints(self) -> list[str]:
        """The real addresses the in socket listens on, once started (port 0 resolved)."""
        return self._endpoints("in")

    @property
    def out_endpoints(self) -> list[str]:
        """The real addresses the out socket listens on, once started (port 0 resolved)."""
        return self._endpoints("out")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class BackgroundDevice(Device):
    """A device that runs in the background: in a thread (this class) or a process.

    :meth:`start` returns once the sockets are bound (errors raise from it); used as a
    context manager, the device is started on entry and stopped on exit.
    """

    #: Where :meth:`start` runs the device: ``"thread"`` or ``"process"``.
    _runs_in: ClassVar[str] = "thread"

    def start(self) -> None:
        """Open the sockets (errors raise here), then relay in the background.

        Raises:
            EndpointError: An address cannot be bound or is invalid.
            ConfigurationError: A socket has no address, or an option is refused.
            ClosedError: The device was already started or stopped.
            TransportError: A process device's child did not start.
        """
        plan = self._claim_start()
        if self._runs_in == "process":
            self._start_process(plan)
            return
        runner = self._open(plan)
        thread = threading.Thread(target=self.run, name="labwire-broker", daemon=self.daemon)
        runner.thread = thread
        self.launcher = thread
        thread.start()

    def _start_process(self, plan: _Plan) -> None:
        method = getattr(self, "start_method", None)
        mp = multiprocessing.get_context(method)
        parent, child = mp.Pipe()
        process = mp.Process(
            target=_serve_in_child,
            args=(plan, self.context_factory, child),
            name="labwire-broker",
            daemon=self.daemon,
        )
        try:
            process.start()
        finally:
            child.close()
        try:
            if not parent.poll(_CHILD_START_TIMEOUT):
                raise TransportError(
                    f"the broker process did not start within {_CHILD_START_TIMEOUT:g} s"
                )
            message = parent.recv()
        except EOFError:
            process.join(1.0)
            parent.close()
            with self._lock:
                self._stopped = True
            raise TransportError(
                f"the broker process exited before it was ready (exit code {process.exitcode})"
            ) from None
        except BaseException:
            process.kill()
            process.join(1.0)
            parent.close()
            raise
        if message[0] == "error":
            process.join(1.0)
            parent.close()
            with self._lock:
                self._stopped = True
            error: BaseException = message[1]
            raise error
        self.launcher = process
        with self._lock:
            self._runner = _ChildRunner(process, parent, message[1])

    def __enter__(self) -> Self:
        self.start()
        return self


class ThreadDevice(BackgroundDevice):
    """A device run in a background thread of this process (see :class:`Device`)."""


class ProcessDevice(BackgroundDevice):
    """A device run in a child process (see :class:`Device`).

    The child is started with the ``multiprocessing`` start method in :attr:`start_method`
    (None: the platform's default; ``"fork"`` and ``"spawn"`` both work) and makes its own
    context. ``start()`` returns once the child has bound its sockets, and raises what
    stopped it otherwise; ``stop()`` asks the child to stop, then terminates or kills it.
    With ``spawn`` the child imports the program's main module again, so a script must start
    the device under ``if __name__ == "__main__":``, as usual with ``multiprocessing``.

    Attributes:
        start_method: The ``multiprocessing`` start method for the child.
    """

    context_factory: ClassVar[Any] = Context
    _runs_in: ClassVar[str] = "process"
    start_method: str | None = None
