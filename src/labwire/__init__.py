"""labwire: put laboratory and robot hardware on the network.

Devices become servers that other programs find by name, call, watch and coordinate. The
parts live in their own modules: :mod:`labwire.rpc` (remote calls, buffers, properties,
signals), :mod:`labwire.registry` (find devices by name), and :mod:`labwire.errors` (one
exception tree). The names most programs need are re-exported here.
"""

from labwire.config import Settings
from labwire.errors import (
    CallTimeout,
    ClosedError,
    LabwireError,
    ProtocolError,
    RemoteError,
    Unavailable,
)
from labwire.rpc import (
    NoResult,
    RPCClient,
    RPCEvents,
    RPCProperty,
    RPCServer,
    RPCSignal,
    RPCSignalReceiver,
)

__all__ = [
    "CallTimeout",
    "ClosedError",
    "LabwireError",
    "NoResult",
    "ProtocolError",
    "RPCClient",
    "RPCEvents",
    "RPCProperty",
    "RPCServer",
    "RPCSignal",
    "RPCSignalReceiver",
    "RemoteError",
    "Settings",
    "Unavailable",
]

__version__ = "0.1.0"
