"""The labwire link with CurveZMQ: an allowed coordinator gets replies, a stranger gets none."""

from __future__ import annotations

from pathlib import Path

import pytest

from labwire.config import Settings
from labwire.errors import AuthenticationError
from labwire.rigs import Auxiliaries
from labwire.sim.rig import SimRig
from labwire.transport.security import Security, generate_keypair, load_public_key, load_secret_key

pytestmark = pytest.mark.timeout(30)


def _pair(folder: Path, name: str) -> tuple[str, str]:
    public, secret = generate_keypair(folder, name)
    return load_public_key(public), load_secret_key(secret)


def test_secured_rig_answers_allowed_coordinators_only(tmp_path):
    rig_key, boss_key, stranger_key = (_pair(tmp_path, n) for n in ("rig", "boss", "stranger"))
    rig_security = Security(secret_key=rig_key[1], allowed_keys=frozenset({boss_key[0]}))

    def client(pair: tuple[str, str]) -> Settings:
        return Settings(security=Security(client_secret_key=pair[1], server_key=rig_key[0]))

    with SimRig("cam", udp=None, settings=Settings(security=rig_security)) as rig:
        with Auxiliaries({"cam": rig.endpoint}, settings=client(boss_key), timeout=2) as rigs:
            assert rigs.push("EXPINIT", wait=True) == {"cam": [10]}
        with Auxiliaries({"cam": rig.endpoint}, settings=client(stranger_key), timeout=1) as rigs:
            refused = rigs.push_results("EXPINIT")
        assert isinstance(refused["cam"].error, AuthenticationError)
        assert refused["cam"].outcome == "unavailable"
        assert rig.handled == 1
