"""What an RPC server answers: successes, failures and buffer results, as frames (no I/O).

A labwire request is answered with the labwire extension (request id, server incarnation,
error code); a deployed request with exactly the deployed reply.
"""

from __future__ import annotations

import traceback as tb
from typing import Any

from labwire.wire.codec import encode_json
from labwire.wire.rpc import (
    PROTOCOL_VERSION,
    ErrorCode,
    Request,
    encode_buffer_reply,
    encode_frames,
    reply_extension,
)

__all__ = ["Failure", "buffer_result", "error_frames", "handler_failure", "success"]

_ERROR_TYPES = {
    ErrorCode.NOT_FOUND: "NotFound",
    ErrorCode.BAD_REQUEST: "ProtocolError",
    ErrorCode.EXPIRED: "RequestExpired",
    ErrorCode.DENIED: "PermissionDenied",
    ErrorCode.STOPPING: "Unavailable",
}


class Failure(Exception):
    """An error reply decided while handling a request.

    Args:
        code: The error code sent to labwire clients.
        message: The error message.
        error_type: The exception type name clients see (default: the code's).
    """

    def __init__(self, code: ErrorCode, message: str, error_type: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.error_type = error_type or _ERROR_TYPES.get(code, "RemoteError")


def success(
    request: Request,
    server_id: str,
    fields: dict[str, Any],
    payload: dict[str, Any] | None = None,
    extension: dict[str, Any] | None = None,
) -> list[Any]:
    """A success reply: ``fields`` as they are, ``payload`` fields possibly holding buffers.

    Raises:
        Failure: The payload cannot be sent (the message names what).
    """
    header: dict[str, Any] = {"success": True, **fields}
    if request.is_labwire:
        header["lw"] = reply_extension(request, server_id, **(extension or {}))
    try:
        return encode_frames(header, payload)
    except TypeError as exc:
        raise Failure(ErrorCode.REMOTE, f"result cannot be sent: {exc}", "TypeError") from None


def error_frames(
    header: dict[str, Any] | None,
    request: Request | None,
    server_id: str,
    code: ErrorCode,
    exc: BaseException,
    error_type: str = "",
    traceback: str = "",
) -> list[Any]:
    """An error reply to ``request``, or to a message refused before it was one.

    Args:
        header: The refused message's decoded header, if any (its claimed request id routes
            the refusal to the caller).
        request: The request, once parsed.
        server_id: This server's incarnation id.
        code: The error code.
        exc: The error.
        error_type: The exception type name clients see (default: the error's).
        traceback: The handler's traceback, for errors raised by a handler.
    """
    reply: dict[str, Any] = {"success": False, "error": str(exc), "traceback": traceback}
    labwire = request.is_labwire if request is not None else _claims_labwire(header)
    if labwire:
        rid = request.request_id if request is not None else _claimed_rid(header)
        error_type = error_type or getattr(exc, "error_type", "") or type(exc).__name__
        reply["lw"] = {
            "v": PROTOCOL_VERSION,
            "rid": rid,
            "sid": server_id,
            "code": str(code),
            "etype": error_type,
        }
    return [encode_json(reply)]


def handler_failure(request: Request, server_id: str, exc: Exception) -> list[Any]:
    """The reply to a request whose handler (or its reply's encoding) raised ``exc``."""
    if isinstance(exc, Failure):
        return error_frames(None, request, server_id, exc.code, exc)
    trace = "".join(tb.format_exception(exc))
    return error_frames(None, request, server_id, ErrorCode.REMOTE, exc, type(exc).__name__, trace)


def buffer_result(request: Request, server_id: str, result: Any) -> list[Any]:
    """The reply to a buffer method that returned ``result`` (it must be ``(buffer, dict)``).

    Raises:
        Failure: ``result`` has the wrong shape, or its info cannot be sent.
    """
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise Failure(
            ErrorCode.REMOTE,
            f"buffer method {request.name!r} must return (buffer, dict), "
            f"got {type(result).__name__}",
            "TypeError",
        )
    buffer, info = result
    if request.is_labwire:
        if isinstance(buffer, (bytes, bytearray)):
            buffer = memoryview(buffer)
        try:  # what success() writes for this payload, with less glue
            return encode_buffer_reply(request, server_id, buffer, info)
        except TypeError as exc:
            raise Failure(ErrorCode.REMOTE, f"result cannot be sent: {exc}", "TypeError") from None
    try:
        return [encode_json(info), memoryview(buffer)]
    except TypeError as exc:
        raise Failure(ErrorCode.REMOTE, f"buffer method result: {exc}", "TypeError") from None


def _claims_labwire(header: dict[str, Any] | None) -> bool:
    return isinstance(header, dict) and isinstance(header.get("lw"), dict)


def _claimed_rid(header: dict[str, Any] | None) -> int | None:
    if not _claims_labwire(header):
        return None
    assert header is not None
    rid = header["lw"].get("rid")
    return rid if isinstance(rid, int) and not isinstance(rid, bool) else None
