"""Registry frames: encode and decode requests, replies and published events (one JSON frame each).

Decoding checks every field and raises one :class:`~labwire.errors.ProtocolError` (or
:class:`~labwire.wire.registry.messages.RequestRejected` for a request that deserves an answer)
for anything else; the format is in :mod:`labwire.wire.registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labwire.errors import ProtocolError
from labwire.wire.codec import decode_json, encode_json
from labwire.wire.limits import Limits
from labwire.wire.registry.messages import (
    MAX_ADDRESS_CHARS,
    MAX_INCARNATION_CHARS,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    MAX_UUID_CHARS,
    REGISTRY_PROTOCOL_VERSION,
    Ack,
    ChangeKind,
    CheckAliveRequest,
    DeviceEvent,
    DeviceInfo,
    DeviceListing,
    EventType,
    ExtensionEvent,
    ListDevicesRequest,
    RegisterAck,
    RegisterRequest,
    RegistryHeartbeat,
    RegistryReply,
    RegistryRequest,
    RequestMeta,
    RequestRejected,
    UnregisterRequest,
    Unsupported,
    _alive_timeout,
    _device_name,
    _flag,
    _integer,
    _number,
    _public_key,
    _text,
)


def _message(data: bytes | bytearray | memoryview, limits: Limits) -> dict[str, Any]:
    message = decode_json(data, limits)
    if not isinstance(message, dict):
        raise ProtocolError(
            f"a registry message must be a JSON object, got {type(message).__name__}"
        )
    return message


def _payload(message: Mapping[str, Any], what: str) -> dict[str, Any]:
    payload = message.get("payload", {})
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ProtocolError(f"field 'payload' of {what} must be an object")
    return payload


def _meta(message: Mapping[str, Any]) -> RequestMeta | None:
    extension = message.get("lw")
    if extension is None:
        return None
    if not isinstance(extension, dict):
        raise ProtocolError("field 'lw' must be an object")
    version = extension.get("v")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ProtocolError("field 'lw.v' must be a positive integer")
    request_id = extension.get("rid")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, int)):
        raise ProtocolError("field 'lw.rid' must be an integer")
    return RequestMeta(version, request_id)


# --------------------------------------------------------------------------- requests


def encode_request(request: RegistryRequest, request_id: int | None = None) -> bytes:
    """Encode a request as one JSON frame.

    Args:
        request: The request.
        request_id: When given, the labwire extension ``"lw"`` is added with this id; leave it
            out to send exactly what a deployed device sends (plus REGISTER's extra fields).

    Returns:
        The frame.
    """
    payload: dict[str, Any]
    if isinstance(request, RegisterRequest):
        event: str = EventType.REGISTER
        payload = {
            "device_type": request.device_type,
            "addr": request.addr,
            "name": request.name,
            "overwrite": request.overwrite,
        }
        if request.incarnation:
            payload["incarnation"] = request.incarnation
        if request.alive_timeout is not None:
            payload["alive_timeout"] = request.alive_timeout
        if request.public_key:
            payload["public_key"] = request.public_key
    elif isinstance(request, UnregisterRequest):
        event, payload = EventType.UNREGISTER, {"uuid": request.uuid}
    elif isinstance(request, CheckAliveRequest):
        event, payload = EventType.CHECK_ALIVE, {"uuid": request.uuid}
        if request.alive_timeout is not None:
            payload["alive_timeout"] = request.alive_timeout
    else:
        event, payload = ExtensionEvent.LIST_DEVICES, {}
        if request.name is not None:
            payload["name"] = request.name
        if request.device_type is not None:
            payload["device_type"] = request.device_type
    message: dict[str, Any] = {"event": event, "payload": payload}
    if request_id is not None:
        message["lw"] = {"v": REGISTRY_PROTOCOL_VERSION, "rid": request_id}
    return encode_json(message)


def decode_request(
    data: bytes | bytearray | memoryview, limits: Limits
) -> tuple[RegistryRequest, RequestMeta | None]:
    """Decode and validate one request frame.

    Args:
        data: The frame.
        limits: Limits to enforce while decoding.

    Returns:
        The request and its labwire extension (None for a deployed sender).

    Raises:
        RequestRejected: The frame is not a valid request; ``req_event`` and ``meta`` say
            what could be read of it, so an error reply can still be routed and matched.
    """
    try:
        message = _message(data, limits)
    except ProtocolError as exc:
        raise RequestRejected(str(exc), None, None) from None
    event = message.get("event")
    try:
        meta = _meta(message)
    except ProtocolError as exc:
        raise RequestRejected(str(exc), event if isinstance(event, str) else None, None) from None
    if not isinstance(event, str):
        raise RequestRejected("a registry request needs an 'event' string", None, meta)
    try:
        return _parse_request(event, message), meta
    except ProtocolError as exc:
        raise RequestRejected(str(exc), event[:64], meta) from None


def _parse_request(event: str, message: Mapping[str, Any]) -> RegistryRequest:
    if event == EventType.REGISTER:
        payload = _payload(message, event)
        return RegisterRequest(
            device_type=_device_name(payload, "device_type", event, required=True),
            addr=_text(payload, "addr", MAX_ADDRESS_CHARS, event),
            name=_device_name(payload, "name", event, required=False),
            overwrite=_flag(payload, "overwrite", event),
            incarnation=_text(payload, "incarnation", MAX_INCARNATION_CHARS, event, default=""),
            alive_timeout=_alive_timeout(payload, event),
            public_key=_public_key(payload, event),
        )
    if event == EventType.UNREGISTER:
        payload = _payload(message, event)
        return UnregisterRequest(_text(payload, "uuid", MAX_UUID_CHARS, event))
    if event == EventType.CHECK_ALIVE:
        payload = _payload(message, event)
        return CheckAliveRequest(
            _text(payload, "uuid", MAX_UUID_CHARS, event), _alive_timeout(payload, event)
        )
    if event == ExtensionEvent.LIST_DEVICES:
        payload = _payload(message, event)
        name = payload.get("name")
        device_type = payload.get("device_type")
        return ListDevicesRequest(
            None if name is None else _text(payload, "name", MAX_NAME_CHARS, event),
            None if device_type is None else _text(payload, "device_type", MAX_NAME_CHARS, event),
        )
    raise ProtocolError(f"unsupported registry event {event[:64]!r}")


# --------------------------------------------------------------------------- replies


def encode_reply(reply: RegistryReply, meta: RequestMeta | None = None) -> bytes:
    """Encode a reply as one JSON frame.

    Args:
        reply: The reply.
        meta: The labwire extension of the request being answered; when given, ``"lw"`` with
            the same request id is added. Deployed requesters get exactly the deployed reply
            fields (plus ``reason``/``error`` on failures).

    Returns:
        The frame.
    """
    message: dict[str, Any]
    if isinstance(reply, RegisterAck):
        message = {
            "event": EventType.REGISTER_ACK,
            "payload": {"name": reply.name, "uuid": reply.uuid},
        }
    elif isinstance(reply, Ack):
        payload: dict[str, Any] = {"req_event": reply.req_event, "success": reply.success}
        if reply.reason:
            payload["reason"] = reply.reason
        message = {"event": EventType.ACK, "payload": payload}
    elif isinstance(reply, DeviceListing):
        message = {
            "event": EventType.ACK,
            "payload": {
                "req_event": ExtensionEvent.LIST_DEVICES,
                "success": True,
                "devices": reply.devices,
                "registry_id": reply.registry_id,
                "seq": reply.seq,
                "event_port": reply.event_port,
                "heartbeat_interval": reply.heartbeat_interval,
                "version": reply.version,
            },
        }
    else:
        payload = {"req_event": reply.req_event}
        if reply.error:
            payload["error"] = reply.error
        message = {"event": EventType.UNSUPPORTED, "payload": payload}
    if meta is not None:
        message["lw"] = {"v": REGISTRY_PROTOCOL_VERSION, "rid": meta.request_id}
    return encode_json(message)


def decode_reply(
    data: bytes | bytearray | memoryview, limits: Limits
) -> tuple[RegistryReply, int | None]:
    """Decode and validate one reply frame.

    Args:
        data: The frame.
        limits: Limits to enforce while decoding.

    Returns:
        The reply and the request id it answers (None from a deployed registry).

    Raises:
        ProtocolError: The frame is not a valid registry reply.
    """
    message = _message(data, limits)
    meta = _meta(message)
    request_id = meta.request_id if meta is not None else None
    event = message.get("event")
    payload = _payload(message, "a reply")
    if event == EventType.REGISTER_ACK:
        name = _text(payload, "name", MAX_NAME_CHARS, event)
        uuid = _text(payload, "uuid", MAX_UUID_CHARS, event)
        return RegisterAck(name, uuid), request_id
    if event == EventType.ACK:
        req_event = _text(payload, "req_event", 64, event, default="")
        success = _flag(payload, "success", event)
        if req_event == ExtensionEvent.LIST_DEVICES and success:
            return _parse_listing(payload), request_id
        reason = _text(payload, "reason", MAX_REASON_CHARS, event, default="")
        return Ack(req_event, success, reason), request_id
    if event == EventType.UNSUPPORTED:
        sent_event = payload.get("req_event")
        error = payload.get("error", "")
        return Unsupported(
            sent_event if isinstance(sent_event, str) else None,
            error if isinstance(error, str) else "",
        ), request_id
    raise ProtocolError(f"unexpected registry reply event {str(event)[:64]!r}")


def _parse_listing(payload: Mapping[str, Any]) -> DeviceListing:
    devices = payload.get("devices")
    if not isinstance(devices, list):
        raise ProtocolError("a device listing needs a 'devices' list")
    event_port = _integer(payload, "event_port", "a device listing")
    if not 0 <= event_port <= 65535:
        raise ProtocolError("field 'event_port' of a device listing is out of range")
    return DeviceListing(
        devices=tuple([DeviceInfo.from_json(item) for item in devices]),
        registry_id=_text(payload, "registry_id", MAX_INCARNATION_CHARS, "a device listing"),
        seq=_integer(payload, "seq", "a device listing"),
        event_port=event_port,
        heartbeat_interval=_number(payload, "heartbeat_interval", "a device listing", 1.0),
        version=_integer(payload, "version", "a device listing"),
    )


# --------------------------------------------------------------------------- events


def encode_event(event: DeviceEvent | RegistryHeartbeat) -> bytes:
    """Encode a published event or heartbeat as one JSON frame."""
    if isinstance(event, RegistryHeartbeat):
        return encode_json(
            {
                "event": ExtensionEvent.HEARTBEAT,
                "payload": {
                    "registry_id": event.registry_id,
                    "seq": event.seq,
                    "interval": event.interval,
                },
            }
        )
    payload: dict[str, Any] = {
        "registry_id": event.registry_id,
        "seq": event.seq,
        "device": event.device,
    }
    if event.kind == ChangeKind.REMOVED:
        payload["reason"] = event.reason
    name = (
        ExtensionEvent.DEVICE_ADDED
        if event.kind == ChangeKind.ADDED
        else (ExtensionEvent.DEVICE_REMOVED)
    )
    return encode_json({"event": name, "payload": payload})


def decode_event(
    data: bytes | bytearray | memoryview, limits: Limits
) -> DeviceEvent | RegistryHeartbeat:
    """Decode and validate one published frame.

    Raises:
        ProtocolError: The frame is not a valid registry event.
    """
    message = _message(data, limits)
    event = message.get("event")
    payload = _payload(message, "an event")
    registry_id = _text(payload, "registry_id", MAX_INCARNATION_CHARS, "an event")
    seq = _integer(payload, "seq", "an event")
    if event == ExtensionEvent.HEARTBEAT:
        return RegistryHeartbeat(registry_id, seq, _number(payload, "interval", "a heartbeat"))
    if event == ExtensionEvent.DEVICE_ADDED:
        kind = ChangeKind.ADDED
    elif event == ExtensionEvent.DEVICE_REMOVED:
        kind = ChangeKind.REMOVED
    else:
        raise ProtocolError(f"unknown registry event {str(event)[:64]!r}")
    reason = _text(payload, "reason", 64, "an event", default="")
    return DeviceEvent(kind, DeviceInfo.from_json(payload.get("device")), registry_id, seq, reason)
