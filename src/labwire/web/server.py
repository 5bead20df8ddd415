"""The dashboard's web server: one page, a websocket per page, and results too big for JSON.

Routes
------
``GET /``
    The page (``static/index.html``); ``/static/...`` its script and style sheet.
``GET /ws``
    A websocket. The server sends JSON messages (``registry``, ``device``, ``status``,
    ``property``, ``signal``, ``operations``, ``progress``, ``reply``); the page sends requests
    ``{"id": N, "op": "call", "device": D, "method": M, "args": [...], "kwargs": {...}}``,
    ``{"id": N, "op": "set", "device": D, "property": P, "value": V}`` and
    ``{"id": N, "op": "cancel", "device": D, "operation": OPERATION_ID}``, each answered by a
    ``reply`` with the same id: ``{"ok": true, "result": ...}`` (or ``"blob"`` for a buffer)
    or ``{"ok": false, "error": "..."}``. A bad request gets an error reply; it never ends the
    connection. A call of an operation (a long-running method) is started as one: until its
    reply, ``progress`` messages with the request's id give the operation's id and its
    progress (``fraction``, ``message``), at most every :data:`PROGRESS_INTERVAL` seconds.
``GET /blob/KEY``
    A buffer a method returned (an image is shown by the page, anything else downloaded). The
    last :data:`BLOBS_KEPT` buffers are kept.

Access
------
Bound to a loopback address, the server answers only requests whose ``Host`` is that address
(a web site that rebinds its DNS name to 127.0.0.1 gets nothing). Bound to any other address it
requires a random token, given in the address it prints (``?token=...``); the page passes it on.
The websocket refuses an ``Origin`` that is not the page's own, so no other site's page can
drive the devices through a visitor's browser.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import json
import logging
import math
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from labwire.config import Settings, default_settings
from labwire.errors import LabwireError
from labwire.web.hub import DeviceSession, Hub, Message, plain

__all__ = [
    "BLOBS_KEPT",
    "DEFAULT_BIND",
    "PROGRESS_INTERVAL",
    "Dashboard",
    "DashboardThread",
    "is_loopback",
    "parse_bind",
]

_log = logging.getLogger(__name__)

#: Where ``labwire dashboard`` listens unless told otherwise.
DEFAULT_BIND = "127.0.0.1:8765"

#: Buffers kept for the page to fetch (older ones are forgotten).
BLOBS_KEPT = 16

#: Seconds between two progress messages of an operation started from a page.
PROGRESS_INTERVAL = 0.1

#: The largest request a page may send, in bytes.
_MAX_REQUEST = 1 << 20

_STATIC = Path(__file__).with_name("static")

_IMAGE_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; port 0 picks a free one) as ``(host, port)``.

    Raises:
        ValueError: ``text`` is not ``HOST:PORT`` with a port from 0 to 65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"bad address {text!r}: expected HOST:PORT, e.g. {DEFAULT_BIND}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"bad host in {text!r}: expected HOST:PORT, e.g. {DEFAULT_BIND}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _media_type(data: bytes) -> str:
    for magic, media in _IMAGE_MAGIC.items():
        if data.startswith(magic):
            return media
    return "application/octet-stream"


class Dashboard:
    """The dashboard server over a registry, in the running event loop.

    Args:
        registry_url: The registry whose devices to show.
        host: The address to listen on.
        port: The port (0: a free one).
        settings: labwire settings for the clients (None: from the environment).
        token: The access token; None makes one when ``host`` is not a loopback address (a
            loopback-bound dashboard needs none). An empty string turns the token off.
        timeout: Seconds a registry query, a property read or write may take.
    """

    def __init__(
        self,
        registry_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        settings: Settings | None = None,
        token: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.registry_url = registry_url
        self.host = host
        self.port = port
        self.settings = settings or default_settings()
        if token is None:
            token = "" if is_loopback(host) else secrets.token_urlsafe(18)
        self.token = token
        self.hub = Hub(registry_url, self.settings, timeout)
        self._blobs: collections.OrderedDict[str, tuple[bytes, str, str]] = (
            collections.OrderedDict()
        )
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The page's address (with the token when one is required)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    async def start(self) -> str:
        """Listen, start following the registry, and return the page's address.

        Raises:
            OSError: The address cannot be bound (e.g. the port is taken).
        """
        app = web.Application(middlewares=[self._guard], client_max_size=_MAX_REQUEST)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/blob/{key}", self._blob)
        app.router.add_static("/static/", _STATIC)
        app.on_shutdown.append(self._close_sockets)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        self.hub.start()
        return self.url

    async def close(self) -> None:
        """Stop serving, close the pages' connections and every device client."""
        await self.hub.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -------------------------------------------------------------- access

    def _allowed_host(self, request: web.Request) -> bool:
        if self.token:
            return True
        host = urlsplit(f"//{request.host}").hostname or ""
        return is_loopback(host) or host == self.host.lower()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self._allowed_host(request):
            raise web.HTTPForbidden(text="this dashboard answers only on its own address\n")
        if self.token and not request.path.startswith("/static/"):
            given = request.query.get("token", "")
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                raise web.HTTPForbidden(
                    text="a token is required: open the address `labwire dashboard` printed\n"
                )
        response: web.StreamResponse = await handler(request)
        return response

    # -------------------------------------------------------------- routes

    async def _index(self, request: web.Request) -> web.StreamResponse:
        response = web.FileResponse(_STATIC / "index.html")
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' blob:; connect-src 'self'; "
            "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'"
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        found = self._blobs.get(request.match_info["key"])
        if found is None:
            raise web.HTTPNotFound(text="this result is no longer kept; call the method again\n")
        data, media, filename = found
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
        if not media.startswith("image/"):
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        return web.Response(body=data, content_type=media, headers=headers)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            raise web.HTTPForbidden(text="websocket from another site refused\n")
        socket = web.WebSocketResponse(heartbeat=20.0, max_msg_size=_MAX_REQUEST)
        await socket.prepare(request)
        self._sockets.add(socket)
        queue = self.hub.subscribe()
        sender = asyncio.get_running_loop().create_task(self._send_all(socket, queue))
        requests: set[asyncio.Task[None]] = set()
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                task = asyncio.get_running_loop().create_task(self._answer(message.data, queue))
                requests.add(task)
                task.add_done_callback(requests.discard)
        finally:
            self.hub.unsubscribe(queue)
            self._sockets.discard(socket)
            for task in [sender, *requests]:
                task.cancel()
            for task in [sender, *requests]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return socket

    async def _close_sockets(self, app: web.Application) -> None:
        for socket in list(self._sockets):
            await socket.close()

    @staticmethod
    async def _send_all(
        socket: web.WebSocketResponse, queue: asyncio.Queue[Message | None]
    ) -> None:
        while (message := await queue.get()) is not None:
            try:
                await socket.send_str(json.dumps(message))
            except ConnectionError:
                break
        await socket.close()

    # -------------------------------------------------------------- requests

    async def _answer(self, text: str, queue: asyncio.Queue[Message | None]) -> None:
        request_id: Any = None
        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            request_id = request.get("id")
            reply = await self._perform(request, _Progress(plain(request_id), queue))
        except (ValueError, TypeError, LabwireError) as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # the page must hear of any failure, and the server go on
            _log.exception("dashboard request %r failed", text[:200])
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        reply.update(type="reply", id=plain(request_id))
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(reply)

    async def _perform(self, request: dict[str, Any], progress: _Progress) -> Message:
        operation = request.get("op")
        session = self.hub.session(_text(request, "device"))
        client = session.client
        assert client is not None
        if operation == "set":
            name = _text(request, "property")
            async with session.requests:
                await client.set_property(name, request.get("value"))
            return {"ok": True, "result": None}
        if operation == "cancel":
            operation_id = _text(request, "operation")
            own = await session.operations_client()
            try:
                info = await own.cancel_operation(operation_id, "cancelled from the dashboard")
            finally:
                await own.aclose()
            session.operations_changed()
            return {"ok": True, "result": str(info.state)}
        if operation != "call":
            raise ValueError(f"unknown op {operation!r}: expected 'call', 'set' or 'cancel'")
        method = _text(request, "method")
        args = request.get("args", [])
        kwargs = request.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("'args' must be a list and 'kwargs' an object")
        if method in session.operation_methods and client.is_labwire_server:
            return await self._run_operation(session, method, args, kwargs, progress)
        async with session.requests:
            result = await client.call(method, *args, **kwargs)
        if method in session.buffer_methods and isinstance(result, tuple) and len(result) == 2:
            buffer, info = result
            try:
                data = memoryview(buffer).tobytes()  # bytes, or an array (raw images)
            except TypeError:
                data = None
            if data is not None:
                return {"ok": True, "result": plain(info), "blob": self._keep(method, data)}
        return {"ok": True, "result": plain(result)}

    @staticmethod
    async def _run_operation(
        session: DeviceSession,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        progress: _Progress,
    ) -> Message:
        """Start an operation, pass its progress on to the page, and answer with its result."""
        client = await session.operations_client()
        try:
            handle = await client.start_operation(method, *args, **kwargs)
            try:
                session.operations_changed()
                progress.send(handle.id, None, "started", force=True)
                async for update in handle:
                    progress.send(handle.id, update.fraction, update.message)
                result = await handle.result()
            finally:
                await handle.aclose()
                session.operations_changed()
        finally:
            await client.aclose()
        return {"ok": True, "result": plain(result), "operation": handle.id}

    def _keep(self, method: str, data: bytes) -> Message:
        media = _media_type(data)
        extension = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif"}.get(media, "bin")
        key = secrets.token_urlsafe(12)
        self._blobs[key] = (data, media, f"{method}.{extension}")
        while len(self._blobs) > BLOBS_KEPT:
            self._blobs.popitem(last=False)
        return {"key": key, "media": media, "bytes": len(data)}


