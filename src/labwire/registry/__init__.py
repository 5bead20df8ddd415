"""The device registry (seed ``plantimager.commons.deviceregistry``) plus remote discovery.

* :class:`DeviceRegistry`: the registry service, a thread. Wire-compatible with deployed
  devices and registries; leases on a monotonic clock; events published for watchers.
* :func:`register_device`, :func:`unregister_device`, :func:`send_alive_check`: the seed's
  one-shot device calls, and :class:`RegistrationKeeper`, which registers a device and keeps it
  registered: re-exported from :mod:`labwire.registration`, the client side of registering
  that RPC servers use too.
* :class:`RegistryClient` / :class:`AsyncRegistryClient`: list, look up and watch devices.
* :func:`connect`: an RPC client for a device given only its registry name.
"""

from labwire.registration import (
    RegistrationKeeper,
    register_device,
    send_alive_check,
    unregister_device,
)
from labwire.registry.aio import AsyncRegistryClient, AsyncRegistryWatch
from labwire.registry.client import RegistryClient, RegistryWatch
from labwire.registry.connect import NameResolver, connect
from labwire.registry.service import DeviceCallback, DeviceRegistry
from labwire.registry.watch import WatchEvent, WatchEventKind
from labwire.wire.registry import ALIVE_TIMEOUT, AliveCheckState, DeviceInfo, EventType

__all__ = [
    "ALIVE_TIMEOUT",
    "AliveCheckState",
    "AsyncRegistryClient",
    "AsyncRegistryWatch",
    "DeviceCallback",
    "DeviceInfo",
    "DeviceRegistry",
    "EventType",
    "NameResolver",
    "RegistrationKeeper",
    "RegistryClient",
    "RegistryWatch",
    "WatchEvent",
    "WatchEventKind",
    "connect",
    "register_device",
    "send_alive_check",
    "unregister_device",
]
