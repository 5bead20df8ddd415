"""The seed's device-side calls: register, unregister and renew with one request each.

Each call opens a short-lived connection to the registry, sends one request and waits a bounded
time for the reply, so it never blocks for ever. They speak the deployed protocol, so they work
against a labwire :class:`~labwire.registry.DeviceRegistry` and a deployed registry alike. A
device that must stay registered should use :class:`~labwire.registry.RegistrationKeeper`,
which renews its lease and re-registers by itself.

With security on (``Settings.security`` of the transport, holding the registry's public key as
``server_key``), the calls run over CurveZMQ: a refused handshake raises
:class:`~labwire.errors.AuthenticationError` at once instead of looking like an unreachable
registry, and :func:`register_device` publishes the device's public key (see
:mod:`labwire.wire.registry`).
"""

from __future__ import annotations

import logging
from typing import Any

from labwire.config import Settings
from labwire.errors import ConfigurationError, RegistryError, Unavailable
from labwire.registration.channel import RequestChannel
from labwire.transport import Context, Transport
from labwire.wire.registry import (
    ALIVE_TIMEOUT,
    Ack,
    AliveCheckState,
    CheckAliveRequest,
    RegisterAck,
    RegisterRequest,
    RegistryReply,
    RegistryRequest,
    UnregisterRequest,
    device_name_problem,
)

__all__ = [
    "CALL_TIMEOUT",
    "as_transport",
    "register_device",
    "send_alive_check",
    "unregister_device",
]

_log = logging.getLogger(__name__)

#: Seconds each call waits for the registry, as in the seed.
CALL_TIMEOUT = 5.0


def as_transport(
    context: Context[Any] | Transport | None, settings: Settings | None = None
) -> Transport:
    """A socket factory from what a seed-style call was given.

    Args:
        context: A ZeroMQ context, a :class:`~labwire.transport.Transport`, or None for the
            process-wide context.
        settings: Settings when ``context`` is not already a Transport.
    """
    if isinstance(context, Transport):
        return context
    return Transport(context, settings)


def own_public_key(transport: Transport, public_key: str | None) -> str:
    """The public key a registration publishes: ``public_key``, or the transport's own.

    Args:
        transport: The registering process's socket factory.
        public_key: An explicit key ("" publishes none), or None for the public key of the
            transport's security settings (none without security).
    """
    if public_key is not None:
        return public_key
    security = transport.security
    return "" if security is None else security.public_key or ""


def check_registration(device_type: str, name: str) -> None:
    """Refuse, at the caller, a device type or proposed name that breaks the name rule.

    The rule is in :mod:`labwire.wire.registry`; an empty name asks the registry for one.

    Raises:
        ConfigurationError: ``device_type`` or ``name`` breaks the rule (the message says how).
    """
    for what, value in (("device type", device_type), ("device name", name)):
        problem = device_name_problem(value) if value else None
        if problem is not None:
            raise ConfigurationError(f"{what} {value!r} {problem}")


def exchange(
    transport: Transport, registry_url: str, request: RegistryRequest, timeout: float
) -> RegistryReply:
    """Send one request on a fresh connection and return the reply.

    Raises:
        Unavailable: The registry is not reachable or did not answer within ``timeout``.
        RegistryError: The registry answered with something that is not a registry reply.
    """
    channel = RequestChannel(transport, registry_url)
    try:
        return channel.request(request, timeout)
    finally:
        channel.close()


