"""Open a client for a device given as a registry name or as a URL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from labwire.config import Settings

__all__ = ["is_url", "open_device"]

ClientT = TypeVar("ClientT")


def is_url(device: str) -> bool:
    """Whether ``device`` is an endpoint (``tcp://...``, ``ipc://...``) rather than a name."""
    return "://" in device


def open_device(
    client_class: Callable[..., ClientT],
    device: str,
    registry_url: str | None = None,
    *,
    settings: Settings | None = None,
    timeout: int | None = 1000,
    **options: Any,
) -> ClientT:
    """A client for ``device``: a registry name (looked up) or a URL (connected directly).

    Args:
        client_class: An :class:`~labwire.rpc.RPCClient` subclass, e.g.
            :class:`~labwire.sim.CameraClient`.
        device: A registry name (``"camera"``) or an endpoint (``"tcp://10.0.0.7:5000"``).
        registry_url: The registry to look names up in (None: ``settings.registry_url``).
        settings: Transport settings for the lookup and the client.
        timeout: The client's default timeout in ms (None: wait forever).
        **options: Further keyword arguments for ``client_class``.

    Raises:
        NotFound: No device of that name in the registry.
        Unavailable: The registry or the device cannot be reached.
        CallTimeout: The device did not answer in time.
    """
    if is_url(device):
        if settings is not None:
            options.setdefault("settings", settings)
        return client_class(None, device, timeout, **options)
    from labwire.registry import connect

    return connect(
        client_class, device, registry_url, timeout=timeout, settings=settings, **options
    )
