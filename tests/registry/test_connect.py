"""Connect by name: an RPC client from a registry name that follows the device when it moves."""

from __future__ import annotations

import time

import pytest

from labwire.errors import LabwireError, NotFound, Unavailable
from labwire.registry import DeviceRegistry, NameResolver, connect
from tests.registry.conftest import TTL, wait_for
from tests.registry.procs import _probe_classes

ProbeDevice, ProbeClient = _probe_classes()


def serve(registry_url, name="dev"):
    server = ProbeDevice(None, "tcp://127.0.0.1:0", alive_timeout=TTL).start()
    try:
        server.register_to_registry("probe", name, registry_url)
    except BaseException:
        server.close()
        raise
    return server


def test_connect_by_name_and_follow_a_device_that_moved(registry):
    first = serve(registry.url)
    second = None
    try:
        with connect(ProbeClient, "dev", registry.url, timeout=1000) as client:
            assert client.url == first.endpoint
            assert client.whoami()["name"] == "dev"
            first.close()  # unregisters; the device comes back elsewhere under the same name
            second = serve(registry.url)
            assert second.endpoint != first.endpoint

            def reaches_second() -> bool:
                try:
                    client.whoami()
                except LabwireError:
                    return False
                return client.url == second.endpoint

            wait_for(reaches_second, timeout=5, what="client follows the device")
    finally:
        first.close()
        if second is not None:
            second.close()


def test_registered_address_is_the_servers_real_endpoint(registry):
    server = serve(registry.url, name="")
    try:
        assert server.name == "probe-1"
        assert registry.get_devices() == {"probe-1": ("probe", server.endpoint)}
    finally:
        server.close()
    wait_for(lambda: registry.get_devices() == {}, timeout=1, what="unregistered on close")


def test_registry_is_not_consulted_on_every_call(registry):
    server = serve(registry.url)
    try:
        with connect(ProbeClient, "dev", registry.url) as client:
            registry.stop()  # the registry is gone; calls between connected peers go on
            for _ in range(10):
                assert client.whoami()["name"] == "dev"
    finally:
        server.close()


def test_unknown_name_and_unreachable_registry(registry):
    with pytest.raises(NotFound):
        connect(ProbeClient, "ghost", registry.url)
    down = DeviceRegistry(None, "127.0.0.1", "0")
    down.stop()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        connect(ProbeClient, "dev", down.url, lookup_timeout=1.0)
    assert time.monotonic() - started < 1.5


def test_name_resolver_tracks_the_address(registry):
    server = serve(registry.url)
    try:
        resolve = NameResolver("dev", registry.url)
        assert resolve() == server.endpoint == resolve.address
    finally:
        server.close()
    wait_for(lambda: "dev" not in registry.get_devices(), timeout=1)
    with pytest.raises(NotFound):
        resolve()
    assert resolve.address == server.endpoint  # the last known address is kept
