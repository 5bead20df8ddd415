"""The device registry (seed ``plantimager.commons.deviceregistry``) plus remote discovery.

* :class:`DeviceRegistry`: the registry service, a thread. Wire-compatible with deployed
  devices and registries; leases on a monotonic clock; events published for watchers.
* :func:`register_device`, :func:`unregister_device`, :func:`send_alive_check`: the seed's
  one-shot device calls.
* :class:`RegistrationKeeper`: registers a device and keeps it registered (renewals,
  re-registration after a registry restart, unregistration on stop).
* :class:`RegistryClient` / :class:`AsyncRegistryClient`: list, look up and watch devices.
* :func:`connect`: an RPC client for a device given only its registry name.
"""

from labwire.registry.aio import AsyncRegistryClient, AsyncRegistryWatch
from labwire.registry.client import RegistryClient, RegistryWatch
from labwire.registry.connect import NameResolver, connect
from labwire.registry.device_calls import register_device, send_alive_check, unregister_device
from labwire.registry.keeper import RegistrationKeeper
from labwire.registry.service import DeviceCallback, DeviceRegistry
from labwire.registry.watch import WatchEvent, WatchEventKind
from labwire.wire.registry import ALIVE_TIMEOUT, DeviceInfo, EventType

__all__ = [
    "ALIVE_TIMEOUT",
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
