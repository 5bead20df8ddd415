"""The runners of an RPC server: leader/follower threads around one ROUTER socket.

Theory of operation
-------------------
Exactly one runner, the leader, owns the socket: it receives a request and hands it to the
server's handler in the same thread, which runs it and sends the reply, with no hand-off
between threads (which would double the latency of a small call). While requests arrive, a
watchdog thread looks at the leader every couple of milliseconds; when a handler has been
running longer than ``TAKEOVER_SECONDS`` (a slow ``run_scan()``), leadership, and so the
socket, passes to another runner, which goes on serving other clients and property reads. The
old leader finishes its handler without touching the socket again: it queues its reply and
wakes the new leader with an empty message that reaches the socket itself, through an
``inproc://`` connection from a private DEALER (the waker). So the leader waits in one blocking
receive on one socket, with no poll of a second source. Ownership changes only under a lock,
which gives ZeroMQ the memory barrier it requires when a socket moves between threads; a
handler that ends sooner than the takeover time keeps the socket without taking that lock,
since the watchdog cannot have moved it. At most ``max_runners`` runners exist, so at most
``max_runners - 1`` slow handlers run at once. A stop that finds nobody leading (the socket was
just handed over) is carried out by the first runner to look, so the server always shuts down.

Idle means idle: after ``WATCHDOG_QUIET_SECONDS`` without a handler the watchdog sleeps until
the next one starts, and the leader's receive waits up to the heartbeat interval, so an idle
server wakes only at that interval.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from labwire.errors import ClosedError, LabwireError
from labwire.transport import Socket, SocketType, Transport

__all__ = ["TAKEOVER_SECONDS", "RunnerPool"]

_log = logging.getLogger(__name__)

#: A handler running longer than this hands the socket over to another runner.
TAKEOVER_SECONDS = 0.002
#: How often the watchdog looks at the leader while requests arrive.
WATCHDOG_SECONDS = 0.002
#: After this long without a handler starting, the watchdog sleeps until the next one.
WATCHDOG_QUIET_SECONDS = 0.2
#: Leadership is up for grabs (the next runner to look takes it).
_VACANT = -1

Key = tuple[str, int]
#: A runner's current handler: when it started and its duplicate-table key.
Job = tuple[float, Key | None]
_Reply = tuple[Key | None, list[Any], list[Any]]


class RunnerPool:
    """Leader/follower runners serving one ROUTER socket, and the watchdog that moves it.

    Args:
        socket: The bound ROUTER socket.
        transport: Makes the waker's socket.
        label: Names the threads (``labwire-runner-LABEL``).
        max_runners: The most runners (at least 2).
        idle_ms: The longest the leader waits in one receive (an idle server wakes this often).
        handle: Called by the leader with ``(routing id, parts, origin)`` of each message.
        idle: Called by the leader when no message came within ``idle_ms``.
        send: Sends a reply's frames (the routing id first) on the socket.
        remember: Called with ``(key, reply frames, received)`` once a reply with a
            duplicate-table key has been sent.
        on_takeover: Called with a running handler's key when its socket is handed over (from
            then on a duplicate of its request can be read while it runs).
        on_stop: Called by the last leader once serving has stopped (the server shuts down).
    """

    def __init__(
        self,
        socket: Socket,
        transport: Transport,
        label: str,
        max_runners: int,
        idle_ms: int,
        *,
        handle: Callable[[bytes, list[Any], Any], None],
        idle: Callable[[], None],
        send: Callable[[list[Any]], None],
        remember: Callable[[Key, list[Any], float], None],
        on_takeover: Callable[[Key], None],
        on_stop: Callable[[], None],
    ) -> None:
        self._socket = socket
        self._label = label
        self._max_runners = max(2, max_runners)
        self._idle_ms = idle_ms
        self._handle = handle
        self._idle = idle
        self._send = send
        self._remember = remember
        self._on_takeover = on_takeover
        self._on_stop = on_stop
        #: Set once serving should end (stop_server, STOP_SERVER, a terminated context).
        self.stopping = False
        #: Set once the pool is closed: it serves no more.
        self.closed = False
        self.serving = threading.Event()
        # The lock itself is taken on every call: "with lock" runs in C, where "with condition"
        # would add two Python-level calls.
        self._lock = threading.Lock()
        self._lead = threading.Condition(self._lock)
        self._leader = _VACANT
        #: Each runner's current handler (None: not in a handler), read by the watchdog.
        self.jobs: dict[int, Job | None] = {}
        self._idle_runners = 0
        self._runners: list[threading.Thread] = []
        self._watchdog: threading.Thread | None = None
        self._handlers_started = 0
        # Set to wake the watchdog, which sleeps on it while no handler runs.
        self._watchdog_asleep = False
        self._handler_started = threading.Event()
        self._closed_event = threading.Event()
        self._replies: queue.SimpleQueue[_Reply] = queue.SimpleQueue()
        self._wake_id = b"labwire-wake-" + secrets.token_bytes(16)
        self._waker_lock = threading.RLock()  # RLock: a signal handler may stop the server
        wake_url = socket.bind(f"inproc://labwire-wake-{secrets.token_hex(8)}")
        self._waker: Socket | None = transport.connect(
            SocketType.DEALER, wake_url, routing_id=self._wake_id
        )

    def serve(self) -> None:
        """Serve from the calling thread, the first runner, until serving stops.

        Raises:
            ClosedError: The pool was closed.
            RuntimeError: It is already serving.
        """
        with self._lead:
            if self.closed:
                raise ClosedError("this server was stopped; create a new one")
            if self.serving.is_set():
                raise RuntimeError("serve_forever() is already running")
            self._leader = threading.get_ident()
            self.serving.set()
        self._watchdog = threading.Thread(
            target=self._watch, name=f"labwire-watchdog-{self._label}", daemon=True
        )
        self._watchdog.start()
        self._run()

    def request_stop(self) -> bool:
        """Make the leader stop serving; returns whether it was serving (else nothing runs)."""
        with self._lead:
            self.stopping = True
            serving = self.serving.is_set()
            self._lead.notify_all()
        if serving:
            self.wake()
        return serving

    def close(self) -> bool:
        """Stop for good and close the waker; returns False if it was already closed."""
        with self._lead:
            if self.closed:
                return False
            self.closed = True
            self.stopping = True
            self._lead.notify_all()
        self._closed_event.set()
        self._handler_started.set()  # the watchdog may be asleep
        with self._waker_lock:
            waker, self._waker = self._waker, None
        if waker is not None:
            waker.close(0)
        return True

    def threads(self) -> list[threading.Thread]:
        """The watchdog and the runners started besides the first."""
        return [t for t in [self._watchdog, *self._runners] if t is not None]

    def wake(self) -> None:
        """Wake the leader from its receive."""
        with self._waker_lock:
            if self._waker is not None:
                with contextlib.suppress(LabwireError):
                    self._waker.send([b""], nowait=True)

    def is_responsive(self, stuck_after: float) -> bool:
        """Whether serving, and the leader not in a handler for ``stuck_after`` seconds."""
        if not self.serving.is_set() or self.stopping:
            return False
        job = self.jobs.get(self._leader)
        return job is None or time.monotonic() - job[0] < stuck_after

    # ------------------------------------------------------------------ handlers

    def begin(self, received: float, key: Key | None) -> None:
        """Mark the calling runner as in a handler since ``received`` (for the watchdog)."""
        self.jobs[threading.get_ident()] = (received, key)
        self._handlers_started += 1
        if self._watchdog_asleep:
            self._handler_started.set()

    def finish(
        self, envelope: list[Any], frames: list[Any], key: Key | None, received: float
    ) -> None:
        """Send a handler's reply, or queue it for the leader if the socket was handed over."""
        me = threading.get_ident()
        self.jobs[me] = None
        # The watchdog reads the clock before it reads a start time, and takes the socket
        # only from a handler that started TAKEOVER_SECONDS before: a handler that ended
        # sooner, as this clock reading after the store above shows, still holds it.
        if time.monotonic() - received < TAKEOVER_SECONDS:
            still_leader = True
        else:
            with self._lock:
                still_leader = self._leader == me
        if still_leader:
            self._send(envelope + frames)
            if key is not None:
                self._remember(key, frames, received)
        elif not self.closed:
            self._replies.put((key, envelope, frames))
            self.wake()

    # ------------------------------------------------------------------ runners

    def _run(self) -> None:
        """A runner's life: wait for leadership, lead, repeat until serving stops."""
        me = threading.get_ident()
        while True:
            with self._lead:
                while self._leader != me and not self.stopping:
                    if self._leader == _VACANT:
                        self._leader = me
                        break
                    self._idle_runners += 1
                    self._lead.wait()
                    self._idle_runners -= 1
                if self._leader != me:
                    if self._leader != _VACANT:
                        return
                    # Stopping while nobody leads (the leader was in a slow handler when the
                    # socket was handed over): this runner leads just long enough to shut down.
                    self._leader = me
            if not self._lead_loop(me):
                return

    def _lead_loop(self, me: int) -> bool:
        """Serve as leader. Returns True when leadership was taken over, False on stop."""
        receive = self._socket.recv_routed
        wake_id = self._wake_id
        # A finite wait lets Python run signal handlers (e.g. SIGTERM -> stop_server) even when
        # the kernel delivered the signal to another thread.
        idle_ms = self._idle_ms
        try:
            while not self.stopping:
                message = receive(idle_ms)
                if message is None:
                    self._idle()
                    continue
                if message[0] == wake_id:
                    self._drain_replies()
                    continue
                self._handle(*message)
                # Let go of it now: kept until the next receive returns, a large message would
                # stay alive while the leader waits, and be freed on the next request's time.
                message = None
                if self._leader != me:
                    return True
            self._drain_replies()
        except ClosedError:  # the ZeroMQ context was terminated under the server
            _log.warning("server %s stops: its ZeroMQ context was terminated", self._label)
        self._on_stop()
        return False

    def _drain_replies(self) -> None:
        while True:
            try:
                key, envelope, body = self._replies.get_nowait()
            except queue.Empty:
                return
            self._send(envelope + body)
            if key is not None:
                self._remember(key, body, time.monotonic())

    def _watch(self) -> None:
        """Hand the socket to another runner when the leader is stuck in a slow handler.

        Sleeps while no handler runs: :meth:`begin` wakes it. Requests answered without a
        handler (inventory, ping, signal endpoint) never keep it awake.
        """
        closed = self._closed_event
        seen, quiet_since = self._handlers_started, time.monotonic()
        while not closed.wait(WATCHDOG_SECONDS):
            if self._handlers_started != seen or self.jobs.get(self._leader) is not None:
                seen, quiet_since = self._handlers_started, time.monotonic()
            elif time.monotonic() - quiet_since >= WATCHDOG_QUIET_SECONDS:
                self._handler_started.clear()
                self._watchdog_asleep = True
                # A handler counted, or a close, before the flag was up: do not sleep.
                if self._handlers_started == seen and not closed.is_set():
                    self._handler_started.wait()
                self._watchdog_asleep = False
                seen, quiet_since = self._handlers_started, time.monotonic()
                continue
            with self._lead:
                # The clock is read before the start time: finish() relies on that order.
                now = time.monotonic()
                job = self.jobs.get(self._leader)
                if job is None or now - job[0] < TAKEOVER_SECONDS:
                    continue
                if self._idle_runners == 0:
                    self._runners = [t for t in self._runners if t.is_alive()]
                    if len(self._runners) + 1 >= self._max_runners:
                        continue  # every runner is busy: the leader keeps the socket
                    runner = threading.Thread(
                        target=self._run, name=f"labwire-runner-{self._label}", daemon=True
                    )
                    self._runners.append(runner)
                    runner.start()
                key = job[1]
                if key is not None:  # from now on a duplicate can arrive: it must not run
                    self._on_takeover(key)
                self._leader = _VACANT
                self._lead.notify()
            self.wake()
