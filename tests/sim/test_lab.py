from __future__ import annotations

import pytest

from labwire.registry import RegistryClient
from labwire.sim.lab import ChildProcess, SimLab, SimProcessError

pytestmark = pytest.mark.timeout(30)


def test_lab_runs_registered_devices_in_processes_and_stops_them() -> None:
    with SimLab() as lab:
        processes = [child.process for child in lab.processes]
        assert len({p.pid for p in processes}) == 3
        with RegistryClient(lab.registry_url) as registry:
            assert {d.name for d in registry.list_devices()} == {"camera", "stage"}
    assert all(p.returncode == 0 for p in processes), [p.returncode for p in processes]


def test_a_child_that_fails_reports_its_error() -> None:
    child = ChildProcess("registry", ["registry", "--bind", "tcp://nowhere:1:2", "--json"])
    try:
        with pytest.raises(SimProcessError, match="exited with code 2") as info:
            child.wait_ready(10)
        assert "nowhere" in str(info.value)
    finally:
        child.stop()
