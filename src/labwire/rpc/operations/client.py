"""The client side of operations: handles that poll, deliver progress and give the outcome.

See :mod:`labwire.rpc.operations` for how operations run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from labwire.errors import CallTimeout, LabwireError, NotFound, RemoteError, Unavailable
from labwire.rpc.operations.server import POLL_SECONDS, OperationCancelled, OperationLost
from labwire.rpc.results import NoResult
from labwire.wire.operations import (
    OperationInfo,
    OperationState,
    Update,
    decode_info,
    decode_updates,
)
from labwire.wire.rpc import ExtensionEvents, restore_buffers

if TYPE_CHECKING:
    from labwire.rpc.operation_calls import AsyncOperationCalls, OperationCalls


_log = logging.getLogger(__name__)


class _Watch:
    """What a client handle knows of an operation; shared by the sync and asyncio handles."""

    def __init__(self, info: OperationInfo, on_progress: Callable[[Update], Any] | None) -> None:
        self.id = info.id
        self.method = info.method
        self.info = info
        self.seq = 0
        self.progress: Update | None = None
        self._callbacks: list[Callable[[Update], Any]] = []
        if on_progress is not None:
            self._callbacks.append(on_progress)
        self.result: Any = None
        self.failure: BaseException | None = None
        self.done = False

    def on_progress(self, callback: Callable[[Update], Any]) -> None:
        self._callbacks.append(callback)

    def fields(self) -> dict[str, Any]:
        return {"op": self.id, "after": self.seq}

    def absorb(self, header: dict[str, Any], buffers: list[memoryview]) -> list[Update]:
        """Take a poll's reply in: new updates (returned, delivered in order), then the outcome."""
        fresh = [u for u in decode_updates(header.get("updates")) if u.seq > self.seq]
        info = decode_info(header.get("op"))
        for update in fresh:
            self.seq = update.seq
            self.progress = update
            for callback in self._callbacks:
                try:
                    callback(update)
                except Exception:
                    _log.exception("progress callback of operation %s failed", self.id)
        self.info = info
        if info.state == OperationState.SUCCEEDED:
            self.result = restore_buffers(header.get("result"), buffers)
            self.done = True
        elif info.state == OperationState.FAILED:
            self.failure = NoResult(info.error, info.traceback, info.etype).exception()
            self.done = True
        elif info.state == OperationState.CANCELLED:
            self.failure = OperationCancelled(f"{info.method} {info.error}")
            self.done = True
        return fresh

    def lost(self, exc: RemoteError) -> None:
        self.failure = OperationLost(exc.remote_message)
        self.done = True

    def outcome(self) -> Any:
        if self.failure is not None:
            raise self.failure
        return self.result


def _failure_of(header: dict[str, Any], extension: dict[str, Any]) -> RemoteError | None:
    if header.get("success") is False or "error" in header:
        return NoResult(
            str(header.get("error", "")),
            str(header.get("traceback", "") or ""),
            str(extension.get("etype", "")),
            str(extension.get("code", "remote")),
        ).exception()
    return None


class _Handle:
    """What the sync and asyncio handles share: the last news of one operation."""

    _watch: _Watch

    @property
    def progress(self) -> Update | None:
        """The last progress update received (None before the first)."""
        return self._watch.progress

    @property
    def info(self) -> OperationInfo:
        """What the server said last about the operation."""
        return self._watch.info

    def on_progress(self, callback: Callable[[Update], Any]) -> None:
        """Call ``callback(update)`` for each progress update from now on.

        The sync handle calls it from its polling thread, the asyncio one in its loop.
        """
        self._watch.on_progress(callback)


