"""Wire compatibility with the deployed protocol, against the real iblutil package, both ways."""

from __future__ import annotations

from labwire.errors import RemoteError
from labwire.rigs import Auxiliaries


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
