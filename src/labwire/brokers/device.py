"""Devices: a broker between two sockets, run in the foreground, a thread or a process.

Theory of operation
-------------------
A device is configured with socket *types* and queued actions (``bind_in``, ``connect_out``,
``setsockopt_in``...), as in pyzmq, and then started. Everything that can be checked is
checked in the caller's thread, when it can be:

* at construction: the socket types, and whether they can make the device type (a QUEUE
  relays between ROUTER and DEALER sockets, a FORWARDER from SUB/XSUB to PUB/XPUB, a STREAMER
  from PULL to PUSH; see :func:`~labwire.brokers.pairing.check_pairing`);
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

Device types and their socket pairings are in :mod:`labwire.brokers.pairing`; the plan and
the runners (this process or a child) in :mod:`labwire.brokers.runners`.

Sockets are made by :class:`~labwire.transport.Transport`, so they get labwire's settings:
bounded LINGER, heartbeats on TCP, and CurveZMQ when security is on (a binding side is a
CURVE server that only lets in allowed keys, a connecting side a CURVE client). Frames are
limited to ``Settings.limits.max_frame_bytes`` like every labwire socket unless a
``MAXMSGSIZE`` option says otherwise. A SUB in-socket without a SUBSCRIBE option subscribes
to everything (a forwarder that forwards nothing is never what was meant).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from typing import Any, ClassVar, Self

from labwire.brokers.pairing import QUEUE, DeviceType, _socket_type, check_pairing
from labwire.brokers.runners import _ChildRunner, _Plan, _Runner, _serve_in_child, _Side
from labwire.config import Settings, default_settings
from labwire.errors import ClosedError, ConfigurationError, LabwireError, TransportError
from labwire.transport import Context, SocketType, Transport, default_context, parse_endpoint
from labwire.transport.proxy import (
    Relay,
    RelayStatistics,
    check_option,
)

__all__ = ["BackgroundDevice", "Device", "ProcessDevice", "ThreadDevice"]

_log = logging.getLogger(__name__)

#: How long ``ProcessDevice.start()`` waits for the child to report its sockets.
_CHILD_START_TIMEOUT = 30.0


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
