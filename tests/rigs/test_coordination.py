"""Auxiliaries and rig services together: rigs as processes, faults injected for real."""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from typing import Any

import pytest

from labwire.errors import CallTimeout, ClosedError, RemoteError
from labwire.rigs import Auxiliaries, ExpStatus, RigService, RigsFailed
from labwire.sim.rig import SimRig
from labwire.wire.rigs import decode_datagram
from tests.commands import is_stopped
from tests.rigs.conftest import wait_for


def _sequence(rigs: Auxiliaries) -> dict[str, Any]:
    return {
        "info": rigs.push("EXPINFO", "CONNECTED", {"subject": "m"}, wait=True),
        "init": rigs.push("EXPINIT", {"task": "t"}, wait=True, concurrent=False),
        "start": rigs.push("EXPSTART", "2024-01-01_1_m", wait=True, concurrent=False),
        "end": rigs.push("EXPEND", wait=True, concurrent=False),
        "cleanup": rigs.push("EXPCLEANUP", wait=True),
    }


def test_experiment_sequence_across_three_rig_processes(procs):
    _, left = procs.rig("left")
    _, right = procs.rig("right")
    _, body = procs.rig("body")
    clients = {"left": left["udp"], "right": right["url"], "body": body["udp"]}
    with Auxiliaries(clients, timeout=3) as rigs:
        replies = _sequence(rigs)
    assert {n: r[1]["name"] for n, r in replies["info"].items()} == {
        "left": "left",
        "right": "right",
        "body": "body",
    }
    assert replies["init"] == {key: [10] for key in clients}
    assert replies["start"] == {key: ["2024-01-01_1_m", 20] for key in clients}
    assert replies["end"] == {key: [30] for key in clients}
    assert replies["cleanup"] == {key: [0] for key in clients}


def test_a_rig_killed_mid_experiment_is_reported_and_the_others_complete(procs):
    _, left = procs.rig("left")
    victim, right = procs.rig("right")
    doomed, body = procs.rig("body")
    clients = {"left": left["udp"], "right": right["url"], "body": body["udp"]}
    with Auxiliaries(clients, timeout=1) as rigs:
        assert rigs.push("EXPINIT", wait=True) == {key: [10] for key in clients}
        os.kill(victim.popen.pid, signal.SIGKILL)
        os.kill(doomed.popen.pid, signal.SIGKILL)
        victim.popen.wait(5)
        doomed.popen.wait(5)
        results = rigs.push_results("EXPSTART", "2024-01-01_1_m")
    assert results["left"].data == ["2024-01-01_1_m", 20]
    assert results["right"].outcome in ("timeout", "unavailable")
    assert results["body"].outcome == "timeout"
    with pytest.raises(RigsFailed, match="2 rig") as failure:
        results.raise_for_failures()
    assert failure.value.failed == ["right", "body"]
    assert failure.value.replies == {"left": ["2024-01-01_1_m", 20]}


def test_a_slow_rig_times_out_alone(procs):
    _, fast = procs.rig("fast")
    _, slow = procs.rig("slow", "--delay", "2")
    with Auxiliaries({"fast": fast["udp"], "slow": slow["udp"], "slow2": slow["url"]}) as rigs:
        results = rigs.push_results("EXPSTATUS", "RUNNING", timeout=0.5)
    assert results["fast"].data == [0]
    assert isinstance(results["slow"].error, CallTimeout)
    assert isinstance(results["slow2"].error, CallTimeout)
    assert "confirmed EXPSTATUS but did not reply" in str(results["slow"].error)


def test_a_restarted_rig_is_reached_again_without_a_new_coordinator(procs, free_udp_port):
    udp = f"udp://127.0.0.1:{free_udp_port}"
    first, ready = procs.rig("cam", "--udp", udp)
    url = ready["url"]
    with Auxiliaries({"udp": udp, "zmq": url}, timeout=1) as rigs:
        assert rigs.push("EXPINIT", wait=True) == {"udp": [10], "zmq": [10]}
        first.kill()
        down = rigs.push_results("EXPSTATUS", "RUNNING")
        assert not down["udp"].ok and not down["zmq"].ok
        procs.rig("cam", "--udp", udp, "--url", url)
        deadline = time.monotonic() + 10
        while True:
            again = rigs.push_results("EXPINIT", timeout=1)
            if again.ok or time.monotonic() > deadline:
                break
        assert again.replies == {"udp": [10], "zmq": [10]}


