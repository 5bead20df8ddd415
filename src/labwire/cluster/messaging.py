"""What travels on a member's data links: events, direct messages, requests and catalogs.

:class:`Messaging` is the part of :class:`~labwire.cluster.member.Member` that sends (publish,
send, request) and receives (answers, requests to answer, catalogs); the member adds discovery,
configuration and its life cycle. See :mod:`labwire.cluster.member` for how it all works.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import inspect
import ipaddress
import itertools
import logging
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from labwire.cluster.looper import Looper
from labwire.cluster.peers import PeerLink, UnknownPeer
from labwire.cluster.util import debug
from labwire.config import Settings
from labwire.errors import (
    CallTimeout,
    ClosedError,
    NotFound,
    ProtocolError,
    RemoteError,
    Unavailable,
)
from labwire.transport import Socket
from labwire.transport.waiting import POLLIN, POLLOUT, Waker, recv_waiting
from labwire.wire.cluster import (
    Answer,
    Call,
    Catalog,
    CatalogQuery,
    Direct,
    Event,
    Message,
    decode_message,
    encode_message,
)

__all__ = ["Callback", "Messaging"]

_log = logging.getLogger("labwire.cluster")

Callback = Callable[..., Any]

#: Most messages handled in a row before the loop gets a turn.
_BURST = 256


class Messaging(Looper):
    """Sending and receiving on the data links of one member (its loop thread only).

    Args:
        loop: The event loop; see :class:`~labwire.cluster.looper.Looper`.
    """

    name: str
    uid: str
    group: str
    network: ipaddress.IPv4Network
    timeout: float
    receive_own: bool
    stats: Counter[str]
    _settings: Settings

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(loop)
        self._wanted: set[str] = set()
        self._subscriptions: dict[str, list[Callback]] = {}
        self._receivers: dict[str, list[Callback]] = {}
        self._request_endpoints: dict[str, Callback] = {}
        self._catalog_version = 0
        self._links: dict[str, PeerLink] = {}
        self._ids = itertools.count(1)
        self._router: Socket | None = None
        self._router_waker: Waker | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    def _unknown(self, peer: str) -> UnknownPeer:
        known = ", ".join(sorted(self._links)) or "none"
        return UnknownPeer(
            f"no member named {peer!r} in group {self.group!r} on {self.network} "
            f"(members heard: {known})"
        )

    # ------------------------------------------------------------------ outgoing

    def _send_nowait(self, link: PeerLink, frame: bytes) -> bool:
        sock, waker = link.socket, link.waker
        if sock is None:
            return False
        sent = sock.send((frame,), nowait=True)
        if waker is not None:
            waker.kick()  # the send may have taken the signal of an answer for the reader
        return sent

    async def _send_within(self, link: PeerLink, frame: bytes, deadline: float, what: str) -> None:
        while not self._send_nowait(link, frame):
            remaining = deadline - self.loop.time()
            waker = link.waker
            if remaining <= 0 or waker is None:
                if self._links.get(link.name) is not link:
                    raise Unavailable(f"{what}: member {link.name!r} left the group")
                raise CallTimeout(
                    f"{what}: no connection to member {link.name!r} at {link.url} within "
                    f"{self.timeout:g} s"
                )
            with contextlib.suppress(ClosedError):  # the link closed: checked above
                await waker.wait(POLLOUT, remaining)

    def _push_catalog(self) -> None:
        if not self._links:
            return
        frame = encode_message(self._catalog())
        for link in self._links.values():
            self._send_nowait(link, frame)

    def _catalog(self) -> Catalog:
        return Catalog(
            self.name,
            self.uid,
            self._catalog_version,
            sorted(self._subscriptions),
            sorted(self._request_endpoints),
            sorted(self._receivers),
        )

    async def publish(self, endpoint: str, data: Any) -> None:
        """Publish ``data`` as the event ``'<this member's name>/<endpoint>'``.

        It goes to every peer with a matching subscription; it never waits for a peer (a peer
        whose queue is full misses it, counted in ``stats["dropped_events"]``).

        Raises:
            TypeError: ``data`` cannot be sent as JSON.
        """
        frame = encode_message(Event(self.name, self.uid, endpoint, data))
        event = f"{self.name}/{endpoint}"
        for link in self._links.values():
            if link.wants(event) and not self._send_nowait(link, frame):
                self.stats["dropped_events"] += 1
        if self.receive_own:
            self._deliver(self._subscriptions, event, event, data)

    async def send(self, peer: str, endpoint: str, data: Any) -> None:
        """Send ``data`` to ``peer``'s ``endpoint`` (handled by its :meth:`on_recv` callbacks).

        Returns once the message is queued on the connection to the peer.

        Raises:
            UnknownPeer: No live member has that name.
            CallTimeout: No connection to the peer within :attr:`timeout`.
            TypeError: ``data`` cannot be sent as JSON.
        """
        link = self._links.get(peer)
        if link is None:
            raise self._unknown(peer)
        self._wanted.add(peer)
        frame = encode_message(Direct(self.name, self.uid, endpoint, data))
        deadline = self.loop.time() + self.timeout
        await self._send_within(link, frame, deadline, f"send to {peer}/{endpoint}")

    async def request(self, peer: str, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``peer``'s request endpoint and return its result.

        Waits at most :attr:`timeout` seconds.

        Raises:
            UnknownPeer: No live member has that name.
            NotFound: The peer has no such endpoint.
            RemoteError: The peer's handler raised (type, message and traceback inside).
            CallTimeout: No answer in time (the outcome is unknown).
            Unavailable: The peer left the group while the request was pending.
            TypeError: The arguments cannot be sent as JSON.
        """
        link = self._links.get(peer)
        if link is None:
            raise self._unknown(peer)
        self._wanted.add(peer)
        request_id = next(self._ids)
        frame = encode_message(Call(self.name, self.uid, request_id, endpoint, list(args), kwargs))
        what = f"request {peer}/{endpoint}"
        deadline = self.loop.time() + self.timeout
        future: asyncio.Future[Answer] = self.loop.create_future()
        link.pending[request_id] = future
        timer = self.loop.call_at(deadline, _time_out, future, what, self.timeout)
        try:
            await self._send_within(link, frame, deadline, what)
            answer = await future
        finally:
            timer.cancel()
            link.pending.pop(request_id, None)
        return _outcome(answer, what)

    # ------------------------------------------------------------------ incoming

    async def _read_link(self, link: PeerLink) -> None:
        sock, waker = link.socket, link.waker
        assert sock is not None and waker is not None
        while True:
            for frames in recv_waiting(sock, _BURST):
                self._read_one(link, frames)
            await _next_burst(waker)

    def _read_one(self, link: PeerLink, frames: list[memoryview]) -> None:
        try:
            if len(frames) != 1:
                raise ProtocolError(f"expected 1 frame, got {len(frames)}")
            message = decode_message(frames[0], self._settings.limits)
        except ProtocolError as exc:
            self.stats["bad_messages"] += 1
            debug(f"{self.name}: bad message from {link.name}: {exc}")
            return
        if isinstance(message, Answer):
            future = link.pending.get(message.id)
            if future is None or future.done():
                self.stats["late_answers"] += 1
            else:
                future.set_result(message)
        elif isinstance(message, Catalog):
            self._apply_catalog(message)
        else:
            self.stats["bad_messages"] += 1

    def _apply_catalog(self, catalog: Catalog) -> None:
        link = self._links.get(catalog.sender)
        if link is None or link.uid != catalog.uid or catalog.version < link.catalog_version:
            return
        link.catalog_version = catalog.version
        link.subscriptions = tuple(catalog.subscriptions)
        link.requests = tuple(catalog.requests)
        link.receivers = tuple(catalog.receivers)
        link.matches.clear()

    async def _serve(self) -> None:
        router, waker = self._router, self._router_waker
        if router is None or waker is None:
            return
        while True:
            for frames in recv_waiting(router, _BURST):
                self._serve_one(frames)
            await _next_burst(waker)

    def _serve_one(self, frames: list[memoryview]) -> None:
        try:
            if len(frames) != 2:
                raise ProtocolError(f"expected 2 frames (routing id, message), got {len(frames)}")
            message = decode_message(frames[1], self._settings.limits)
        except ProtocolError as exc:
            self.stats["bad_messages"] += 1
            debug(f"{self.name}: bad message on the data link: {exc}")
            return
        self._handle(bytes(frames[0]), message)

    def _handle(self, identity: bytes, message: Message) -> None:
        if isinstance(message, Event):
            event = f"{message.sender}/{message.topic}"
            if not self._deliver(self._subscriptions, event, event, message.data):
                self.stats["unhandled"] += 1
        elif isinstance(message, Direct):
            event = f"{message.sender}/{message.endpoint}"
            if not self._deliver(self._receivers, message.endpoint, event, message.data):
                self.stats["unhandled"] += 1
                debug(f"{self.name}: no receiver for {event}")
        elif isinstance(message, Call):
            self._answer(identity, message)
        elif isinstance(message, CatalogQuery):
            self._reply(identity, encode_message(self._catalog()))
        elif isinstance(message, Catalog):
            self._apply_catalog(message)
        else:
            self.stats["bad_messages"] += 1

    def _deliver(self, table: dict[str, list[Callback]], key: str, event: str, data: Any) -> bool:
        delivered = False
        for pattern, callbacks in list(table.items()):
            if not fnmatch.fnmatchcase(key, pattern):
                continue
            for callback in callbacks:
                delivered = True
                try:
                    result = callback(event, data)
                except Exception:
                    _log.exception("%s: callback for %s raised", self.name, event)
                    continue
                if asyncio.iscoroutine(result):
                    self._spawn_handler(_logged(result, f"{self.name}: callback for {event}"))
        return delivered

    def _spawn_handler(self, coroutine: Any) -> None:
        task = self.loop.create_task(coroutine)
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _reply(self, identity: bytes, frame: bytes) -> None:
        router = self._router
        if router is None or not router.send((identity, frame), nowait=True):
            debug(f"{self.name}: an answer could not be queued (requester gone)")
        if self._router_waker is not None:
            self._router_waker.kick()  # the send may have taken the signal of a request

    def _answer(self, identity: bytes, call: Call) -> None:
        """Run a request's handler: a function at once, a coroutine in a task of its own."""
        handler = self._request_endpoints.get(call.endpoint)
        if handler is None:
            endpoints = ", ".join(sorted(self._request_endpoints)) or "none"
            message = f"{self.name!r} has no request endpoint {call.endpoint!r} (its endpoints: "
            self._reply_failure(identity, call, "not_found", "NotFound", f"{message}{endpoints})")
            return
        try:
            result = handler(*call.args, **call.kwargs)
        except Exception as exc:
            self._reply_exception(identity, call, exc)
            return
        if inspect.isawaitable(result):
            self._spawn_handler(self._answer_later(identity, call, result))
        else:
            self._reply_value(identity, call, result)

    async def _answer_later(self, identity: bytes, call: Call, result: Awaitable[Any]) -> None:
        try:
            value = await result
        except Exception as exc:
            self._reply_exception(identity, call, exc)
        else:
            self._reply_value(identity, call, value)

    def _reply_value(self, identity: bytes, call: Call, value: Any) -> None:
        try:
            frame = encode_message(Answer(self.name, self.uid, call.id, "ok", value))
        except TypeError as exc:
            self._reply_exception(identity, call, exc)
            return
        self._reply(identity, frame)

    def _reply_exception(self, identity: bytes, call: Call, exc: Exception) -> None:
        _log.info("%s: request %s raised %r", self.name, call.endpoint, exc)
        trace = "".join(traceback.format_exception(exc))
        self._reply_failure(identity, call, "error", type(exc).__name__, str(exc), trace)

    def _reply_failure(
        self,
        identity: bytes,
        call: Call,
        status: Literal["not_found", "error"],
        error_type: str,
        error: str,
        trace: str = "",
    ) -> None:
        answer = Answer(self.name, self.uid, call.id, status, None, error_type, error, trace)
        self._reply(identity, encode_message(answer))


async def _next_burst(waker: Waker) -> None:
    """Wait until more messages are waiting (at once if some still are: a turn for others)."""
    if waker.events() & POLLIN:
        await asyncio.sleep(0)
    else:
        await waker.wait(POLLIN)


def _time_out(future: asyncio.Future[Answer], what: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(
            CallTimeout(f"{what}: no answer within {timeout:g} s (outcome unknown)")
        )


def _outcome(answer: Answer, what: str) -> Any:
    if answer.status == "ok":
        return answer.value
    if answer.status == "not_found":
        raise NotFound(answer.error_type or "NotFound", answer.error, answer.traceback)
    raise RemoteError(answer.error_type, f"{what}: {answer.error}", answer.traceback)


async def _logged(coroutine: Awaitable[Any], what: str) -> None:
    try:
        await coroutine
    except Exception:
        _log.exception("%s raised", what)
