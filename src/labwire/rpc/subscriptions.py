"""The signal subscriptions of a client: one receiver thread, on demand.

Theory of operation
-------------------
A client starts its :class:`~labwire.rpc.receiver.RPCSignalReceiver` when the first slot is
connected to one of its signals, on the endpoint the server announces (INIT_SIGNALS_HANDLING)
or on the signal broker's ``signal_url``. The receiver subscribes only to signals that have
slots. On a labwire server, ``connect()`` returns once the server's publisher has the
subscription: a probe subscription follows it and SIGNAL_CHECK says when the probe has
arrived, so an emission the caller triggers next is not lost. The receiver re-reads the
endpoint about once a second, so a restarted server (new port, new epoch) is followed; after
a restart the client's call path notices, it is pointed at the new endpoint at once.

The subscriptions hold their client weakly: a client the program drops without ``close()``
is still released as soon as its last reference goes.

An :class:`~labwire.rpc.AsyncRPCClient` has the same receiver thread
(:class:`AsyncSubscriptions`); it hands each emission to the client's event loop, which runs
the slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labwire.errors import CallTimeout, ProtocolError, Unavailable
from labwire.rpc.base import _weakly
from labwire.rpc.receiver import RPCSignalReceiver, signal_stats
from labwire.rpc.signal import RPCSignal
from labwire.wire.rpc import ExtensionEvents, RPCEvents

if TYPE_CHECKING:
    from labwire.rpc.aio import AsyncRPCClient
    from labwire.rpc.client import RPCClient

__all__ = ["AsyncSubscriptions", "Subscriptions"]

_log = logging.getLogger(__name__)
#: How long connect() waits for a subscription when the client has no default timeout.
_SUBSCRIBE_WAIT_MS = 2000


class Subscriptions:
    """The signal receiver of one client, started by the first slot connected.

    Args:
        client: The client whose signals these are (held weakly).

    Attributes:
        receiver: The receiver thread, None until a slot is connected (and after close).
    """

    def __init__(self, client: RPCClient) -> None:
        self._client: RPCClient = weakref.proxy(client)
        self.receiver: RPCSignalReceiver | None = None
        self._lock = threading.Lock()

    def stats(self) -> dict[str, int]:
        """The receiver's counters (see :meth:`labwire.rpc.RPCClient.signal_stats`)."""
        return signal_stats(self.receiver)

    def close(self) -> None:
        """Stop the receiver thread and wait for it (up to about a second)."""
        with self._lock:
            receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.close()

    def stop(self) -> None:
        """Ask the receiver thread to stop without waiting (it closes its own socket)."""
        receiver = self.receiver
        if receiver is not None:
            receiver.stop()

    def follow_restart(self) -> None:
        """After a server restart: point the receiver at the endpoint the server announces now."""
        receiver = self.receiver
        if receiver is not None and self._client.signal_url is None:
            url = self.current_url()
            if url:
                receiver.retarget(url)

    def current_url(self) -> str | None:
        """The signal endpoint the server announces now (None if it cannot be asked)."""
        client = self._client
        try:
            reply = client._request(
                RPCEvents.INIT_SIGNALS_HANDLING, {}, None, client._plain_timeout()
            )
            return client._signal_url(reply)
        except (CallTimeout, Unavailable, ProtocolError, ReferenceError):  # or the client is gone
            return None

    def update(self, signal: RPCSignal) -> None:
        """Subscribe to ``signal`` if it has slots, else unsubscribe (its slots changed)."""
        receiver = self._ensure_receiver()
        if receiver is None:
            return
        if signal.connections:
            receiver.subscribe(signal.name)
            # connect() returns once the subscription is in place, so that an emission the
            # caller triggers next is not lost (a slot connected by a slot is not waited for).
            if self._client.is_labwire_server and threading.current_thread() is not receiver:
                self._confirm(receiver)
        else:
            receiver.unsubscribe(signal.name)

    def _confirm(self, receiver: RPCSignalReceiver) -> None:
        """Wait until the server's publisher has every subscription made so far.

        A probe subscription follows them; the server says when it has arrived (SIGNAL_CHECK).
        Gives up, with a warning, after the client's timeout: signals then start a little late.
        """
        client = self._client
        token = secrets.token_hex(8)
        receiver.probe(token)
        timeout_ms = client._plain_timeout() or _SUBSCRIBE_WAIT_MS
        deadline = time.monotonic() + timeout_ms / 1000.0
        pause = 0.001
        try:
            while True:
                reply = client._request(
                    ExtensionEvents.SIGNAL_CHECK, {"token": token}, None, timeout_ms
                )
                if reply.header.get("subscribed") is True or client._failure(reply) is not None:
                    return  # in place, or a server without the check: nothing to wait for
                if time.monotonic() + pause > deadline:
                    _log.warning("signal subscription to %s not confirmed in time", client.url)
                    return
                time.sleep(pause)  # the subscription is on its way: ask again shortly
                pause = min(pause * 2, 0.05)
        except (CallTimeout, Unavailable) as exc:
            _log.warning("signal subscription to %s not confirmed: %s", client.url, exc)
        finally:
            receiver.unprobe(token)

    def _ensure_receiver(self) -> RPCSignalReceiver | None:
        client = self._client
        with self._lock:
            if self.receiver is not None:
                return self.receiver
            if client.signal_url is not None:
                return self._start(
                    client.signal_url,
                    server_key=None,
                    refresh=_weakly(self._follow_through_broker),
                    broker=True,
                )
            url = self.current_url()
            if url is None:
                _log.warning("server at %s offers no signal endpoint", client.url)
                return None
            return self._start(
                url,
                server_key=client.server_key,
                refresh=_weakly(self.current_url) if client.is_labwire_server else None,
                broker=False,
            )

    def _start(
        self,
        url: str,
        *,
        server_key: str | None,
        refresh: Callable[[], str | None] | None,
        broker: bool,
    ) -> RPCSignalReceiver:
        client = self._client
        receiver = RPCSignalReceiver(
            client.context,
            url,
            client._signals,
            settings=client._settings,
            # A deployed publisher's frames do not start with the signal name.
            selective=client.is_labwire_server,
            server_key=server_key,
            refresh=refresh,
            epoch=_weakly(client._epoch) if broker else None,
            on_terminated=_weakly(client._release_sockets),
        )
        receiver.start()
        self.receiver = receiver
        return receiver

    def _follow_through_broker(self) -> str | None:
        """The receiver's refresh with a broker: ask the server, so a restart is noticed."""
        self.current_url()
        try:
            return self._client.signal_url
        except ReferenceError:
            return None