class OperationHandle(_Handle):
    """A client's view of an operation; it polls the server in a thread until the end.

    Get one from :meth:`RPCClient.start_operation` or :meth:`RPCClient.attach_operation`.

    Attributes:
        id: The operation id (give it to ``attach_operation`` in another process).
        method: The method running.
    """

    def __init__(
        self,
        client: OperationCalls,
        info: OperationInfo,
        on_progress: Callable[[Update], Any] | None = None,
        poll_interval: float = POLL_SECONDS,
    ) -> None:
        self._client = client
        self._watch = _Watch(info, on_progress)
        self.id = info.id
        self.method = info.method
        self._interval = poll_interval
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name=f"labwire-watch-{self.id}")
        self._thread.daemon = True
        self._thread.start()

    def done(self) -> bool:
        """Whether the operation has ended (or was lost)."""
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the operation to end and return its result.

        Args:
            timeout: Seconds to wait (None: until it ends).

        Raises:
            CallTimeout: It has not ended within ``timeout`` (it keeps running).
            OperationCancelled: It was cancelled (by a caller, its deadline or the server).
            RemoteError: The handler raised (the type and remote traceback are kept).
            OperationLost: The server no longer knows it (it restarted).
        """
        if not self._done.wait(timeout):
            raise CallTimeout(f"operation {self.id} ({self.method}) still runs after {timeout} s")
        return self._watch.outcome()

    def cancel(self, reason: str = "cancelled by the caller") -> OperationInfo:
        """Ask the server to cancel the operation; returns what it says of it then.

        The handler is told at once (its cleanup runs); :meth:`result` then raises
        :class:`OperationCancelled`, unless the handler finished first.
        """
        return self._client.cancel_operation(self.id, reason)

    def close(self) -> None:
        """Stop watching (the operation goes on, or is cancelled if it was declared so)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def __enter__(self) -> OperationHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _poll(self) -> None:
        watch = self._watch
        try:
            while not self._stop.is_set():
                try:
                    header, buffers, extension = self._client._operation_request(
                        ExtensionEvents.OP_POLL, watch.fields()
                    )
                except (CallTimeout, Unavailable):
                    continue
                except LabwireError as exc:
                    if self._client._closed:
                        return
                    watch.failure = exc
                    watch.done = True
                    return
                failure = _failure_of(header, extension)
                if isinstance(failure, NotFound):
                    watch.lost(failure)
                    return
                if failure is not None:
                    watch.failure = failure
                    watch.done = True
                    return
                watch.absorb(header, buffers)
                if watch.done:
                    return
                self._stop.wait(self._interval)
        finally:
            self._done.set()


class AsyncOperationHandle(_Handle):
    """An :class:`OperationHandle` for :class:`~labwire.rpc.AsyncRPCClient`: a polling task.

    Iterate it (``async for update in handle``) to get each progress update in order; the
    iteration ends when the operation does.

    Attributes:
        id: The operation id.
        method: The method running.
    """

    def __init__(
        self,
        client: AsyncOperationCalls,
        info: OperationInfo,
        on_progress: Callable[[Update], Any] | None = None,
        poll_interval: float = POLL_SECONDS,
    ) -> None:
        self._client = client
        self._watch = _Watch(info, on_progress)
        self.id = info.id
        self.method = info.method
        self._interval = poll_interval
        self._queue: asyncio.Queue[Update | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    def done(self) -> bool:
        """Whether the operation has ended (or was lost)."""
        return self._task.done()

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the end and return the result (raises as :meth:`OperationHandle.result`)."""
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            raise CallTimeout(
                f"operation {self.id} ({self.method}) still runs after {timeout} s"
            ) from None
        return self._watch.outcome()

    async def cancel(self, reason: str = "cancelled by the caller") -> OperationInfo:
        """Ask the server to cancel the operation; returns what it says of it then."""
        return await self._client.cancel_operation(self.id, reason)

    async def aclose(self) -> None:
        """Stop watching (the operation goes on, or is cancelled if it was declared so)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def __aiter__(self) -> AsyncIterator[Update]:
        return self._updates()

    async def _updates(self) -> AsyncIterator[Update]:
        while True:
            update = await self._queue.get()
            if update is None:
                return
            yield update

    async def _poll(self) -> None:
        watch = self._watch
        try:
            while True:
                try:
                    header, buffers, extension = await self._client._operation_request(
                        ExtensionEvents.OP_POLL, watch.fields()
                    )
                except (CallTimeout, Unavailable):
                    continue
                except LabwireError as exc:
                    watch.failure = exc
                    watch.done = True
                    return
                failure = _failure_of(header, extension)
                if isinstance(failure, NotFound):
                    watch.lost(failure)
                    return
                if failure is not None:
                    watch.failure = failure
                    watch.done = True
                    return
                for update in watch.absorb(header, buffers):
                    self._queue.put_nowait(update)
                if watch.done:
                    return
                await asyncio.sleep(self._interval)
        finally:
            self._queue.put_nowait(None)
