"""RPCSignalReceiver: the background thread that delivers a server's signals to local slots.

The receiver owns one SUB socket. Used on its own (as in the seed) it subscribes to every
signal; an RPC client runs it in *selective* mode, subscribing only to signals that have slots,
and gives it a ``refresh`` function that re-reads the server's signal endpoint so that a
restarted server (new port, new epoch) is followed without recreating anything. Every message
goes through a :class:`~labwire.wire.signals.SequenceTracker`: gaps and publisher restarts are
counted and logged, repeated messages dropped, and a slot that raises is logged while delivery
goes on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from labwire.config import Settings
from labwire.errors import ClosedError, LabwireError, ProtocolError
from labwire.rpc.signal import RPCSignal
from labwire.transport import Poller, SocketType, Transport
from labwire.wire.signals import (
    SequenceTracker,
    Verdict,
    decode_signal,
    probe_prefix,
    subscription_prefix,
)

__all__ = ["RPCSignalReceiver", "signal_stats"]

_log = logging.getLogger(__name__)
# Read once: each read of an Enum member costs about 0.2 us, and these run per emission.
_VERDICT_NEXT = Verdict.NEXT
_VERDICT_STALE = Verdict.STALE


class RPCSignalReceiver(threading.Thread):
    """Background thread that receives signal emissions and calls the matching local signals.

    Args:
        context: ZeroMQ context, or None for the process-wide one.
        url: The server's signal (PUB) endpoint, e.g. ``tcp://127.0.0.1:5556``.
        signals: Local signals by name; an emission of ``name`` calls ``signals[name]``'s slots.
        settings: Transport settings.
        selective: Subscribe only to names passed to :meth:`subscribe` (default: everything).
        refresh: Called from the receiver thread about every ``refresh_interval_ms``; returns
            the current signal endpoint (or None when unknown) so a moved publisher is followed.
        refresh_interval_ms: See ``refresh``.
        server_key: With security on: the publisher's public key, when it differs from
            ``settings.security.server_key``.
        epoch: Called for each batch of messages; only emissions carrying the epoch it
            returns are delivered. For a subscriber on a signal broker, which carries the
            emissions of many publishers, to keep those of one. None: deliver every epoch.
        on_terminated: Called from the thread when the ZeroMQ context is terminated under it
            (the thread then closes its socket and ends, so that ``term()`` can return).

    Attributes:
        context: The ZeroMQ context.
        url: The endpoint currently connected to.
        signals: The signal table given at construction.
        tracker: Sequence bookkeeping (gaps, restarts, stale messages).
        received: Number of messages delivered.
        slot_errors: Number of slot calls that raised.
        malformed: Number of undecodable messages dropped.

    Raises:
        TypeError: ``signals`` is not a dict of RPCSignal.
    """

    def __init__(
        self,
        context: Any,
        url: str,
        signals: dict[str, RPCSignal],
        *,
        settings: Settings | None = None,
        selective: bool = False,
        refresh: Callable[[], str | None] | None = None,
        refresh_interval_ms: int = 1000,
        server_key: str | None = None,
        epoch: Callable[[], str | None] | None = None,
        on_terminated: Callable[[], object] | None = None,
    ) -> None:
        if not isinstance(signals, dict) or not all(
            isinstance(s, RPCSignal) for s in signals.values()
        ):
            raise TypeError("signals must be a dict mapping names to RPCSignal objects")
        super().__init__(name="labwire-signals", daemon=True)
        self._transport = Transport(context, settings)
        self.context = self._transport.context
        self.url = url
        self.signals = signals
        self.tracker = SequenceTracker()
        self.received = 0
        self.slot_errors = 0
        self.malformed = 0
        self._selective = selective
        self._subscribed: set[str] = set()
        self._refresh = refresh
        self._refresh_interval = refresh_interval_ms / 1000.0
        self._server_key = server_key
        self._epoch = epoch
        self._on_terminated = on_terminated
        self._commands: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._stop_flag = False
        self._closed = threading.Event()
        self.socket = self._transport.unconnected(
            SocketType.SUB, rcvhwm=self._transport.settings.signal_hwm
        )
        if url:
            self.socket.connect(url, server_key=server_key)
        if not selective:
            self.socket.subscribe(b"")

    # ------------------------------------------------------------------ commands

    def _command(self, verb: str, argument: str) -> None:
        self._commands.put((verb, argument))
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_write, b"\0")

    def subscribe(self, name: str) -> None:
        """Start receiving signal ``name`` (selective mode)."""
        self._command("subscribe", name)

    def unsubscribe(self, name: str) -> None:
        """Stop receiving signal ``name`` (selective mode)."""
        self._command("unsubscribe", name)

    def probe(self, token: str) -> None:
        """Subscribe to the probe ``token`` after everything asked so far (see SIGNAL_CHECK)."""
        self._command("probe", token)

    def unprobe(self, token: str) -> None:
        """Drop the probe ``token``."""
        self._command("unprobe", token)

    def retarget(self, url: str) -> None:
        """Follow the publisher to a new endpoint (e.g. after a server restart)."""
        self._command("retarget", url)

    def stop(self) -> None:
        """Ask the thread to stop; it closes its socket and exits promptly."""
        self._stop_flag = True
        self._command("stop", "")

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread and wait for it (up to ``timeout`` seconds)."""
        self.stop()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        elif not self.is_alive() and not self._closed.is_set():
            self._release()

    def _apply(self, verb: str, argument: str) -> None:
        if verb == "subscribe" and argument not in self._subscribed:
            self._subscribed.add(argument)
            if self._selective:
                self.socket.subscribe(subscription_prefix(argument))
        elif verb == "unsubscribe" and argument in self._subscribed:
            self._subscribed.discard(argument)
            if self._selective:
                self.socket.unsubscribe(subscription_prefix(argument))
            self.tracker.forget(argument)
        elif verb == "probe":
            self.socket.subscribe(probe_prefix(argument))
        elif verb == "unprobe":
            self.socket.unsubscribe(probe_prefix(argument))
        elif verb == "retarget" and argument != self.url:
            if self.url:
                self.socket.disconnect(self.url)
            _log.info("signal receiver follows publisher from %s to %s", self.url, argument)
            self.url = argument
            self.socket.connect(argument, server_key=self._server_key)

    # ------------------------------------------------------------------ thread

    def run(self) -> None:
        """Receive and dispatch emissions until :meth:`stop` is called."""
        poller = Poller()
        poller.register(self.socket)
        poller.register(self._wake_read)
        next_refresh = time.monotonic() + self._refresh_interval
        try:
            while not self._stop_flag:
                timeout = None
                if self._refresh is not None:
                    timeout = max(0, int((next_refresh - time.monotonic()) * 1000))
                ready = poller.poll(timeout)
                if self._wake_read in ready:
                    self._drain_commands()
                if self.socket in ready:
                    self._drain_messages()
                if self._refresh is not None and time.monotonic() >= next_refresh:
                    self._run_refresh()
                    next_refresh = time.monotonic() + self._refresh_interval
        except ClosedError:  # the ZeroMQ context was terminated: let its term() finish
            _log.info("signal receiver for %s stops: its ZeroMQ context was terminated", self.url)
            if self._on_terminated is not None:
                self._on_terminated()
        finally:
            self._release()

    def _drain_commands(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self._wake_read, 4096)
        while True:
            try:
                verb, argument = self._commands.get_nowait()
            except queue.Empty:
                return
            if verb != "stop":
                self._apply(verb, argument)

    def _run_refresh(self) -> None:
        assert self._refresh is not None
        try:
            url = self._refresh()
        except LabwireError as exc:
            _log.debug("signal endpoint refresh failed: %s", exc)
            return
        if url and url != self.url:
            self._apply("retarget", url)

    def _drain_messages(self) -> None:
        limits = self._transport.settings.limits
        signals, observe, deliver = self.signals, self.tracker.observe, self._deliver
        epoch = None if self._epoch is None else self._epoch()
        for data in self.socket.recv_frames_nowait(1000):
            try:
                message = decode_signal(data, limits)
            except ProtocolError as exc:
                self.malformed += 1
                _log.warning("dropped malformed signal message: %s", exc)
                continue
            signal = signals.get(message.signal)
            if signal is None or (epoch is not None and message.epoch != epoch):
                continue
            verdict, missed = observe(message)
            if verdict is not _VERDICT_NEXT:
                if verdict is _VERDICT_STALE:
                    continue
                if verdict is Verdict.GAP:
                    _log.warning("signal %s: %d emission(s) lost", message.signal, missed)
                elif verdict is Verdict.RESTART:
                    _log.info("signal publisher restarted (epoch %s)", message.epoch)
            deliver(signal, message.args)

    def _deliver(self, signal: RPCSignal, args: list[Any]) -> None:
        values: Sequence[Any] = args
        types = signal.arg_types
        # Plain-class arguments that already match skip the generic check (compared at C
        # speed, one type per argument: this runs for every emission received).
        if types and len(args) == len(types) and tuple(map(type, args)) != types:
            with contextlib.suppress(TypeError, RuntimeError):
                values = signal.validate_args(*args, coerce=True)
        self.received += 1
        self.slot_errors += signal.dispatch(*values)

    def _release(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.socket.close()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)


def signal_stats(receiver: RPCSignalReceiver | None) -> dict[str, int]:
    """The counters a client reports for its receiver (all 0 while it has none).

    Returns:
        ``received``, ``gaps``, ``restarts``, ``stale`` and ``slot_errors``.
    """
    if receiver is None:
        return {"received": 0, "gaps": 0, "restarts": 0, "stale": 0, "slot_errors": 0}
    tracker = receiver.tracker
    return {
        "received": receiver.received,
        "gaps": tracker.gaps,
        "restarts": tracker.restarts,
        "stale": tracker.stale,
        "slot_errors": receiver.slot_errors,
    }
