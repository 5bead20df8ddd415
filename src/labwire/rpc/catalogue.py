"""What an RPC server exports, and the inventory it answers GET_INVENTORY with.

A :class:`Catalogue` is read once from the server's class (public names only, through the
whole MRO: see :func:`~labwire.rpc.interface.scan_class`). The server looks its tables up on
every request; :meth:`Catalogue.inventory` is the deployed inventory, which a deployed client
reads as it is, and :meth:`Catalogue.details` what labwire clients get besides it (signatures,
docs, signal types, writable properties, operations), which ``labwire ping`` and the
dashboard show.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from typing import Any

from labwire.rpc.interface import RemoteMethod, scan_class
from labwire.rpc.operations import OPERATION_ATTRIBUTE, OperationSpec
from labwire.rpc.property import RPCProperty
from labwire.rpc.signal import RPCSignal

__all__ = ["Catalogue"]

#: The version of labwire serving, reported with the inventory (``labwire ping`` shows it).
_LABWIRE_VERSION = importlib.metadata.version("labwire")


class Catalogue:
    """The methods, operations, properties and signals one server exports.

    Args:
        server: The server object (its signals are read from it).
        stop_at: The base class whose own names are not exported (the server class).

    Attributes:
        methods: Every exported method by name (operations included).
        operations: The operation specs of the methods that are operations.
        buffer_methods: The functions of the buffer methods.
        properties: The RPC properties.
        signals: The server's signals (bound to ``server``).
    """

    __slots__ = ("buffer_methods", "methods", "operations", "properties", "signals")

    def __init__(self, server: object, stop_at: type) -> None:
        exposed = scan_class(type(server), stop_at=(stop_at,))
        self.methods: dict[str, RemoteMethod] = exposed.methods
        self.operations: dict[str, OperationSpec] = {
            n: getattr(m.function, OPERATION_ATTRIBUTE)
            for n, m in self.methods.items()
            if hasattr(m.function, OPERATION_ATTRIBUTE)
        }
        self.buffer_methods: dict[str, Callable[..., Any]] = {
            n: m.function for n, m in self.methods.items() if m.kind == "buffer"
        }
        self.properties: dict[str, RPCProperty] = exposed.properties
        self.signals: dict[str, RPCSignal] = {
            name: getattr(server, name) for name in exposed.signals
        }

    def inventory(self, name: str) -> dict[str, Any]:
        """The deployed inventory: methods with their timeouts, signals, properties, name."""
        return {
            "json_methods": {n: m.timeout_ms for n, m in self.methods.items() if m.kind == "json"},
            "buffer_methods": {
                n: m.timeout_ms for n, m in self.methods.items() if m.kind == "buffer"
            },
            "signals": list(self.signals),
            "properties": list(self.properties),
            "name": name,
        }

    def details(
        self, *, peer_address: str, own_address: str, signal_endpoint: str
    ) -> dict[str, Any]:
        """What a labwire client gets with the inventory (its ``lw`` object).

        Args:
            peer_address: The asking client's address, as the server sees it.
            own_address: The endpoint other hosts should connect to.
            signal_endpoint: Where the server publishes its signals.
        """
        return {
            "now": time.monotonic(),
            "peer_address": peer_address,
            "own_address": own_address,
            "signal_endpoint": signal_endpoint,
            "labwire_version": _LABWIRE_VERSION,
            "methods": {
                n: {"signature": m.signature, "doc": m.doc} for n, m in self.methods.items()
            },
            "signal_types": {
                n: [getattr(t, "__name__", str(t)) for t in s.arg_types]
                for n, s in self.signals.items()
            },
            "property_docs": {
                n: (p.__doc__ or "").strip().split("\n\n", 1)[0] for n, p in self.properties.items()
            },
            "writable": [n for n, p in self.properties.items() if p.fset is not None],
            "operations": {
                n: {"timeout": s.timeout_ms, "on_disconnect": s.on_disconnect}
                for n, s in self.operations.items()
            },
        }
