"""The device registry (seed ``plantimager.commons.deviceregistry``) plus remote discovery.

* :class:`DeviceRegistry`: the registry service, a thread; wire-compatible with deployed
  devices and registries.
* :func:`register_device`, :func:`unregister_device`, :func:`send_alive_check`: the seed's
  one-shot device calls.
"""

from labwire.registry.device_calls import register_device, send_alive_check, unregister_device
from labwire.registry.service import DeviceCallback, DeviceRegistry
from labwire.wire.registry import ALIVE_TIMEOUT, DeviceInfo, EventType

__all__ = [
    "ALIVE_TIMEOUT",
    "DeviceCallback",
    "DeviceInfo",
    "DeviceRegistry",
    "EventType",
    "register_device",
    "send_alive_check",
    "unregister_device",
]
