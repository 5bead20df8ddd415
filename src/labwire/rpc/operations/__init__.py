"""Long-running operations: progress, cancellation and deadlines that reach the device.

Theory of operation
-------------------
A server method declared with :meth:`RPCServer.register_operation` receives an
:class:`Operation` as its first argument after ``self``. Through it the handler reports
progress (:meth:`Operation.report`), sees a cancel request (:attr:`Operation.cancelled`; the
next report raises :class:`OperationCancelled`) and registers cleanup that runs the moment
the operation is cancelled (:meth:`Operation.on_cancel`: a stage halts).

Started with ``OP_START`` (:meth:`RPCClient.start_operation`), the handler runs in a thread of
its own, so it holds none of the server's runners; clients poll it (``OP_POLL``), and each
poll brings the updates since the last one together with the outcome once there is one: the
last progress update therefore always arrives before the result. Called plainly (a deployed
client, or :meth:`RPCClient.call`), it runs as any method does and answers with its result.

An :class:`OperationTable` keeps a server's operations; its monitor thread cancels those whose
deadline passed and, for methods declared ``on_disconnect="cancel"``, those nobody has polled
for their lease (the client vanished). Ended operations are kept a while for late pollers.
On the client side, :class:`OperationHandle` (and :class:`AsyncOperationHandle`) polls in the
background, delivers updates in order to a callback (or an async iterator) and gives the
result, the failure, the cancellation or, when the server restarted, :class:`OperationLost`.

Modules: :mod:`~labwire.rpc.operations.server` (the handler's :class:`Operation` and the
:class:`OperationTable`) and :mod:`~labwire.rpc.operations.client` (the handles); every name is
re-exported here.
"""

from labwire.rpc.operations.client import (
    AsyncOperationHandle,
    OperationHandle,
)
from labwire.rpc.operations.server import (
    OPERATION_ATTRIBUTE,
    POLL_SECONDS,
    Operation,
    OperationCancelled,
    OperationLost,
    OperationSpec,
    OperationTable,
    operation_method,
)

__all__ = [
    "OPERATION_ATTRIBUTE",
    "POLL_SECONDS",
    "AsyncOperationHandle",
    "Operation",
    "OperationCancelled",
    "OperationHandle",
    "OperationLost",
    "OperationSpec",
    "OperationTable",
    "operation_method",
]