class _Progress:
    """Sends a page the progress of the operation its request started (a few times a second)."""

    def __init__(self, request_id: Any, queue: asyncio.Queue[Message | None]) -> None:
        self._id = request_id
        self._queue = queue
        self._sent = -math.inf

    def send(
        self, operation: str, fraction: float | None, message: str, force: bool = False
    ) -> None:
        now = time.monotonic()
        if not force and now - self._sent < PROGRESS_INTERVAL:
            return
        self._sent = now
        update = {
            "type": "progress",
            "id": self._id,
            "operation": operation,
            "fraction": plain(fraction),
            "message": message,
        }
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(update)


def _text(request: dict[str, Any], field: str) -> str:
    value = request.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field!r} must be a non-empty string")
    return value


class DashboardThread:
    """A :class:`Dashboard` served by a thread of its own (for programs that are not asyncio).

    Starts at once; :attr:`url` is the page's address. Use :meth:`close` (or ``with``) to stop.

    Args:
        registry_url: The registry whose devices to show.
        host: The address to listen on.
        port: The port (0: a free one).
        settings: labwire settings for the clients (None: from the environment).
        token: The access token (see :class:`Dashboard`).
        timeout: Seconds a registry query, a property read or write may take.

    Raises:
        OSError: The address cannot be bound.
    """

    def __init__(
        self,
        registry_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        settings: Settings | None = None,
        token: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.dashboard = Dashboard(
            registry_url, host=host, port=port, settings=settings, token=token, timeout=timeout
        )
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="labwire-dashboard", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._failure is not None:
            self._thread.join()
            raise self._failure

    @property
    def url(self) -> str:
        """The page's address."""
        return self.dashboard.url

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.dashboard.start()
        except BaseException as exc:
            self._failure = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self.dashboard.close()

    def close(self) -> None:
        """Stop the server and wait for its thread (idempotent)."""
        stop = self._stop
        if stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(stop.set)
        self._thread.join()

    def __enter__(self) -> DashboardThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
