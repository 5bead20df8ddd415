"""Auxiliaries: push experiment messages to many rigs and collate what each one answers.

Theory of operation
-------------------
An :class:`Auxiliaries` owns one daemon thread running one asyncio loop, started by the
constructor, which opens every rig's link (:mod:`labwire.rigs.links`) and then serves a queue.
:meth:`Auxiliaries.push` checks the message and its arguments in the caller's thread (a wrong
argument raises there), then hands the request to the loop with
``loop.call_soon_threadsafe``: the loop wakes at once, with no polling. Requests are served one
after the other, in the order pushed; each one goes to every rig concurrently, or one rig after
the other (EXPEND, EXPINTERRUPT and EXPCLEANUP in reverse order) with ``concurrent=False``.
Every rig's outcome is recorded, whatever the others do: its reply, its remote error, or a
timeout after ``timeout`` seconds (each rig's own deadline), in a
:class:`~labwire.rigs.RigResults`.

Everything is per instance: two coordinators in one process are independent. :meth:`close`
stops the loop (pending requests are cancelled) and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any

from labwire.config import Settings
from labwire.errors import ClosedError, ConfigurationError, LabwireError, Unavailable
from labwire.rigs.links import RigLink, open_link
from labwire.rigs.results import RigResult, RigResults, RigsFailed
from labwire.wire.rigs import (
    REVERSED_MESSAGES,
    ExpMessage,
    Payload,
    RigAddress,
    build_payload,
    error_details,
    parse_rig_uri,
)

__all__ = ["Auxiliaries"]

_log = logging.getLogger(__name__)

#: Results kept for keys nobody fetched yet; the oldest are dropped beyond this.
_KEPT_RESULTS = 256
_Request = tuple[float, Payload, bool, float, "concurrent.futures.Future[RigResults]"]


class Auxiliaries:
    """Connect to and communicate with one or more remote rigs synchronously.

    Args:
        clients: A map of rig name to URI. ``udp://HOST[:PORT]`` or a bare host reaches a
            rig speaking the deployed UDP protocol; ``tcp://HOST:PORT`` or a labwire registry
            name reaches a labwire rig service (see :func:`labwire.wire.rigs.parse_rig_uri`).
        timeout: Default seconds each rig has to reply to a push (the deployed default, 10).
        settings: labwire settings for the labwire links (security, registry URL).
        registry_url: The registry that resolves rig names (default: the settings').
        connect_timeout: Seconds the constructor waits for the links to open.

    Attributes:
        connected: Set by the loop thread once every link is open.
        response_received: Set each time a push's results are all in (cleared while the
            loop sends the next one).
        stop_event: Once set (by :meth:`close`), the loop stops and cleans up.
        refresh_rate: Kept for compatibility; requests never wait for it (no polling).
        timeout: See above.

    Raises:
        ConfigurationError: ``clients`` is not a map of names to valid URIs.
        Unavailable: The loop thread did not open the links within ``connect_timeout``.
    """

    def __init__(
        self,
        clients: Mapping[str, str],
        *,
        timeout: float = 10.0,
        settings: Settings | None = None,
        registry_url: str | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        if not isinstance(clients, Mapping):
            raise ConfigurationError(
                f"clients must map rig names to URIs, not {type(clients).__name__}"
            )
        if not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds: {timeout!r}")
        self._addresses: dict[str, tuple[str, RigAddress]] = {}
        for name, uri in clients.items():
            if not isinstance(name, str) or not name:
                raise ConfigurationError(f"rig names must be non-empty strings, got {name!r}")
            self._addresses[name] = (str(uri), parse_rig_uri(uri))
        self.timeout = float(timeout)
        self.refresh_rate = 0.2
        self._settings = settings
        self._registry_url = registry_url
        self.connected = threading.Event()
        self.response_received = threading.Event()
        self.stop_event = threading.Event()
        self._links: dict[str, RigLink] = {}
        self.services: Mapping[str, RigLink] = MappingProxyType(self._links)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Request] | None = None
        self._lock = threading.Lock()
        self._pending: dict[float, concurrent.futures.Future[RigResults]] = {}
        self._finished: OrderedDict[float, RigResults] = OrderedDict()
        self._last_key = 0.0
        self._running = False
        self._failure: BaseException | None = None
        self._task: asyncio.Task[Any] | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"labwire-auxiliaries-{id(self):x}", daemon=True
        )
        self._thread.start()
        if not self.connected.wait(connect_timeout) or self._failure is not None:
            self.close()
            if self._failure is not None:
                raise self._failure
            raise Unavailable(f"rig links did not open within {connect_timeout:g} s")

    # ------------------------------------------------------------------ properties

    @property
    def is_connected(self) -> bool:
        """True if every rig's link is open."""
        return (
            self.connected.is_set()
            and bool(self._links)
            and all(link.is_connected for link in self._links.values())
        )

    @property
    def is_running(self) -> bool:
        """True if the loop is listening on its thread."""
        return self._running and not self.stop_event.is_set()

    # ------------------------------------------------------------------ the loop thread

    def _run(self) -> None:
        try:
            asyncio.run(self.listen())
        except BaseException as exc:
            if not self.stop_event.is_set():
                self._failure = exc
            self.connected.set()
        finally:
            self._running = False
            with self._lock:
                pending = list(self._pending.values())
            for future in pending:
                if not future.cancel() and not future.done():
                    future.set_exception(ClosedError("the coordinator closed during the push"))

    async def create(self) -> None:
        """Open every rig's link, then set :attr:`connected`.

        Called on the loop thread by :meth:`listen`. A rig that cannot be reached yet (its
        host name does not resolve, it is not running) does not stop the others: it is
        reported in the results of each push until it answers.
        """
        for name, (uri, address) in self._addresses.items():
            self._links[name] = await open_link(
                name, uri, address, self._settings, self._registry_url
            )
        self.connected.set()

    async def listen(self) -> None:
        """Open the links, then serve pushed messages until :attr:`stop_event` is set.

        Runs on the loop thread the constructor starts.
        """
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.current_task()
        self._running = True
        try:
            await self.create()
            while True:
                item = await self._queue.get()
                if self.stop_event.is_set():
                    break
                key, payload, concurrently, timeout, future = item
                if not future.set_running_or_notify_cancel():
                    continue
                self.response_received.clear()
                try:
                    results = await self.send(payload, concurrent=concurrently, timeout=timeout)
                except Exception as exc:
                    with self._lock:
                        self._pending.pop(key, None)
                    future.set_exception(exc)
                    continue
                with self._lock:
                    self._pending.pop(key, None)
                    self._finished[key] = results
                    while len(self._finished) > _KEPT_RESULTS:
                        self._finished.popitem(last=False)
                future.set_result(results)
                self.response_received.set()
        finally:
            self._running = False
            await self.cleanup()

    async def send(
        self, payload: Payload, *, concurrent: bool = True, timeout: float | None = None
    ) -> RigResults:
        """Send one message to every rig and collect every outcome (on the loop thread).

        Args:
            payload: The message's typed payload (:func:`labwire.wire.rigs.build_payload`).
            concurrent: Send to all rigs at once; False: one after the other, in the order
                given (reverse order for EXPEND, EXPINTERRUPT and EXPCLEANUP).
            timeout: Seconds each rig has (default: :attr:`timeout`).
        """
        timeout = self.timeout if timeout is None else timeout
        message = payload.message
        items = payload.items()
        names = list(self._links)
        if concurrent:
            outcomes = await asyncio.gather(
                *(self._one(name, message, items, timeout) for name in names)
            )
            by_name = dict(zip(names, outcomes, strict=True))
        else:
            order = reversed(names) if message in REVERSED_MESSAGES else iter(names)
            by_name = {name: await self._one(name, message, items, timeout) for name in order}
        return RigResults(message, {name: by_name[name] for name in names})

    async def _one(
        self, name: str, message: ExpMessage, items: list[Any], timeout: float
    ) -> RigResult:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            reply = await self._links[name].request(message, items, timeout)
        except LabwireError as exc:
            return RigResult(name, message, None, exc, loop.time() - start)
        except OSError as exc:
            unreachable = Unavailable(f"rig {name!r}: {type(exc).__name__}: {exc}")
            return RigResult(name, message, None, unreachable, loop.time() - start)
        except Exception as exc:  # a failure of this rig's link must not end the others'
            _log.exception("sending %s to rig %r failed", message.name, name)
            failed = LabwireError(f"rig {name!r}: {type(exc).__name__}: {exc}")
            return RigResult(name, message, None, failed, loop.time() - start)
        return RigResult(name, message, reply, None, loop.time() - start)

    async def cleanup(self, notify_services: bool = False) -> None:
        """Close every link and cancel pending requests (on the loop thread).

        Args:
            notify_services: Send EXPCLEANUP to the rigs first (reverse order, concurrently),
                waiting at most :attr:`timeout` for their replies.
        """
        if notify_services and self._links:
            with contextlib.suppress(LabwireError):
                await self.send(build_payload(ExpMessage.EXPCLEANUP))
        if self._queue is not None:
            while not self._queue.empty():
                self._queue.get_nowait()[-1].cancel()
        for link in list(self._links.values()):
            try:
                await link.aclose()
            except LabwireError as exc:
                _log.warning("closing the link to rig %r: %s", link.name, exc)

    # ------------------------------------------------------------------ the caller's side

    def push(
        self, message: ExpMessage | str | int, *args: Any, wait: bool = False, **kwargs: Any
    ) -> dict[str, list[Any] | None] | RigsFailed | float:
        """Send a message to every rig.

        The message and its arguments are checked here, then the loop thread sends it at
        once (after the messages pushed before it).

        Args:
            message: The message: an :class:`~labwire.wire.rigs.ExpMessage`, its name
                (``'EXPINIT'``) or its integer code.
            *args: The message's arguments (see :func:`labwire.wire.rigs.build_payload`).
            wait: Block until every rig replied, failed or timed out.
            **kwargs: The message's keyword arguments, plus ``concurrent`` (bool, default
                True) and ``timeout`` (seconds per rig, default :attr:`timeout`).

        Returns:
            With ``wait``: the replies by rig name (each the reply items), or, when not every
            rig replied, a :class:`~labwire.rigs.RigsFailed` (returned, not raised) that keeps
            the partial replies. Without: a key for :meth:`fetch` / :meth:`results`.

        Raises:
            TypeError: Wrong arguments for the message.
            ConfigurationError: Unknown message or status.
            ClosedError: The coordinator is closed.
            RuntimeError: The loop thread failed.
        """
        key = self._submit(message, args, kwargs)
        if not wait:
            return key
        return self.fetch(key)

    def push_results(
        self, message: ExpMessage | str | int, *args: Any, **kwargs: Any
    ) -> RigResults:
        """Like ``push(..., wait=True)``, but return every rig's :class:`RigResult`."""
        return self.results(self._submit(message, args, kwargs))

    def interrupt(self, error: BaseException | None = None, **kwargs: Any) -> RigResults:
        """Send EXPINTERRUPT, with the details of ``error`` (type, message, traceback).

        Args:
            error: The exception that interrupted the experiment (None: no details).
            **kwargs: ``concurrent`` and ``timeout``, as for :meth:`push`.
        """
        data = None if error is None else {"error": error_details(error)}
        return self.push_results(ExpMessage.EXPINTERRUPT, data, **kwargs)

    def _submit(self, message: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
        concurrently = kwargs.pop("concurrent", True)
        timeout = kwargs.pop("timeout", self.timeout)
        if not isinstance(concurrently, bool):
            raise TypeError(f"concurrent must be True or False, not {concurrently!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ConfigurationError(f"timeout must be a positive number of seconds: {timeout!r}")
        payload = build_payload(message, *args, **kwargs)
        loop, queue = self._loop, self._queue
        if self.stop_event.is_set() or loop is None or queue is None:
            raise ClosedError("this Auxiliaries is closed")
        if not self.is_running:
            raise RuntimeError(f"the rig coordinator's thread is not running ({self._failure})")
        future: concurrent.futures.Future[RigResults] = concurrent.futures.Future()
        with self._lock:
            key = max(time.time(), self._last_key + 1e-6)
            self._last_key = key
            self._pending[key] = future
        try:
            loop.call_soon_threadsafe(
                queue.put_nowait, (key, payload, concurrently, float(timeout), future)
            )
        except RuntimeError:
            with self._lock:
                self._pending.pop(key, None)
            raise ClosedError("this Auxiliaries is closed") from None
        return key

    def results(self, key: float, timeout: float | None = None) -> RigResults:
        """The per-rig results of the push ``key``, waiting for them if needed.

        Args:
            key: What :meth:`push` returned without ``wait``.
            timeout: Seconds to wait (None: until the push is done; each rig has its own
                deadline, so this ends).

        Raises:
            KeyError: No push has this key, its results were already fetched, or it was
                dropped by :meth:`clear_message_queue`.
            TimeoutError: ``timeout`` passed first.
            ClosedError: :meth:`close` was called while the push was in flight.
            RuntimeError: The push was cancelled, or the loop thread failed.
            Exception: Whatever made sending the push fail as a whole (each rig's own failure
                is a result, never raised).
        """
        with self._lock:
            finished = self._finished.pop(key, None)
            future = self._pending.get(key)
        if finished is not None:
            return finished
        if future is None:
            raise KeyError(f"no pending or unfetched push with key {key!r}")
        try:
            results = future.result(timeout)
        except concurrent.futures.CancelledError:
            raise RuntimeError("the push was cancelled before it was sent") from None
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the push {key!r} is not finished after {timeout} s") from None
        with self._lock:
            self._pending.pop(key, None)
            self._finished.pop(key, None)
        return results

    def fetch(self, key: float, timeout: float | None = None) -> dict[str, Any] | RigsFailed:
        """The collated replies of the push ``key`` (as ``push(..., wait=True)`` returns them).

        Raises:
            KeyError: See :meth:`results`.
            TimeoutError: See :meth:`results`.
            RuntimeError: See :meth:`results`.
        """
        return self.results(key, timeout).collate()

    def clear_message_queue(self) -> int:
        """Drop the pushed messages not sent yet.

        Returns:
            The number of aborted messages.
        """
        with self._lock:
            waiting = [(k, f) for k, f in self._pending.items() if not f.running() and not f.done()]
            aborted = 0
            for key, future in waiting:
                if future.cancel():
                    aborted += 1
                    del self._pending[key]
        _log.debug("%d rig messages aborted", aborted)
        return aborted

    def close(self) -> None:
        """Stop the loop and close the links; returns within about a second.

        A push still in flight ends with :class:`~labwire.errors.ClosedError`; pushes not
        sent yet are dropped.
        """
        self.clear_message_queue()
        self.stop_event.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)

    def __enter__(self) -> Auxiliaries:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close; when an exception ends the block, first send EXPINTERRUPT with its details."""
        try:
            if exc is not None and self.is_running:
                self.interrupt(exc)
        finally:
            self.close()