def register_device(
    context: Context[Any] | Transport | None,
    device_type: str,
    addr: str,
    name: str,
    registry_url: str,
    overwrite: bool = False,
    *,
    timeout: float = CALL_TIMEOUT,
    public_key: str | None = None,
) -> tuple[str, str] | str:
    """Register device of type ``device_type`` at address ``addr`` with the registry.

    Proposes ``name``; the registry may grant another one (see the naming rule in
    :mod:`labwire.wire.registry`). The lease lasts the registry's default alive timeout
    (20 s) unless renewed with :func:`send_alive_check`.

    Args:
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        device_type: The device type, e.g. ``"camera"``.
        addr: The device's full endpoint, e.g. ``"tcp://10.0.0.7:5000"``.
        name: The proposed name ("" asks for ``<device_type>-<n>``).
        registry_url: The registry endpoint, e.g. ``"tcp://10.0.0.1:5555"``.
        overwrite: Take the name over when another device holds it. With security on, a
            secured labwire registry allows it only for admin keys (and for the key that holds
            the name); a refusal is logged and "" returned.
        timeout: Seconds to wait for the registry.
        public_key: The device server's public key to publish ("" publishes none); None:
            the public key of the transport's security settings, when security is on.

    Returns:
        ``(accepted name, uuid)`` on success; keep the uuid to renew and unregister. An empty
        string when registration failed (registry unreachable or registration refused), as
        the seed documents.

    Raises:
        ConfigurationError: ``device_type`` or ``name`` breaks the device-name rule.
        EndpointError: ``registry_url`` is not a valid endpoint.
        AuthenticationError: Security is on and the registry refused the handshake.
    """
    check_registration(device_type, name)
    transport = as_transport(context)
    request = RegisterRequest(
        device_type, addr, name, overwrite, public_key=own_public_key(transport, public_key)
    )
    try:
        reply = exchange(transport, registry_url, request, timeout)
    except (Unavailable, RegistryError) as exc:
        _log.warning("registering %r with %s failed: %s", name, registry_url, exc)
        return ""
    if isinstance(reply, RegisterAck):
        return reply.name, reply.uuid
    detail = reply.reason if isinstance(reply, Ack) and reply.reason else reply
    _log.warning("registry %s refused to register %r: %s", registry_url, name, detail)
    return ""


def unregister_device(
    context: Context[Any] | Transport | None,
    uuid: str,
    registry_addr: str,
    *,
    timeout: float = CALL_TIMEOUT,
) -> bool:
    """Unregister the device holding ``uuid`` from the registry at ``registry_addr``.

    Args:
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        uuid: The uuid returned at registration.
        registry_addr: The registry endpoint.
        timeout: Seconds to wait for the registry.

    Returns:
        True only when the registry really removed the device; False when it did not know the
        uuid, refused, or could not be reached in time.

    Raises:
        EndpointError: ``registry_addr`` is not a valid endpoint.
        AuthenticationError: Security is on and the registry refused the handshake.
    """
    transport = as_transport(context)
    try:
        reply = exchange(transport, registry_addr, UnregisterRequest(uuid), timeout)
    except (Unavailable, RegistryError) as exc:
        _log.warning("unregistering from %s failed: %s", registry_addr, exc)
        return False
    return isinstance(reply, Ack) and reply.success


def send_alive_check(
    context: Context[Any] | Transport | None,
    uuid: str,
    registry_url: str,
    alive_timeout: float = ALIVE_TIMEOUT,
    *,
    timeout: float = CALL_TIMEOUT,
) -> AliveCheckState:
    """Renew the lease of ``uuid``: the registry keeps it for ``alive_timeout`` more seconds.

    Sends ``CHECK_ALIVE`` with the uuid and alive_timeout and waits for ``ACK``.

    Args:
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        uuid: The uuid returned at registration.
        registry_url: The registry endpoint.
        alive_timeout: Seconds the device promises to stay alive; the registry removes it if
            no renewal arrives within that time.
        timeout: Seconds to wait for the reply (the seed's fixed 5 s by default).

    Returns:
        :attr:`AliveCheckState.OK` (``'ok'``) when acknowledged; ``UNKNOWN`` (``'unknown'``)
        when the registry does not know the uuid (it restarted, or the lease expired or was
        taken over: register again) or answered anything else; ``UNREACHABLE``
        (``'unreachable'``) when no reply came in time. The members equal those strings.

    Raises:
        EndpointError: ``registry_url`` is not a valid endpoint.
        AuthenticationError: Security is on and the registry refused the handshake.
    """
    transport = as_transport(context)
    try:
        reply = exchange(
            transport, registry_url, CheckAliveRequest(uuid, float(alive_timeout)), timeout
        )
    except Unavailable:
        return AliveCheckState.UNREACHABLE
    except RegistryError as exc:
        _log.warning("alive check with %s failed: %s", registry_url, exc)
        return AliveCheckState.UNKNOWN
    if isinstance(reply, Ack) and reply.success:
        return AliveCheckState.OK
    return AliveCheckState.UNKNOWN