class AsyncSubscriptions:
    """The signal receiver of one asyncio client, started by the first slot connected.

    Slots are called in the event loop the client was last used from.

    Args:
        client: The client whose signals these are.

    Attributes:
        receiver: The receiver thread, None until a slot is connected (and after close).
    """

    def __init__(self, client: AsyncRPCClient) -> None:
        self._client = client
        self.receiver: RPCSignalReceiver | None = None

    def stats(self) -> dict[str, int]:
        """The receiver's counters (see :meth:`labwire.rpc.RPCClient.signal_stats`)."""
        return signal_stats(self.receiver)

    async def close(self) -> None:
        """Stop the receiver thread and wait for it (up to about a second)."""
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            await asyncio.to_thread(receiver.close)

    async def follow_restart(self) -> None:
        """After a server restart: point the receiver at the endpoint the server announces now."""
        if self.receiver is not None and self._client.signal_url is None:
            url = await self.current_url()
            if url and self.receiver is not None:
                self.receiver.retarget(url)

    async def current_url(self) -> str | None:
        """The signal endpoint the server announces now (None if it cannot be asked)."""
        client = self._client
        try:
            reply = await client._request(
                RPCEvents.INIT_SIGNALS_HANDLING, {}, None, client._plain_timeout()
            )
        except (CallTimeout, Unavailable, ProtocolError):
            return None
        return client._signal_url(reply)

    def changed(self, signal: RPCSignal, loop: asyncio.AbstractEventLoop) -> None:
        """``signal``'s slots changed: (un)subscribe it from a task in ``loop``."""
        task = loop.create_task(self._update(signal, loop))
        task.add_done_callback(_log_task_failure)

    async def _update(self, signal: RPCSignal, loop: asyncio.AbstractEventLoop) -> None:
        client = self._client
        if self.receiver is None:
            url = client.signal_url or await self.current_url()
            if url is None:
                _log.warning("server at %s offers no signal endpoint", client.url)
                return
            if self.receiver is None:  # not started by another update meanwhile
                receiver = RPCSignalReceiver(
                    client.context,
                    url,
                    {name: _LoopSignal(loop, local) for name, local in client._signals.items()},
                    settings=client._settings,
                    selective=True,
                    server_key=None if client.signal_url else client.server_key,
                    epoch=client._epoch if client.signal_url else None,
                )
                receiver.start()
                self.receiver = receiver
        assert self.receiver is not None
        if signal.connections:
            self.receiver.subscribe(signal.name)
        else:
            self.receiver.unsubscribe(signal.name)


class _LoopSignal(RPCSignal):
    """Stands in for a client signal in the receiver thread; runs slots in the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: RPCSignal) -> None:
        super().__init__(*target.arg_types)
        self.name = target.name
        self._loop = loop
        self._target = target

    def dispatch(self, *args: Any) -> int:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            self._loop.call_soon_threadsafe(self._target.dispatch, *args)
        return 0


def _log_task_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.warning("signal subscription update failed: %s", task.exception())
