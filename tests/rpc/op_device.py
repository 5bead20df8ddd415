"""A device with operations, for the operation tests, in-process or as a subprocess.

Run ``python -m tests.rpc.op_device URL`` to serve it from a separate process; the first line
printed is the real bound endpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from labwire.rpc import Operation, RPCProperty, RPCServer


class Counter(RPCServer):
    """Counts in steps, reporting each one; remembers what it was told to clean up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._cleaned: list[str] = []
        self._lock = threading.Lock()
        super().__init__(*args, **kwargs)

    @RPCServer.register_operation(timeout=None, on_disconnect="cancel", lease=1.0)
    def count(self, operation: Operation, n: int, step: float = 0.01) -> int:
        """Count to ``n``, one report per step; cancelled when its client vanishes."""
        operation.on_cancel(lambda: self._clean(operation.id))
        for index in range(n):
            operation.report((index + 1) / n, f"step {index + 1}", index + 1)
            operation.wait(step)
        return n

    @RPCServer.register_operation(timeout=None, on_disconnect="finish", lease=1.0)
    def keep_counting(self, operation: Operation, n: int, step: float = 0.01) -> int:
        """Count to ``n``; runs to its end even when its client vanishes."""
        for index in range(n):
            operation.report((index + 1) / n, f"step {index + 1}")
            operation.wait(step)
        return n

    @RPCServer.register_operation(timeout=None)
    def explode(self, operation: Operation, message: str) -> None:
        """Report once, then fail."""
        operation.report(0.5, "about to fail")
        raise ValueError(message)

    @RPCServer.register_operation(timeout=None)
    def blob(self, operation: Operation, size: int) -> bytes:
        """Return ``size`` bytes (a buffer result)."""
        operation.report(1.0)
        return b"x" * size

    def _clean(self, operation_id: str) -> None:
        with self._lock:
            self._cleaned.append(operation_id)

    @RPCProperty
    def cleaned(self) -> list[str]:
        """The operations whose cleanup ran."""
        with self._lock:
            return list(self._cleaned)


def main() -> None:
    """Serve a Counter on URL until SIGTERM."""
    server = Counter(None, sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: server.stop_server())
    server.start()
    print(server.endpoint, flush=True)
    while not server.wait_stopped(0.1):
        pass
    server.close()


if __name__ == "__main__":
    main()
