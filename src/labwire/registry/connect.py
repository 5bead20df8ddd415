"""Connect to a device by its registry name, and keep following it if it moves.

:func:`connect` looks the name up once and builds the RPC client on the address found. It also
hands the client a :class:`NameResolver` (its ``resolve=`` argument): whenever the client cannot
reach the server it asks the resolver, which looks the name up again, so a device that restarted
on another port or host is followed without recreating the client. The registry is consulted
only then, never on every call.

With security on, the registry also tells the device's public key (registered by the device
itself, see :class:`~labwire.registry.RegistrationKeeper`): :func:`connect` gives it to the
client as ``server_key``. A lab therefore configures keys once: every process knows the
registry's public key (``Security.server_key``) and its own keypair, and learns each device's
key from the registry, whose allow-list decides who may register and look names up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from labwire.config import Settings
from labwire.registration import as_transport
from labwire.registry.client import QUERY_TIMEOUT, RegistryClient
from labwire.transport import Context, Transport

__all__ = ["NameResolver", "connect"]

_log = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")


class NameResolver:
    """A callable that returns the current address of one registered device.

    Each call asks the registry (one short query on a fresh connection, so it is safe from any
    thread).

    Args:
        name: The device name.
        registry_url: The registry endpoint.
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        timeout: Seconds a lookup may take.

    Attributes:
        name: The device name.
        registry_url: The registry endpoint.
        address: The address found by the last successful lookup ("" before the first).
        public_key: The device's public key found by the last successful lookup ("" when the
            device registered none).
    """

    def __init__(
        self,
        name: str,
        registry_url: str,
        *,
        context: Context[Any] | Transport | None = None,
        timeout: float = QUERY_TIMEOUT,
    ) -> None:
        self.name = name
        self.registry_url = registry_url
        self.transport = as_transport(context)
        self.timeout = timeout
        self.address = ""
        self.public_key = ""
        self._lock = threading.Lock()

    def __call__(self) -> str:
        """Look the name up and return the device's address.

        Raises:
            NotFound: The registry has no device of that name (right now).
            Unavailable: The registry cannot be reached.
            AuthenticationError: Security is on and the registry refused the handshake.
            RegistryError: The registry cannot look names up (e.g. a deployed registry).
        """
        with RegistryClient(
            self.registry_url, context=self.transport, timeout=self.timeout
        ) as registry:
            device = registry.lookup(self.name)
        address = device.address
        with self._lock:
            if address != self.address and self.address:
                _log.info("device %r moved from %s to %s", self.name, self.address, address)
            if device.public_key != self.public_key and self.public_key:
                _log.info("device %r now presents the public key %s", self.name, device.public_key)
            self.address, self.public_key = address, device.public_key
        return address


def connect(
    client_class: Callable[..., ClientT],
    name: str,
    registry_url: str | None = None,
    *,
    context: Context[Any] | Transport | None = None,
    timeout: int | None = 1000,
    settings: Settings | None = None,
    lookup_timeout: float = QUERY_TIMEOUT,
    **client_options: Any,
) -> ClientT:
    """An RPC client for the device registered as ``name``.

    Args:
        client_class: An ``RPCClient`` subclass (decorated with ``register_interface``), or
            any class called as ``client_class(context, url, timeout, resolve=..., ...)``.
        name: The device's registry name.
        registry_url: The registry endpoint (None: ``settings.registry_url``).
        context: ZeroMQ context (None: the process-wide one) or a labwire Transport.
        timeout: The client's default call timeout in milliseconds, as for ``RPCClient``.
        settings: Settings for the lookup and, when given, passed on to the client.
        lookup_timeout: Seconds each registry lookup may take.
        **client_options: Further keyword arguments for ``client_class``. With security on,
            ``server_key`` defaults to the device's public key as the registry reports it.

    Returns:
        The client, connected to the device's current address. It re-resolves the name by
        itself when the device cannot be reached.

    Raises:
        NotFound: The registry has no device called ``name``.
        Unavailable: The registry cannot be reached.
        AuthenticationError: Security is on and the registry refused the handshake.
        RegistryError: The registry cannot look names up (e.g. a deployed registry).
    """
    transport = as_transport(context, settings)
    url = registry_url or transport.settings.registry_url
    resolver = NameResolver(name, url, context=transport, timeout=lookup_timeout)
    address = resolver()
    if settings is not None:
        client_options.setdefault("settings", settings)
    if resolver.public_key and transport.security is not None:
        client_options.setdefault("server_key", resolver.public_key)
    return client_class(transport.context, address, timeout, resolve=resolver, **client_options)