class LossyRelay:
    """A UDP stand-in in front of a rig that drops every ``every``-th datagram each way."""

    def __init__(self, target: tuple[str, int], every: int = 2) -> None:
        self.target = target
        self.every = every
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back.bind(("127.0.0.1", 0))
        self.address = self.front.getsockname()
        self.dropped = 0
        self._client: Any = None
        self._counts = {"in": 0, "out": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _drop(self, way: str) -> bool:
        self._counts[way] += 1
        if self._counts[way] % self.every == 1:
            self.dropped += 1
            return True
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.front, self.back], [], [], 0.05)
            for sock in ready:
                data, addr = sock.recvfrom(65535)
                if sock is self.front:
                    self._client = addr
                    if not self._drop("in"):
                        self.back.sendto(data, self.target)
                elif self._client is not None and not self._drop("out"):
                    self.front.sendto(data, self._client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.front.close()
        self.back.close()


def test_a_rig_behind_a_lossy_link_still_completes(procs):
    _, ready = procs.rig("cam")
    host, port = ready["udp"][len("udp://") :].split(":")
    relay = LossyRelay((host, int(port)), every=2)
    try:
        with Auxiliaries({"cam": f"udp://127.0.0.1:{relay.address[1]}"}, timeout=5) as rigs:
            replies = _sequence(rigs)
    finally:
        relay.close()
    assert replies["init"] == {"cam": [10]}
    assert replies["end"] == {"cam": [30]}
    assert relay.dropped >= 5


@pytest.fixture
def local_rig():
    rig = SimRig("local")
    with rig:
        yield rig


def _exchange(sock: socket.socket, data: bytes, count: int) -> list[bytes]:
    sock.send(data)
    received = []
    for _ in range(count):
        received.append(sock.recv(65535))
    return received


@pytest.mark.parametrize(
    ("data", "echoed", "error"),
    [
        (b"not json", True, "ProtocolError"),
        (b"[3, null]", True, "unknown message code 3"),
        (b"[2, 5, null]", True, "exp_ref must be a string"),
        (b"[1, 1, 2, 3]", True, "at most 1"),
        (b"[32]", True, "EXPSTATUS"),
        (b'[2, "2024-01-01_1_m", null]', True, "IllegalTransition: EXPSTART is not allowed"),
        (b"[1" + b"[" * 40 + b"]" * 40 + b"]", True, "ProtocolError"),
    ],
)
def test_bad_datagrams_get_an_error_reply_and_the_rig_keeps_serving(local_rig, data, echoed, error):
    host, port = local_rig.udp_endpoint[len("udp://") :].split(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect((host, int(port)))
        echo, reply = _exchange(sock, data, 2)
        assert echo == data
        decoded = decode_datagram(reply)
        assert decoded.is_error and error in decoded.items[0]
        echo, reply = _exchange(sock, b"[32, 0]", 2)
        assert decode_datagram(reply).items == (0,)
        sock.send(reply)  # confirm, as a deployed coordinator does
    assert local_rig.status is ExpStatus.CONNECTED


def test_two_coordinators_in_one_process_are_independent():
    with (
        SimRig("a") as rig_a,
        SimRig("b") as rig_b,
        Auxiliaries({"a": rig_a.udp_endpoint}) as one,
        Auxiliaries({"b": rig_b.endpoint}) as two,
    ):
        assert one.services.keys() == {"a"} and two.services.keys() == {"b"}
        assert one.push("EXPINIT", wait=True) == {"a": [10]}
        assert two.push("EXPINFO", "CONNECTED", wait=True)["b"][1]["status"] == "CONNECTED"
        one.close()
        assert not one.is_running and two.is_running
        assert two.push("EXPINIT", wait=True) == {"b": [10]}


def test_an_interrupted_experiment_sends_the_error_details():
    with SimRig("a") as rig_a, SimRig("b") as rig_b:
        with (
            pytest.raises(RuntimeError, match="valve stuck"),
            Auxiliaries({"a": rig_a.udp_endpoint, "b": rig_b.endpoint}) as rigs,
        ):
            rigs.push("EXPINIT", wait=True)
            rigs.push("EXPSTART", "2024-01-01_1_m", wait=True)
            raise RuntimeError("valve stuck")
        for rig in (rig_a, rig_b):
            assert rig.status is ExpStatus.STOPPED
            assert rig.interrupted_by is not None
            assert rig.interrupted_by["type"] == "RuntimeError"
            assert rig.interrupted_by["message"] == "valve stuck"
            assert "valve stuck" in rig.interrupted_by["traceback"]


class OrderedRig(RigService):
    def __init__(self, name: str, seen: list[str]) -> None:
        super().__init__(name, udp="udp://127.0.0.1:0", url="tcp://127.0.0.1:0")
        self.seen = seen

    def on_init(self, data: Any) -> Any:
        self.seen.append(f"init:{self.name}")

    def on_cleanup(self, data: Any) -> Any:
        self.seen.append(f"cleanup:{self.name}")


def test_sequential_pushes_go_in_order_and_teardown_in_reverse():
    seen: list[str] = []
    with OrderedRig("a", seen) as a, OrderedRig("b", seen) as b, OrderedRig("c", seen) as c:
        clients = {"a": a.udp_endpoint, "b": b.endpoint, "c": c.udp_endpoint}
        with Auxiliaries(clients) as rigs:
            rigs.push("EXPINIT", wait=True, concurrent=False)
            rigs.push("EXPCLEANUP", wait=True, concurrent=False)
    assert seen == ["init:a", "init:b", "init:c", "cleanup:c", "cleanup:b", "cleanup:a"]


class GatedRig(SimRig):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.entered = threading.Event()
        self.gate = threading.Event()

    def on_init(self, data: Any) -> Any:
        self.entered.set()
        self.gate.wait(5)


def test_push_without_wait_fetch_later_and_clear_the_queue():
    with GatedRig("slow") as slow, Auxiliaries({"slow": slow.endpoint}) as rigs:
        first = rigs.push("EXPINIT")
        assert slow.entered.wait(5)
        queued = [rigs.push("EXPSTATUS", "CONNECTED") for _ in range(3)]
        assert isinstance(first, float) and len({first, *queued}) == 4
        assert rigs.clear_message_queue() == 3
        slow.gate.set()
        assert rigs.fetch(first, timeout=5) == {"slow": [10]}
        with pytest.raises(KeyError):
            rigs.results(queued[0])
        assert rigs.response_received.is_set()
        with pytest.raises(KeyError):
            rigs.fetch(first)


def test_wrong_arguments_raise_at_the_caller_and_nothing_is_sent():
    with SimRig("a") as rig, Auxiliaries({"a": rig.endpoint}) as rigs:
        with pytest.raises(TypeError, match="EXPSTART takes"):
            rigs.push("EXPSTART", "ref", "data", "extra")
        with pytest.raises(ValueError, match="unknown experiment message"):
            rigs.push("EXPBEGIN")
        assert rig.handled == 0


def test_a_remote_failure_is_a_result_not_a_crash():
    class Broken(SimRig):
        def on_init(self, data: Any) -> Any:
            raise OSError("camera not found")

    with Broken("bad") as bad, SimRig("good") as good:
        clients = {"bad_udp": bad.udp_endpoint, "bad_zmq": bad.endpoint, "good": good.endpoint}
        with Auxiliaries(clients) as rigs:
            results = rigs.push_results("EXPINIT")
            assert results["good"].ok
            for name in ("bad_udp", "bad_zmq"):
                error = results[name].error
                assert isinstance(error, RemoteError) and "camera not found" in str(error)
            wait_for(lambda: bad.status is ExpStatus.CONNECTED)


def test_identical_requests_and_replies_through_a_lossy_link_never_stall(procs):
    """EXPSTATUS 0 is answered by the same bytes ([32,0]): echoes must not pass for messages."""
    _, ready = procs.rig("cam")
    host, port = ready["udp"][len("udp://") :].split(":")
    relay = LossyRelay((host, int(port)), every=3)
    try:
        with Auxiliaries({"lossy": f"udp://127.0.0.1:{relay.address[1]}"}, timeout=5) as rigs:
            for _ in range(10):
                assert rigs.push("EXPSTATUS", 0, wait=True) == {"lossy": [0]}
    finally:
        relay.close()
    assert relay.dropped >= 5


def test_a_rig_whose_host_does_not_resolve_is_reported_per_push():
    with (
        SimRig("ok") as rig,
        Auxiliaries(
            {"ok": rig.udp_endpoint, "lost": "udp://no-such-rig.invalid:11001"}, timeout=1
        ) as rigs,
    ):
        results = rigs.push_results("EXPINTERRUPT")
        assert results["ok"].data == [0]  # an interrupt is legal before EXPINIT
        assert results["lost"].outcome == "unavailable"
        assert "no-such-rig.invalid" in str(results["lost"].error)
        assert not rigs.is_connected


def test_close_during_a_push_ends_the_push():
    with GatedRig("stuck") as rig:
        rigs = Auxiliaries({"stuck": rig.udp_endpoint}, timeout=30)
        key = rigs.push("EXPINIT")
        assert rig.entered.wait(5)
        rigs.close()
        assert not rigs.is_running
        with pytest.raises(ClosedError):
            rigs.results(key, timeout=5)
        with pytest.raises(ClosedError):
            rigs.push("EXPSTATUS", 0)
        rig.gate.set()


def test_a_frozen_rig_times_out_and_never_runs_the_expired_request_later(procs):
    frozen, ready = procs.rig("cam")
    with Auxiliaries({"cam": ready["url"]}, timeout=2) as rigs:
        assert rigs.push("EXPSTATUS", 0, wait=True) == {"cam": [0]}
        os.kill(frozen.popen.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: is_stopped(frozen.popen.pid))  # the stop is asynchronous
            sent = time.monotonic()
            late = rigs.push_results("EXPINIT", timeout=0.5)
            # Frozen well past the request's expiry: the two processes' view of when it
            # expires can differ by the error of the clock offset the client estimated.
            time.sleep(max(0.0, sent + 1.0 - time.monotonic()))
        finally:
            os.kill(frozen.popen.pid, signal.SIGCONT)
        assert late["cam"].outcome == "timeout", late["cam"]
        # The EXPINIT queued while the rig was frozen had expired: it was not run.
        assert rigs.push("EXPSTATUS", 0, wait=True) == {"cam": [0]}
