"""Operations over real sockets and processes: progress, cancel, deadlines, reattach, loss."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labwire.errors import CallTimeout, RemoteError
from labwire.rpc import (
    AsyncRPCClient,
    OperationCancelled,
    OperationLost,
    RPCClient,
)
from labwire.wire.operations import OperationState, Update
from tests.legacy import LegacyRPCClient
from tests.rpc.conftest import ROOT, wait_for
from tests.rpc.op_device import Counter

pytestmark = pytest.mark.timeout(30)


class CounterProcess:
    """A Counter served by a subprocess."""

    def __init__(self, url: str = "tcp://127.0.0.1:0") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.rpc.op_device", url],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.endpoint = self.process.stdout.readline().strip()
        assert self.endpoint, "device process did not report its endpoint"

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def counter() -> Iterator[CounterProcess]:
    device = CounterProcess()
    yield device
    device.close()


@pytest.fixture
def local() -> Iterator[Counter]:
    server = Counter(None, "tcp://127.0.0.1:0").start()
    yield server
    server.close()


def test_progress_arrives_in_order_and_before_the_result(counter: CounterProcess) -> None:
    seen: list[Update] = []
    with RPCClient(None, counter.endpoint) as client:
        handle = client.start_operation("count", 40, 0.002, on_progress=seen.append)
        assert handle.result(10) == 40
        # Every update numbered 1..40 was delivered, in order, before result() returned.
        assert [u.seq for u in seen] == list(range(1, 41))
        assert seen[-1].fraction == 1.0 and seen[-1].result == 40
        assert handle.progress == seen[-1]
        assert handle.info.state == OperationState.SUCCEEDED
        handle.close()


def test_a_plain_call_still_returns_the_result(counter: CounterProcess) -> None:
    with RPCClient(None, counter.endpoint, raise_errors=True) as client:
        assert client.call("count", 3, 0.0) == 3
        assert "count" in client.inventory()["details"]["operations"]
        assert client.inventory()["details"]["methods"]["count"]["signature"] == (
            "(n: int, step: float = 0.01) -> int"
        )
    with LegacyRPCClient(counter.endpoint, timeout=5) as legacy:
        assert legacy.call("count", 3, 0.0) == 3


def test_cancel_from_the_caller_runs_the_cleanup(counter: CounterProcess) -> None:
    with RPCClient(None, counter.endpoint) as client:
        handle = client.start_operation("count", 100_000, 0.01)
        wait_for(lambda: handle.progress is not None)
        handle.cancel()
        with pytest.raises(OperationCancelled, match="cancelled by the caller"):
            handle.result(10)
        assert handle.info.cause == "caller"
        assert handle.id in client.get_property("cleaned")
        handle.close()


def test_cancel_from_a_second_client(counter: CounterProcess) -> None:
    with RPCClient(None, counter.endpoint) as first, RPCClient(None, counter.endpoint) as second:
        handle = first.start_operation("keep_counting", 100_000, 0.01)
        listed = {op.id: op for op in second.operations()}
        assert listed[handle.id].state == OperationState.RUNNING
        assert listed[handle.id].method == "keep_counting"
        wait_for(lambda: {op.id: op for op in second.operations()}[handle.id].remaining)
        info = second.cancel_operation(handle.id, "enough")
        assert info.id == handle.id
        with pytest.raises(OperationCancelled, match="enough"):
            handle.result(10)
        handle.close()


def test_the_deadline_travels_with_the_request(counter: CounterProcess) -> None:
    with RPCClient(None, counter.endpoint) as client:
        handle = client.start_operation("count", 100_000, 0.01, deadline=0.3)
        with pytest.raises(OperationCancelled, match=r"deadline of 0\.3 s passed"):
            handle.result(10)
        assert handle.info.cause == "deadline"
        handle.close()
        # A plain call's deadline cancels the handler on the server too.
        with client.override_timeout(300), pytest.raises(CallTimeout):
            client.call("keep_counting", 100_000, 0.01)

        def cancelled_on_server() -> bool:
            ops = [op for op in client.operations() if op.method == "keep_counting"]
            return bool(ops) and ops[-1].state == OperationState.CANCELLED

        wait_for(cancelled_on_server)


_WATCHER = """
import sys, time
from labwire.rpc import RPCClient
client = RPCClient(None, sys.argv[1])
handle = client.start_operation(sys.argv[2], 100_000, 0.01)
print(handle.id, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(("method", "ends"), [("count", "cancelled"), ("keep_counting", "running")])
def test_a_client_killed_mid_operation(counter: CounterProcess, method: str, ends: str) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, counter.endpoint, method],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        operation_id = watcher.stdout.readline().strip()
        watcher.kill()
        watcher.wait(5)
    finally:
        if watcher.stdout is not None:
            watcher.stdout.close()
    with RPCClient(None, counter.endpoint) as client:

        def state() -> str:
            return str({op.id: op for op in client.operations()}[operation_id].state)

        if ends == "cancelled":  # its lease (1 s) runs out
            wait_for(lambda: state() == "cancelled", timeout=10)
            assert operation_id in client.get_property("cleaned")
        else:
            # Its lease has long run out when a later operation with the same lease is
            # cancelled; this one still runs.
            probe = client.start_operation("count", 100_000, 0.01)
            probe.close()
            wait_for(lambda: probe.id in client.get_property("cleaned"), timeout=10)
            assert state() == "running"
            client.cancel_operation(operation_id)


