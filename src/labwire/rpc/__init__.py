"""Remote procedure calls: servers expose methods, buffers, properties and signals to clients.

Code written for ``plantimager.commons.RPC`` runs here by changing only the import.
"""

from labwire.rpc.aio import AsyncRPCClient
from labwire.rpc.client import RPCClient
from labwire.rpc.operations import (
    AsyncOperationHandle,
    Operation,
    OperationCancelled,
    OperationHandle,
    OperationLost,
)
from labwire.rpc.property import RPCProperty
from labwire.rpc.receiver import RPCSignalReceiver
from labwire.rpc.results import NoResult
from labwire.rpc.server import RPCServer
from labwire.rpc.signal import RPCSignal
from labwire.transport.endpoints import url_parser
from labwire.wire.rpc import RPCEvents

__all__ = [
    "AsyncOperationHandle",
    "AsyncRPCClient",
    "NoResult",
    "Operation",
    "OperationCancelled",
    "OperationHandle",
    "OperationLost",
    "RPCClient",
    "RPCEvents",
    "RPCProperty",
    "RPCServer",
    "RPCSignal",
    "RPCSignalReceiver",
    "url_parser",
]
