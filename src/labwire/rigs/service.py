"""The rig side: a service that answers experiment messages over both links.

Theory of operation
-------------------
A :class:`RigService` is what runs on an auxiliary rig (a camera PC, a recording rig). A
subclass overrides one handler per message (``on_init``, ``on_start``, ...). The service
listens on two links at once, so both kinds of coordinator can drive it:

* the deployed UDP protocol (``udp=``, default port 11001): datagrams are echoed at once, the
  handler runs in a worker thread, and its reply is sent as a confirmed datagram (resent until
  echoed, within ``reply_timeout``). Undecodable datagrams, unknown codes, bad payloads,
  illegal transitions and handler failures are answered with the deployed error reply
  ``[0, "Type: message", code]``;
* labwire's transport (``url=``): an :class:`~labwire.rpc.RPCServer` whose one method
  ``rig_message(code, items)`` returns the reply items, with request ids, deadlines,
  duplicate suppression and CurveZMQ when security is on. Failures come back as remote errors.

Both links share one handler lock and one status machine (:data:`labwire.wire.rigs.TRANSITIONS`):
a message the current status does not allow is refused with
:class:`~labwire.wire.rigs.IllegalTransition` and the handler is not called. The status changes
only when the handler returns. The service can register itself in a labwire registry (type
``"rig"``), so coordinators can name it instead of giving its address.

Replies carry the items of the deployed ``Service`` methods: ``[data]`` for EXPINIT, EXPEND,
EXPCLEANUP and EXPINTERRUPT, ``[exp_ref, data]`` for EXPSTART, ``[status]`` for EXPSTATUS,
``[status, data]`` for EXPINFO and ``[base_url, token]`` for ALYX, where ``data`` is what the
handler returned, or the rig's new status (an integer) when it returned None.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from labwire.config import Settings
from labwire.errors import ConfigurationError, EndpointError, ProtocolError
from labwire.rigs._udp import Address, EchoEndpoint
from labwire.rpc import RPCServer
from labwire.wire.rigs import (
    Alyx,
    Cleanup,
    Datagram,
    End,
    ExpMessage,
    ExpStatus,
    Info,
    Init,
    Interrupt,
    Payload,
    Start,
    Status,
    encode_datagram,
    encode_error,
    next_status,
    parse_message,
    parse_rig_uri,
    payload_from_items,
)

__all__ = ["RIG_METHOD", "RigService"]

_log = logging.getLogger(__name__)

#: The RPC method a labwire rig service exports: ``rig_message(code, items) -> items``.
RIG_METHOD = "rig_message"
#: Default deadline (ms) of ``rig_message`` calls.
_METHOD_TIMEOUT_MS = 10_000


class _RigServer(RPCServer):
    """The labwire-transport face of a rig service."""

    def __init__(self, handle: Callable[[int, list[Any]], list[Any]], url: str, **kw: Any):
        self._handle = handle
        super().__init__(None, url, **kw)

    @RPCServer.register_method_json(timeout=_METHOD_TIMEOUT_MS)
    def rig_message(self, code: int, items: list[Any]) -> list[Any]:
        """Handle one experiment message and return the reply items."""
        return self._handle(code, items)


class RigService:
    """A remote rig: answers experiment messages from coordinators.

    Subclass it and override the handlers you need; each returns the reply's data (None: the
    rig's new status). Then ``start()`` it (or use it as a context manager).

    Args:
        name: This rig's name (used in logs, replies to EXPINFO and the registry).
        udp: Where to listen for the deployed UDP protocol (``udp://HOST:PORT``, port 0 picks
            one; None: no UDP link).
        url: Where to listen for labwire's transport (``tcp://HOST:PORT``; None: none).
        settings: labwire settings for the RPC side (security, limits).
        registry_url: Register in this labwire registry when started (None: do not).
        alive_timeout: Registry lease in seconds.
        reply_timeout: Seconds a UDP reply is resent while the coordinator does not echo it.

    Attributes:
        name: The rig's name (the registry may have changed it on registration).
        udp_endpoint: The bound UDP endpoint ``udp://HOST:PORT`` ("" without UDP).
        endpoint: The bound labwire endpoint ("" without it).
        handled: Messages handled successfully.
        refused: Messages refused (undecodable, unknown, illegal now, or a failed handler).
    """

    def __init__(
        self,
        name: str,
        *,
        udp: str | None = "udp://0.0.0.0:11001",
        url: str | None = "tcp://0.0.0.0:0",
        settings: Settings | None = None,
        registry_url: str | None = None,
        alive_timeout: int = 10,
        reply_timeout: float = 10.0,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("a rig service needs a non-empty name")
        if udp is None and url is None:
            raise ConfigurationError("a rig service needs udp=, url= or both")
        self.name = name
        self.reply_timeout = reply_timeout
        self._udp_address = None
        if udp is not None:
            address = parse_rig_uri(udp if "://" in udp else f"udp://{udp}", for_bind=True)
            if address.link != "udp":
                raise EndpointError(f"udp= must be a udp:// address, got {udp!r}")
            self._udp_address = address
        self._url = url
        self._settings = settings
        self._registry_url = registry_url
        self._alive_timeout = alive_timeout
        self._status = ExpStatus.CONNECTED
        self._exp_ref: str | None = None
        self._lock = threading.Lock()
        self._rpc: _RigServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_udp: asyncio.Event | None = None
        self._udp: EchoEndpoint | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self.udp_endpoint = ""
        self.endpoint = ""
        self.handled = 0
        self.refused = 0

    # ------------------------------------------------------------------ handlers

    def on_init(self, data: Any) -> Any:
        """EXPINIT: prepare for an experiment. Returns the reply data (None: the new status)."""
        return None

    def on_start(self, exp_ref: str | None, data: Any) -> Any:
        """EXPSTART: the experiment ``exp_ref`` begins (e.g. start recording)."""
        return None

    def on_end(self, data: Any) -> Any:
        """EXPEND: the experiment has stopped (e.g. stop recording)."""
        return None

    def on_interrupt(self, data: Any) -> Any:
        """EXPINTERRUPT: the experiment was interrupted; ``data`` may hold ``{"error": ...}``."""
        return None

    def on_cleanup(self, data: Any) -> Any:
        """EXPCLEANUP: clean up after the experiment (e.g. copy files)."""
        return None

    def on_status(self, status: ExpStatus) -> None:
        """EXPSTATUS: the coordinator reports its status; the reply carries this rig's."""

    def on_info(self, status: ExpStatus, data: Any) -> Any:
        """EXPINFO: the coordinator's status and details; returns this rig's details."""
        return {"name": self.name, "status": self._status.name, "exp_ref": self._exp_ref}

    def on_alyx(self, base_url: str | None, token: dict[str, Any]) -> tuple[str | None, Any] | None:
        """ALYX: a token sent (or requested, when empty); returns ``(base_url, token)`` or None."""
        return None

    # ------------------------------------------------------------------ state

    @property
    def status(self) -> ExpStatus:
        """The rig's current experiment status."""
        return self._status

    @property
    def exp_ref(self) -> str | None:
        """The reference of the current experiment (from the last EXPSTART)."""
        return self._exp_ref

    def handle(self, message: object, items: list[Any]) -> list[Any]:
        """Handle one message as if it came from the network; returns the reply items.

        Args:
            message: The message (enum, name or code).
            items: The payload items that follow the code on the wire.

        Raises:
            ProtocolError: The items do not fit the message.
            IllegalTransition: The current status does not allow the message.
            Exception: Whatever the handler raised.
        """
        kind = parse_message(message)
        payload = payload_from_items(kind, list(items))
        with self._lock:
            following = next_status(self._status, kind)
            result = self._dispatch(payload)
            self._status = following
            if isinstance(payload, Start):
                self._exp_ref = payload.exp_ref
            self.handled += 1
            return self._reply_items(payload, following, result)

    def _dispatch(self, payload: Payload) -> Any:
        match payload:
            case Init(data=data):
                return self.on_init(data)
            case Start(exp_ref=exp_ref, data=data):
                return self.on_start(exp_ref, data)
            case End(data=data):
                return self.on_end(data)
            case Interrupt(data=data):
                return self.on_interrupt(data)
            case Cleanup(data=data):
                return self.on_cleanup(data)
            case Status(status=status):
                return self.on_status(status)
            case Info(status=status, data=data):
                return self.on_info(status, data)
            case Alyx(base_url=base_url, token=token):
                return self.on_alyx(base_url, dict(token or {}))
        raise ProtocolError(f"no handler for {type(payload).__name__}")

    def _reply_items(self, payload: Payload, status: ExpStatus, result: Any) -> list[Any]:
        data = int(status) if result is None else result
        if isinstance(payload, Start):
            return [payload.exp_ref, data]
        if isinstance(payload, Status):
            return [int(status)]
        if isinstance(payload, Info):
            return [int(status), result]
        if isinstance(payload, Alyx):
            base_url, token = result if result is not None else (None, {})
            return [base_url, token]
        return [data]

    def _handle_code(self, code: int, items: list[Any]) -> list[Any]:
        if not isinstance(items, list):
            raise ProtocolError(f"items must be a list, got {type(items).__name__}")
        try:
            return self.handle(code, items)
        except ConfigurationError as exc:
            self.refused += 1
            raise ProtocolError(str(exc)) from None
        except Exception:
            self.refused += 1
            raise

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RigService:
        """Start listening on the configured links (and register, if asked); returns self.

        Raises:
            EndpointError: An address cannot be bound (e.g. the UDP port is taken).
            LabwireError: The registry refused the registration.
        """
        if self._thread is not None or self._rpc is not None:
            raise RuntimeError("rig service already started")
        try:
            if self._url is not None:
                options: dict[str, Any] = {"alive_timeout": self._alive_timeout}
                if self._settings is not None:
                    options["settings"] = self._settings
                self._rpc = _RigServer(self._handle_code, self._url, **options)
                self._rpc.start()
                self.endpoint = self._rpc.advertised_endpoint()
            if self._udp_address is not None:
                self._start_udp()
            if self._registry_url is not None:
                self.register(self._registry_url)
        except BaseException:
            self.close()
            raise
        return self

    def register(self, registry_url: str, overwrite: bool = True, timeout: float = 5.0) -> str:
        """Register this rig (type ``"rig"``) in a labwire registry; returns the accepted name.

        Raises:
            ConfigurationError: The service has no labwire link (``url=None``).
            LabwireError: The registry refused or could not be reached.
        """
        if self._rpc is None:
            raise ConfigurationError("only a rig service with a labwire link (url=) can register")
        self.name = self._rpc.register_to_registry(
            "rig", self.name, registry_url, overwrite, timeout=timeout
        )
        return self.name

    def close(self) -> None:
        """Stop both links (and unregister); returns within about a second."""
        rpc, self._rpc = self._rpc, None
        if rpc is not None:
            rpc.close()
        loop, stop = self._loop, self._stop_udp
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(1.0)
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> RigService:
        if self._thread is None and self._rpc is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ UDP link

    def _start_udp(self) -> None:
        # Handlers of UDP messages run here, one at a time (they share the handler lock with
        # the RPC side anyway); a stuck handler never holds up close().
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"labwire-rig-{self.name}")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve_udp, args=(ready, failure), name=f"labwire-rig-{self.name}"
        )
        self._thread.daemon = True
        self._thread.start()
        if not ready.wait(5.0):
            raise EndpointError(f"UDP link of rig {self.name!r} did not start")
        if failure:
            self._thread.join(1.0)
            self._thread = None
            address = self._udp_address
            assert address is not None
            raise EndpointError(f"cannot listen on {address.url}: {failure[0]}") from failure[0]

    def _serve_udp(self, ready: threading.Event, failure: list[BaseException]) -> None:
        try:
            asyncio.run(self._udp_main(ready, failure))
        finally:
            ready.set()

    async def _udp_main(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.get_running_loop()
        address = self._udp_address
        assert address is not None
        stop = asyncio.Event()
        try:
            _, endpoint = await loop.create_datagram_endpoint(
                lambda: EchoEndpoint(self._on_datagram, self.name),
                local_addr=(address.host, address.port),
            )
        except OSError as exc:
            failure.append(exc)
            return
        self._loop, self._stop_udp, self._udp = loop, stop, endpoint
        host, port = endpoint.local_address
        self.udp_endpoint = f"udp://{host}:{port}"
        ready.set()
        try:
            await stop.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=1.0)
            endpoint.close()
            self._loop = None

    def _on_datagram(self, datagram: Datagram | ProtocolError, data: bytes, addr: Address) -> None:
        endpoint = self._udp
        assert endpoint is not None
        if isinstance(datagram, ProtocolError):
            self.refused += 1
            endpoint.send(encode_error("ProtocolError", str(datagram), 0), addr)
            return
        if datagram.is_error:
            error_type, text, code = datagram.error
            _log.warning(
                "[%s] %s:%s reported %s: %s (code %s)", self.name, *addr, error_type, text, code
            )
            return
        if datagram.message is None:
            self.refused += 1
            known = ", ".join(f"{m.name}={int(m)}" for m in ExpMessage)
            message = f"unknown message code {datagram.code} (known: {known})"
            endpoint.send(encode_error("ProtocolError", message, datagram.code), addr)
            return
        endpoint.begin(data, addr)
        task = asyncio.get_running_loop().create_task(self._answer(datagram, data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, datagram: Datagram, data: bytes, addr: Address) -> None:
        endpoint = self._udp
        assert endpoint is not None
        try:
            items = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._handle_code, datagram.code, list(datagram.items)
            )
            reply = encode_datagram(datagram.code, items)
        except Exception as exc:
            _log.info("[%s] refused %s from %s: %s", self.name, datagram.code, addr, exc)
            endpoint.send(encode_error(type(exc).__name__, str(exc), datagram.code), addr)
            return
        finally:
            # Resends of the request are only echoed while it is handled. From the reply on,
            # the same bytes are a new request: a coordinator may send it again as soon as it
            # has the reply, before this reply's confirmation has been processed here.
            endpoint.done(data, addr)
        deadline = asyncio.get_running_loop().time() + self.reply_timeout
        if not await endpoint.confirmed_send(reply, addr, deadline):
            _log.warning(
                "[%s] %s:%s did not confirm the reply to code %d within %.1f s",
                self.name,
                *addr,
                datagram.code,
                self.reply_timeout,
            )