def test_reattach_by_id_from_another_client(counter: CounterProcess) -> None:
    with RPCClient(None, counter.endpoint) as first, RPCClient(None, counter.endpoint) as second:
        handle = first.start_operation("keep_counting", 30, 0.01)
        again = second.attach_operation(handle.id)
        assert again.id == handle.id and again.method == "keep_counting"
        assert again.result(10) == 30 == handle.result(10)
        handle.close()
        again.close()
        with pytest.raises(OperationLost, match="no operation"):
            second.attach_operation(handle.id.rsplit("-", 1)[0] + "-999")


def test_the_server_restarted_mid_operation(tmp_path: Path) -> None:
    url = f"ipc://{tmp_path}/counter"
    device = CounterProcess(url)
    try:
        with RPCClient(None, device.endpoint, timeout=500) as client:
            handle = client.start_operation("keep_counting", 100_000, 0.01)
            wait_for(lambda: handle.progress is not None)
            device.close()
            device = CounterProcess(url)
            with pytest.raises(OperationLost, match="server, which has restarted"):
                handle.result(15)
            handle.close()
    finally:
        device.close()


def test_failures_and_buffer_results(local: Counter) -> None:
    with RPCClient(None, local.endpoint) as client:
        handle = client.start_operation("explode", "bad luck")
        with pytest.raises(RemoteError, match="bad luck") as failure:
            handle.result(10)
        assert failure.value.remote_type == "ValueError"
        assert handle.progress is not None and handle.progress.message == "about to fail"
        handle.close()
        handle = client.start_operation("blob", 100_000)
        assert handle.result(10) == b"x" * 100_000
        handle.close()
        with pytest.raises(RemoteError, match=r"not an operation|no method"):
            client.start_operation("cleaned")


def test_the_asyncio_client(local: Counter) -> None:
    async def main() -> None:
        async with AsyncRPCClient(None, local.endpoint) as client:
            handle = await client.start_operation("count", 20, 0.002)
            seqs = [update.seq async for update in handle]
            assert seqs == list(range(1, 21))
            assert await handle.result(5) == 20
            slow = await client.start_operation("count", 100_000, 0.01)
            assert [op.id for op in await client.operations()][-1] == slow.id
            await slow.cancel("from asyncio")
            with pytest.raises(OperationCancelled, match="from asyncio"):
                await slow.result(5)
            again = await client.attach_operation(handle.id)
            assert await again.result(5) == 20
            await again.aclose()

    asyncio.run(main())


def test_cancel_reaches_a_direct_call_in_process(local: Counter) -> None:
    start = time.monotonic()
    assert local.count(3, 0.0) == 3  # a direct Python call runs with a local handle
    assert time.monotonic() >= start
