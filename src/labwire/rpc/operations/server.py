"""The server side of operations: the handler's :class:`Operation` and the server's table of them.

See :mod:`labwire.rpc.operations` for how operations run.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import math
import threading
import time
import traceback as tb
from collections import deque
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from labwire.errors import LabwireError, NotFound
from labwire.rpc.replies import Failure, success
from labwire.wire.operations import (
    ENDED,
    Event,
    OperationState,
    Update,
    next_state,
)
from labwire.wire.rpc import ErrorCode, ExtensionEvents, Request

_log = logging.getLogger(__name__)

S = TypeVar("S")
R = TypeVar("R")
P = ParamSpec("P")

#: The attribute marking a method as an operation (its :class:`OperationSpec`).
OPERATION_ATTRIBUTE = "__labwire_operation__"
#: Progress updates kept per operation (older ones are dropped: a poller far behind gets the
#: latest).
_UPDATES_KEPT = 256
#: Ended operations kept for late pollers: at most this many, for at least _KEEP_SECONDS.
_ENDED_KEPT = 256
_KEEP_SECONDS = 60.0
#: How often the monitor looks at deadlines and leases.
_MONITOR_SECONDS = 0.05
#: How often a client handle polls a running operation.
POLL_SECONDS = 0.02
_MESSAGE_CHARS = 1024


class OperationCancelled(LabwireError):
    """The operation was cancelled.

    Raised in its handler at its next report, and by ``result()`` on the client.
    """


class OperationLost(LabwireError):
    """The server no longer knows the operation (it restarted, or forgot it long after)."""


class OperationSpec:
    """How a method declared as an operation behaves.

    Attributes:
        function: The handler, ``function(self, operation, *args, **kwargs)``.
        timeout_ms: The default deadline in ms (None: no limit).
        on_disconnect: ``"cancel"`` or ``"finish"``: what happens once no client watches.
        lease: Seconds without a poll after which the watching client counts as gone.
    """

    __slots__ = ("function", "lease", "on_disconnect", "timeout_ms")

    def __init__(
        self,
        function: Callable[..., Any],
        timeout_ms: int | None,
        on_disconnect: str,
        lease: float,
    ) -> None:
        if on_disconnect not in ("cancel", "finish"):
            raise ValueError(f"on_disconnect must be 'cancel' or 'finish', got {on_disconnect!r}")
        if not (isinstance(lease, (int, float)) and math.isfinite(lease) and lease > 0):
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        self.function = function
        self.timeout_ms = timeout_ms
        self.on_disconnect = on_disconnect
        self.lease = float(lease)


def operation_method(
    function: Callable[Concatenate[S, Operation, P], R], spec: OperationSpec
) -> Callable[Concatenate[S, P], R]:
    """The method a class exposes for an operation handler: callable without the handle.

    Called directly in Python (``stage.move_to(1, 2, 3)``), it runs the handler with an
    :class:`Operation` of its own, without deadline; its signature is the handler's without
    the operation parameter.
    """

    @functools.wraps(function)
    def method(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        name = getattr(function, "__name__", "operation")
        return function(self, Operation("local", name), *args, **kwargs)

    try:
        signature = inspect.signature(function, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # annotations naming what is not importable
        signature = inspect.signature(function)
    parameters = list(signature.parameters.values())
    method.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters[:1] + parameters[2:]
    )
    setattr(method, OPERATION_ATTRIBUTE, spec)
    return cast("Callable[Concatenate[S, P], R]", method)


class Operation:
    """A running operation, as its handler sees it.

    Attributes:
        id: The operation id.
        method: The method running.
    """

    def __init__(
        self,
        operation_id: str,
        method: str,
        *,
        deadline: float | None = None,
        on_disconnect: str = "finish",
        lease: float = 3.0,
    ) -> None:
        self.id = operation_id
        self.method = method
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._reason = ""
        self._cause = ""
        self._cleanups: list[Callable[[], Any]] = []
        self._state = OperationState.RUNNING
        self._updates: deque[Update] = deque(maxlen=_UPDATES_KEPT)
        self._seq = 0
        self._started_wall = time.time()
        self._started = time.monotonic()
        self._ended: float | None = None
        self._deadline = deadline
        self._on_disconnect = on_disconnect
        self._lease = lease
        self._seen = self._started
        self._result: Any = None
        self._error = ""
        self._etype = ""
        self._traceback = ""
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ handler side

    @property
    def cancelled(self) -> bool:
        """Whether cancellation was requested (by a caller, a deadline or a vanished client)."""
        return self._cancelled.is_set()

    @property
    def cancel_reason(self) -> str:
        """Why the operation was cancelled ("" while it was not)."""
        return self._reason

    def report(self, fraction: float | None = None, message: str = "", result: Any = None) -> None:
        """Report progress; raises :class:`OperationCancelled` once the operation is cancelled.

        Args:
            fraction: How much is done, 0..1 (None: unknown).
            message: What is being done (at most 1024 characters are kept).
            result: An intermediate result (JSON data), or None.

        Raises:
            ValueError: ``fraction`` is not a number within 0..1.
            OperationCancelled: The operation was cancelled; clean up and let it propagate.
        """
        if fraction is not None and (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0.0 <= fraction <= 1.0
        ):
            raise ValueError(f"progress fraction must be within 0..1 or None, got {fraction!r}")
        with self._lock:
            self._seq += 1
            value = None if fraction is None else float(fraction)
            self._updates.append(Update(self._seq, value, str(message)[:_MESSAGE_CHARS], result))
        self.check()

    def check(self) -> None:
        """Raise :class:`OperationCancelled` if the operation was cancelled."""
        if self._cancelled.is_set():
            raise OperationCancelled(f"{self.method} cancelled: {self._reason}")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early on cancellation; returns :attr:`cancelled`."""
        return self._cancelled.wait(max(0.0, seconds))

    def on_cancel(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (once) as soon as the operation is cancelled.

        It runs in the canceller's thread, or at once if the operation already is cancelled.
        Exceptions it raises are logged.
        """
        with self._lock:
            if not self._cancelled.is_set():
                self._cleanups.append(callback)
                return
        _run_cleanup(callback, self.id)

    # ------------------------------------------------------------------ table side

    def cancel(self, reason: str, cause: str = "caller") -> bool:
        """Request cancellation; returns False when the operation had already ended.

        Args:
            reason: Why, in words.
            cause: Who: ``"caller"``, ``"deadline"``, ``"disconnect"`` or ``"server"``.
        """
        with self._lock:
            if self._state in ENDED:
                return False
            if self._cancelled.is_set():
                return True
            self._reason, self._cause = reason, cause
            self._state = next_state(self._state, Event.CANCEL)
            self._cancelled.set()
            cleanups, self._cleanups = self._cleanups, []
        _log.info("operation %s (%s) cancelled: %s", self.id, self.method, reason)
        for callback in cleanups:
            _run_cleanup(callback, self.id)
        return True

    def run(self, server: Any, spec: OperationSpec, args: list[Any], kw: dict[str, Any]) -> Any:
        """Run the handler in this thread, record its outcome, and return or raise it."""
        try:
            value = spec.function(server, self, *args, **kw)
        except BaseException as exc:
            with self._lock:
                stopped = isinstance(exc, OperationCancelled)
                self._state = next_state(self._state, Event.STOP if stopped else Event.RAISE)
                if self._state == OperationState.CANCELLED:
                    self._error = f"cancelled: {self._reason or exc}"
                    self._etype = "OperationCancelled"
                else:
                    self._error, self._etype = str(exc), type(exc).__name__
                    self._traceback = "".join(tb.format_exception(exc))
                self._ended = time.monotonic()
            if self._state == OperationState.CANCELLED:
                raise OperationCancelled(f"{self.method} {self._error}") from exc
            raise
        with self._lock:
            self._state = next_state(self._state, Event.RETURN)
            self._result = value
            self._ended = time.monotonic()
        return value

    def touch(self) -> None:
        """A client watches: renew the lease."""
        self._seen = time.monotonic()

    def overdue(self, now: float) -> tuple[str, str]:
        """Why and by what cause the monitor must cancel this operation now (("", "") if not)."""
        if self._state != OperationState.RUNNING:
            return "", ""
        if self._deadline is not None and now - self._started > self._deadline:
            return f"its deadline of {self._deadline:g} s passed", "deadline"
        if self._on_disconnect == "cancel" and now - self._seen > self._lease:
            return f"no client watched it for {self._lease:g} s", "disconnect"
        return "", ""

    @property
    def ended(self) -> float | None:
        """When it ended (monotonic clock), or None while it runs."""
        return self._ended

    @property
    def result(self) -> Any:
        """The handler's result (once succeeded)."""
        return self._result

    @property
    def state(self) -> OperationState:
        """Where the operation is in its life."""
        return self._state

    def info(self) -> dict[str, Any]:
        """The ``info`` object of the wire (see :mod:`labwire.wire.rpc`)."""
        with self._lock:
            last = self._updates[-1] if self._updates else None
            end = self._ended if self._ended is not None else time.monotonic()
            elapsed = end - self._started
            remaining = None
            if self._ended is None and last is not None and last.fraction:
                remaining = elapsed * (1.0 - last.fraction) / last.fraction
            return {
                "id": self.id,
                "method": self.method,
                "state": str(self._state),
                "seq": self._seq,
                "started": self._started_wall,
                "elapsed": elapsed,
                "remaining": remaining,
                "deadline": self._deadline,
                "on_disconnect": self._on_disconnect,
                "fraction": None if last is None else last.fraction,
                "message": "" if last is None else last.message,
                "error": self._error,
                "cause": self._cause,
                "etype": self._etype,
                "traceback": self._traceback,
            }

    def updates_after(self, seq: int) -> list[Update]:
        """The updates numbered after ``seq`` that are still kept."""
        with self._lock:
            return [update for update in self._updates if update.seq > seq]


def _run_cleanup(callback: Callable[[], Any], operation_id: str) -> None:
    try:
        callback()
    except Exception:
        _log.exception("cleanup of operation %s failed", operation_id)


class OperationTable:
    """A server's operations: starts them, finds them by id, and watches their deadlines.

    Args:
        server_id: The server's incarnation id (a prefix of every operation id).
        call_lock: Held around every handler when the server serialises calls, or None.
    """

    def __init__(self, server_id: str, call_lock: threading.Lock | None) -> None:
        self._server_id = server_id
        self._call_lock = call_lock
        self._ids = itertools.count(1)
        self._lock = threading.Condition(threading.Lock())
        self._operations: dict[str, Operation] = {}
        self._monitor: threading.Thread | None = None
        self._closed = False

    def _new(
        self, method: str, spec: OperationSpec, deadline: float | None, port: int
    ) -> Operation:
        operation_id = f"{self._server_id}-{next(self._ids)}"
        operation = Operation(
            operation_id,
            method,
            deadline=deadline,
            on_disconnect=spec.on_disconnect,
            lease=spec.lease,
        )
        with self._lock:
            if self._closed:
                raise OperationCancelled("the server is stopping")
            self._operations[operation_id] = operation
            self._forget_old(time.monotonic())
            self._lock.notify_all()  # the monitor sleeps while no operation runs
            if self._monitor is None:
                self._monitor = threading.Thread(
                    target=self._watch, name=f"labwire-operations-{port}", daemon=True
                )
                self._monitor.start()
        return operation

    def start(
        self,
        server: Any,
        method: str,
        spec: OperationSpec,
        call: tuple[list[Any], dict[str, Any]],
        deadline: float | None,
        port: int,
    ) -> Operation:
        """Start ``method`` as an operation in a thread of its own and return it."""
        operation = self._new(method, spec, deadline, port)
        args, kwargs = call

        def body() -> None:
            # The outcome is recorded: what the handler raised is kept for pollers.
            with self._call_lock or contextlib.nullcontext(), contextlib.suppress(Exception):
                operation.run(server, spec, args, kwargs)

        thread = threading.Thread(target=body, name=f"labwire-op-{operation.id}", daemon=True)
        operation._thread = thread
        thread.start()
        return operation

    def call(self, server: Any, request: Request, spec: OperationSpec, port: int) -> Any:
        """Run an operation called plainly, in this thread; listed and cancellable meanwhile.

        It is cancelled once the caller stops waiting: at the request's expiry, or after its
        time-to-live when the expiry is on another incarnation's clock.
        """
        if request.expiry is not None and request.server_id == self._server_id:
            deadline: float | None = max(0.0, request.expiry - time.monotonic())
        elif request.ttl_ms is not None:
            deadline = request.ttl_ms / 1000.0
        else:
            deadline = None
        operation = self._new(request.name, spec, deadline, port)
        operation._on_disconnect = "finish"  # a plain caller never polls
        with self._call_lock or contextlib.nullcontext():
            return operation.run(server, spec, request.args, request.kwargs)

    def answer(
        self, server: Any, request: Request, spec: OperationSpec | None, port: int
    ) -> list[Any]:
        """Answer OP_START (of ``spec``, the operation named), OP_POLL, OP_CANCEL or OP_LIST.

        Returns:
            The reply's frames.

        Raises:
            Failure: The operation polled or cancelled is not known, or the method named by
                OP_START is no operation.
        """
        event = request.event
        if event == ExtensionEvents.OP_LIST:
            return success(request, self._server_id, {"ops": [op.info() for op in self.list()]})
        if event == ExtensionEvents.OP_START:
            if spec is None:
                raise Failure(ErrorCode.BAD_REQUEST, f"{request.name!r} is not an operation")
            deadline = None if request.value is None else float(request.value) / 1000.0
            call = (request.args, request.kwargs)
            operation = self.start(server, request.name, spec, call, deadline, port)
            return success(request, self._server_id, {"op": operation.info()})
        try:
            operation = self.get(request.name)
        except NotFound as exc:
            raise Failure(ErrorCode.NOT_FOUND, exc.remote_message, "OperationLost") from None
        if event == ExtensionEvents.OP_CANCEL:
            operation.cancel(request.value or "cancelled by a client")
            return success(request, self._server_id, {"op": operation.info()})
        info = operation.info()  # before the updates: an ended operation has them all
        fields = {"op": info, "updates": operation.updates_after(request.value or 0)}
        payload = {"result": operation.result} if info["state"] == "succeeded" else None
        return success(request, self._server_id, fields, payload=payload)

    def get(self, operation_id: str) -> Operation:
        """The operation with this id.

        Raises:
            NotFound: No such operation (the message says whether the server restarted).
        """
        with self._lock:
            operation = self._operations.get(operation_id)
        if operation is not None:
            operation.touch()
            return operation
        if not operation_id.startswith(self._server_id + "-"):
            raise NotFound(
                "OperationLost",
                f"operation {operation_id!r} was lost: it was started by an earlier run of "
                "this server, which has restarted since",
            )
        raise NotFound("OperationLost", f"no operation {operation_id!r} (it ended long ago)")

    def list(self) -> list[Operation]:
        """Running operations and those that ended recently, oldest first."""
        with self._lock:
            self._forget_old(time.monotonic())
            return list(self._operations.values())

    def close(self, timeout: float) -> None:
        """Cancel every running operation and wait (up to ``timeout`` s) for their threads."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            operations = list(self._operations.values())
            monitor = self._monitor
        for operation in operations:
            operation.cancel("the server is stopping", "server")
        threads = [operation._thread for operation in operations]
        for thread in [monitor, *threads]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _forget_old(self, now: float) -> None:
        """Drop ended operations beyond what is kept (called with the lock held)."""
        ended = [op for op in self._operations.values() if op.ended is not None]
        for index, operation in enumerate(ended):
            end = operation.ended
            assert end is not None
            if len(ended) - index > _ENDED_KEPT or now - end > _KEEP_SECONDS:
                del self._operations[operation.id]

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                running = any(op.ended is None for op in self._operations.values())
                self._lock.wait(_MONITOR_SECONDS if running else None)
                operations = list(self._operations.values())
            now = time.monotonic()
            for operation in operations:
                reason, cause = operation.overdue(now)
                if reason:
                    operation.cancel(reason, cause)
