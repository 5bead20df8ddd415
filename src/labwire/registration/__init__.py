"""Registering a device with a registry: the client side of the registry protocol.

Below both :mod:`labwire.rpc` (whose servers register themselves) and :mod:`labwire.registry`
(which re-exports these names next to the registry service and its clients):

* :func:`register_device`, :func:`unregister_device`, :func:`send_alive_check`: the seed's
  one-shot device calls (:mod:`~labwire.registration.calls`).
* :class:`RegistrationKeeper`: registers a device and keeps it registered (renewals,
  re-registration after a registry restart, unregistration on stop)
  (:mod:`~labwire.registration.keeper`).
* :class:`RequestChannel`, :class:`Waker`, :func:`read_reply`: one request at a time to a
  registry, interruptible, replies matched by request id (:mod:`~labwire.registration.channel`).
"""

from labwire.registration.calls import (
    CALL_TIMEOUT,
    as_transport,
    register_device,
    send_alive_check,
    unregister_device,
)
from labwire.registration.channel import (
    HANDSHAKE_CHECK_SECONDS,
    Interrupted,
    RequestChannel,
    Waker,
    read_reply,
)
from labwire.registration.keeper import RegistrationKeeper

__all__ = [
    "CALL_TIMEOUT",
    "HANDSHAKE_CHECK_SECONDS",
    "Interrupted",
    "RegistrationKeeper",
    "RequestChannel",
    "Waker",
    "as_transport",
    "read_reply",
    "register_device",
    "send_alive_check",
    "unregister_device",
]
