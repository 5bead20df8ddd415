"""Wire compatibility with the deployed protocol, against the real iblutil package, both ways."""

from __future__ import annotations

import socket
import threading

from iblutil.io.net import base

from labwire.errors import RemoteError
from labwire.rigs import Auxiliaries
from labwire.rigs._udp import ECHO_WINDOW
from tests.rigs.conftest import wait_for


def test_labwire_auxiliaries_drive_an_unmodified_iblutil_rig(procs, free_udp_port):
    rig = procs.start("deployed-rig", "cams", "--port", str(free_udp_port))
    rig.record()
    bare = f"127.0.0.1:{free_udp_port}"  # a bare host:port, as the deployed code accepts
    with Auxiliaries({"cams": bare}, timeout=3) as rigs:
        assert rigs.is_connected and rigs.is_running
        assert rigs.push("EXPINFO", "CONNECTED", {"subject": "m"}, wait=True) == {
            "cams": [0, {"name": "cams", "deployed": True}]
        }
        assert rigs.push("EXPINIT", {"n": 1}, wait=True) == {"cams": [10]}
        assert rigs.push(2, "2024-01-01_1_mouse", wait=True) == {"cams": ["2024-01-01_1_mouse", 20]}
        assert rigs.push("EXPSTATUS", "RUNNING", wait=True) == {"cams": [20]}
        # Task code written for the deployed stack passes the deployed enumerations.
        deployed = base.ExpMessage.EXPSTATUS, base.ExpStatus.RUNNING
        assert rigs.push(*deployed, wait=True) == {"cams": [20]}
        failed = rigs.push("ALYX", wait=True)  # the rig's callback raises: deployed error reply
        assert isinstance(failed, Exception) and failed.failed == ["cams"]
        error = failed.results["cams"].error
        assert isinstance(error, RemoteError)
        assert (error.remote_type, error.remote_message) == ("ValueError", "no Alyx token here")
        assert rigs.push("EXPEND", wait=True) == {"cams": [30]}
        assert rigs.push("EXPCLEANUP", wait=True) == {"cams": [0]}


def test_iblutil_coordinator_drives_a_labwire_rig_service(procs):
    _, ready = procs.rig("cams")
    boss = procs.start("deployed-coordinator", f"cams={ready['udp']}")
    steps = {}
    for _ in range(6):
        record = boss.record()
        steps[record["step"]] = record.get("responses", record.get("error"))
    assert steps["info"]["cams"][0] == 0
    assert steps["info"]["cams"][1]["name"] == "cams"
    assert steps["init"] == {"cams": [10]}
    assert steps["start"] == {"cams": ["2024-01-01_1_mouse", 20]}
    assert steps["status"] == {"cams": [20]}
    assert steps["stop"] == {"cams": [30]}
    assert steps["cleanup"] == {"cams": [0]}


class ChattyRig:
    """A stand-in rig that sends a message of its own before echoing each request."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.received.append(data)
            if data == b"[1,null]":  # EXPINIT
                self._answer(data, addr)

    def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        """Chatter, then the echo, then the reply."""
        self.sock.sendto(b'[64,20,{"note":"unasked"}]', addr)
        self.sock.sendto(data, addr)
        self.sock.sendto(b"[1,10]", addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_traffic_from_the_rig_is_not_mistaken_for_the_echo():
    rig = ChattyRig()
    try:
        with Auxiliaries({"chatty": f"udp://127.0.0.1:{rig.port}"}, timeout=2) as rigs:
            assert rigs.push("EXPINIT", wait=True) == {"chatty": [10]}
            link = rigs.services["chatty"]
            assert link.unsolicited == 1  # the unasked EXPINFO: echoed, then dropped
        wait_for(lambda: b'[64,20,{"note":"unasked"}]' in rig.received)  # its echo came back
        wait_for(lambda: b"[1,10]" in rig.received)  # and so did the reply's
    finally:
        rig.close()


class LateEchoRig(ChattyRig):
    """A stand-in rig on a loaded host: its echo and reply come well after the echo window."""

    def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        """A late echo, then the reply."""
        self._stop.wait(ECHO_WINDOW * 1.5)
        self.sock.sendto(data, addr)
        self.sock.sendto(b"[1,10]", addr)


def test_a_late_echo_is_not_taken_for_the_reply():
    rig = LateEchoRig()
    try:
        with Auxiliaries({"late": f"udp://127.0.0.1:{rig.port}"}, timeout=2) as rigs:
            assert rigs.push("EXPINIT", wait=True) == {"late": [10]}
            assert rigs.services["late"].unsolicited == 0
    finally:
        rig.close()
