"""What a client asks of a server's operations: start, attach, list and cancel.

:class:`OperationRequests` builds these requests and reads their replies; it holds no I/O.
:class:`OperationCalls` sends them through the sync client's ``_request`` and gives
:class:`~labwire.rpc.operations.OperationHandle` objects; :class:`AsyncOperationCalls` awaits
the asyncio client's ``_request`` and gives
:class:`~labwire.rpc.operations.AsyncOperationHandle` objects. The clients derive from these,
so each request is written once per kind of I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from labwire.errors import NotFound, ProtocolError
from labwire.rpc.base import _DEFAULT, ClientBase, Reply
from labwire.rpc.operations import AsyncOperationHandle, OperationHandle, OperationLost
from labwire.wire.operations import OperationInfo, Update, decode_info
from labwire.wire.rpc import ExtensionEvents

__all__ = ["AsyncOperationCalls", "OperationCalls", "OperationRequests"]

#: The deadline of one operation request when the client has no default timeout.
_OPERATION_REQUEST_MS = 2000


class OperationRequests(ClientBase):
    """The operation requests' fields and the reading of their replies."""

    def _operation_start(
        self, method_name: str, args: tuple[Any, ...], kwargs: dict[str, Any], deadline: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The fields and payload of an OP_START (``deadline`` in s; default: the method's)."""
        if not self.is_labwire_server:
            raise NotFound("", f"{self.url} is a deployed server: it runs no operations")
        if deadline is _DEFAULT:
            declared = self._json_methods.get(method_name)
            deadline_ms = declared
        else:
            deadline_ms = None if deadline is None else deadline * 1000.0
        fields = {"method": method_name, "deadline": deadline_ms}
        return fields, {"params": {"args": list(args), "kwargs": kwargs}}

    def _operation_timeout(self) -> int:
        """The deadline of one operation request (an OP_* event), in ms."""
        return self.timeout if self.timeout is not None else _OPERATION_REQUEST_MS

    def _started(self, reply: Reply) -> OperationInfo:
        """The operation an OP_START reply describes.

        Raises:
            RemoteError: The server refused to start it.
        """
        header, _ = self._operation_reply(reply)
        return decode_info(header.get("op"))

    def _operation_reply(self, reply: Reply) -> tuple[dict[str, Any], list[memoryview]]:
        failure = self._failure(reply)
        if failure is not None:
            raise failure.exception()
        return reply.header, reply.buffers

    def _operation_info(self, reply: Reply) -> OperationInfo:
        """The operation an OP_POLL or OP_CANCEL reply describes.

        Raises:
            OperationLost: The server does not know it.
        """
        failure = self._failure(reply)
        if failure is not None:
            raise OperationLost(failure.error)
        return decode_info(reply.header.get("op"))

    def _operation_list(self, reply: Reply) -> list[OperationInfo]:
        """The operations an OP_LIST reply lists."""
        header, _ = self._operation_reply(reply)
        ops = header.get("ops")
        if not isinstance(ops, list):
            raise ProtocolError("OP_LIST reply needs an 'ops' list")
        return [decode_info(op) for op in ops]


class OperationCalls(OperationRequests):
    """The sync client's operation calls."""

    #: The client's request: ``(event, fields, payload, timeout_ms)`` to its reply.
    _request: Callable[..., Reply]

    def start_operation(
        self,
        method_name: str,
        *args: Any,
        deadline: Any = _DEFAULT,
        on_progress: Callable[[Update], Any] | None = None,
        **kwargs: Any,
    ) -> OperationHandle:
        """Start a method the server declares as an operation, and watch it.

        Args:
            method_name: The operation's method.
            *args: Its positional arguments.
            deadline: Seconds it may run before the server cancels it; None: no limit;
                default: the method's declared timeout.
            on_progress: Called with each :class:`~labwire.wire.operations.Update`, in order.
            **kwargs: Its keyword arguments (``deadline`` and ``on_progress`` are taken).

        Returns:
            The handle: ``progress``, ``result(timeout)``, ``cancel()``, ``id``.

        Raises:
            NotFound: No such method on the server, or it is no operation.
            RemoteError: The server refused to start it.
        """
        fields, payload = self._operation_start(method_name, args, kwargs, deadline)
        reply = self._request(ExtensionEvents.OP_START, fields, payload, self._operation_timeout())
        return OperationHandle(self, self._started(reply), on_progress)

    def attach_operation(
        self, operation_id: str, on_progress: Callable[[Update], Any] | None = None
    ) -> OperationHandle:
        """Watch an operation started elsewhere (another client or process) by its id.

        Raises:
            OperationLost: The server does not know it (it restarted, or the id is wrong).
        """
        fields = {"op": operation_id, "after": 0}
        reply = self._request(ExtensionEvents.OP_POLL, fields, None, self._operation_timeout())
        return OperationHandle(self, self._operation_info(reply), on_progress)

    def operations(self) -> list[OperationInfo]:
        """The server's running operations and those that ended recently."""
        reply = self._request(ExtensionEvents.OP_LIST, {}, None, self._operation_timeout())
        return self._operation_list(reply)

    def cancel_operation(
        self, operation_id: str, reason: str = "cancelled by a client"
    ) -> OperationInfo:
        """Cancel an operation by id (from any client); returns what the server says of it.

        Raises:
            OperationLost: The server does not know it.
        """
        fields = {"op": operation_id, "reason": reason[:256]}
        reply = self._request(ExtensionEvents.OP_CANCEL, fields, None, self._operation_timeout())
        return self._operation_info(reply)

    def _operation_request(
        self, event: str, fields: dict[str, Any]
    ) -> tuple[dict[str, Any], list[memoryview], dict[str, Any]]:
        """An OP_POLL or OP_CANCEL: the reply's header, buffers and ``"lw"`` object."""
        reply = self._request(event, fields, None, self._operation_timeout())
        return reply.header, reply.buffers, reply.extension


class AsyncOperationCalls(OperationRequests):
    """The asyncio client's operation calls."""

    #: The client's request: ``(event, fields, payload, timeout_ms)`` to its reply.
    _request: Callable[..., Awaitable[Any]]

    async def start_operation(
        self,
        method_name: str,
        *args: Any,
        deadline: Any = _DEFAULT,
        on_progress: Callable[[Update], Any] | None = None,
        **kwargs: Any,
    ) -> AsyncOperationHandle:
        """Start an operation and watch it; see :meth:`labwire.rpc.RPCClient.start_operation`.

        Iterate the handle (``async for update in handle``) for its progress updates.
        """
        fields, payload = self._operation_start(method_name, args, kwargs, deadline)
        timeout = self._operation_timeout()
        reply = await self._request(ExtensionEvents.OP_START, fields, payload, timeout)
        return AsyncOperationHandle(self, self._started(reply), on_progress)

    async def attach_operation(
        self, operation_id: str, on_progress: Callable[[Update], Any] | None = None
    ) -> AsyncOperationHandle:
        """Watch an operation started elsewhere by its id.

        Raises:
            OperationLost: The server does not know it.
        """
        fields = {"op": operation_id, "after": 0}
        timeout = self._operation_timeout()
        reply = await self._request(ExtensionEvents.OP_POLL, fields, None, timeout)
        return AsyncOperationHandle(self, self._operation_info(reply), on_progress)

    async def operations(self) -> list[OperationInfo]:
        """The server's running operations and those that ended recently."""
        reply = await self._request(ExtensionEvents.OP_LIST, {}, None, self._operation_timeout())
        return self._operation_list(reply)

    async def cancel_operation(
        self, operation_id: str, reason: str = "cancelled by a client"
    ) -> OperationInfo:
        """Cancel an operation by id; returns what the server says of it.

        Raises:
            OperationLost: The server does not know it.
        """
        fields = {"op": operation_id, "reason": reason[:256]}
        timeout = self._operation_timeout()
        reply = await self._request(ExtensionEvents.OP_CANCEL, fields, None, timeout)
        return self._operation_info(reply)

    async def _operation_request(
        self, event: str, fields: dict[str, Any]
    ) -> tuple[dict[str, Any], list[memoryview], dict[str, Any]]:
        """An OP_POLL or OP_CANCEL: the reply's header, buffers and ``"lw"`` object."""
        reply = await self._request(event, fields, None, self._operation_timeout())
        return reply.header, reply.buffers, reply.extension
