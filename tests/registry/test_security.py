"""A secured registry: allow-list, device keys published by the registry, admin-only takeover."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import zmq

from labwire.config import Settings
from labwire.errors import AuthenticationError, PermissionDenied, ProtocolError
from labwire.registry import (
    DeviceRegistry,
    RegistrationKeeper,
    RegistryClient,
    WatchEventKind,
    connect,
    register_device,
)
from labwire.transport import SocketType, Transport
from labwire.transport.endpoints import parse_endpoint
from labwire.transport.security import Security, generate_keypair, load_public_key, load_secret_key
from labwire.wire.limits import Limits
from labwire.wire.registry import (
    REGISTER_DENIED,
    Ack,
    DeviceInfo,
    DeviceListing,
    EventType,
    LeaseTable,
    RegisterRequest,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from tests.registry.conftest import HEARTBEAT, wait_for
from tests.registry.procs import _probe_classes

pytestmark = pytest.mark.timeout(15)

ProbeDevice, ProbeClient = _probe_classes()

#: Longest time a refused handshake may take to be reported (RELIABILITY.md: within a second).
QUICK = 1.5
ALIVE = 5  # device lease length in seconds: long enough that no renewal matters here


class Keys:
    """Keypairs generated into a test's folder, by role."""

    def __init__(self, folder: Path) -> None:
        self.public: dict[str, str] = {}
        self.secret: dict[str, str] = {}
        for role in ("registry", "device", "device2", "user", "admin", "stranger"):
            public_path, secret_path = generate_keypair(folder, role)
            self.public[role] = load_public_key(public_path)
            self.secret[role] = load_secret_key(secret_path)

    def client(self, role: str, registry_key: str | None = None) -> Settings:
        """Settings of a process that only knows its keypair and the registry's key."""
        return Settings(
            security=Security(
                client_secret_key=self.secret[role],
                server_key=registry_key or self.public["registry"],
            )
        )

    def device(self, role: str) -> Settings:
        """Settings of a device: its own keypair (server and client), the registry's key."""
        return Settings(
            security=Security(
                secret_key=self.secret[role],
                server_key=self.public["registry"],
                allowed_keys=frozenset({self.public["user"], self.public["admin"]}),
            )
        )


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@contextmanager
def foreign_publisher_registry(keys: Keys) -> Iterator[str]:
    """A registry stand-in that lets "user" in, but publishes its events under another key.

    Its request socket answers every request with an empty listing; its event publisher holds
    the device's keypair, so a client that trusts the registry's key is refused there alone.
    Yields the request endpoint.
    """
    allowed = frozenset({keys.public["user"]})
    router = Transport(
        None, Settings(security=Security(secret_key=keys.secret["registry"], allowed_keys=allowed))
    ).bind(SocketType.ROUTER, "tcp://127.0.0.1:0")
    publisher = Transport(
        None, Settings(security=Security(secret_key=keys.secret["device"], allowed_keys=allowed))
    ).bind(SocketType.PUB, "tcp://127.0.0.1:0")
    listing = DeviceListing((), "stand-in", 0, event_port=parse_endpoint(publisher.endpoint).port)
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            frames = router.recv(50)
            if frames is not None:
                *envelope, data = frames
                _, meta = decode_request(data, Limits())
                router.send([*envelope, encode_reply(listing, meta)])

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield router.endpoint
    finally:
        stop.set()
        thread.join()
        router.close(linger_ms=0)
        publisher.close(linger_ms=0)


def test_watch_refused_by_the_event_publisher_fails_fast(keys):
    settings = keys.client("user")
    with foreign_publisher_registry(keys) as url, RegistryClient(url, settings=settings) as client:
        assert client.list_devices() == []  # the request socket lets the user in
        started = time.monotonic()
        with pytest.raises(AuthenticationError):
            client.watch()
        assert time.monotonic() - started < 1.0


@pytest.fixture
def secured_registry(keys: Keys) -> Iterator[DeviceRegistry]:
    members = {keys.public[role] for role in ("device", "device2", "user", "admin")}
    security = Security(
        secret_key=keys.secret["registry"],
        allowed_keys=frozenset(members),
        admin_keys=frozenset({keys.public["admin"]}),
    )
    transport = Transport(None, Settings(security=security))
    service = DeviceRegistry(transport, "127.0.0.1", "0", heartbeat_interval=HEARTBEAT)
    service.start()
    yield service
    service.stop()


def serve(settings: Settings, registry_url: str, name: str = "cam", **options: Any) -> Any:
    """A secured RPC device registered with the registry (closed on failure)."""
    server = ProbeDevice(None, "tcp://127.0.0.1:0", alive_timeout=ALIVE, settings=settings)
    server.start()
    try:
        server.register_to_registry("probe", name, registry_url, **options)
    except BaseException:
        server.close()
        raise
    return server


# ------------------------------------------------------------------------------- end to end


def test_client_learns_the_device_key_from_the_registry(secured_registry, keys):
    server = serve(keys.device("device"), secured_registry.url)
    try:
        [info] = secured_registry.list_devices()
        assert info.public_key == keys.public["device"] != keys.public["registry"]
        # The client knows the registry's key and its own keypair, nothing about the device.
        with connect(ProbeClient, "cam", secured_registry.url, settings=keys.client("user")) as c:
            assert c.server_key == keys.public["device"]
            assert c.whoami()["name"] == "cam"
        with RegistryClient(secured_registry.url, settings=keys.client("user")) as registry:
            assert registry.lookup("cam").public_key == keys.public["device"]
    finally:
        server.close()


def test_watchers_see_device_keys_in_events(secured_registry, keys):
    registry = RegistryClient(secured_registry.url, settings=keys.client("user"))
    with registry, registry.watch() as watch:
        snapshot = watch.next_event(timeout=5)
        assert snapshot is not None and snapshot.kind == WatchEventKind.SNAPSHOT
        server = serve(keys.device("device"), secured_registry.url)
        try:
            added = watch.next_event(timeout=5)
            assert added is not None and added.kind == WatchEventKind.ADDED
            assert added.device is not None
            assert added.device.public_key == keys.public["device"]
            assert watch.devices["cam"].public_key == keys.public["device"]
        finally:
            server.close()
        removed = watch.next_event(timeout=5)
        assert removed is not None and removed.kind == WatchEventKind.REMOVED
        assert removed.device is not None
        assert removed.device.public_key == keys.public["device"]


# ------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("who", ["stranger", "wrong-registry-key"])
def test_unknown_client_cannot_list_and_fails_fast(secured_registry, keys, who):
    if who == "stranger":
        settings = keys.client("stranger")
    else:
        settings = keys.client("user", registry_key=keys.public["device"])
    authenticator = secured_registry.transport.authenticator
    assert authenticator is not None
    denied_before = authenticator.denied_count
    with RegistryClient(secured_registry.url, settings=settings, timeout=5) as registry:
        started = time.monotonic()
        with pytest.raises(AuthenticationError):
            registry.list_devices()
        assert time.monotonic() - started < QUICK
        started = time.monotonic()
        with pytest.raises(AuthenticationError):  # at once, without a new handshake
            registry.list_devices()
        assert time.monotonic() - started < 0.2
    if who == "stranger":
        assert authenticator.denied_count - denied_before == 1  # no reconnect loop
    with pytest.raises(AuthenticationError):
        connect(ProbeClient, "cam", secured_registry.url, settings=settings, lookup_timeout=5)


def test_unknown_device_cannot_register_and_fails_fast(secured_registry, keys):
    stranger = keys.device("stranger")
    server = ProbeDevice(None, "tcp://127.0.0.1:0", alive_timeout=ALIVE, settings=stranger)
    server.start()
    try:
        started = time.monotonic()
        with pytest.raises(AuthenticationError):
            server.register_to_registry("probe", "cam", secured_registry.url)
        assert time.monotonic() - started < QUICK
        started = time.monotonic()
        with pytest.raises(AuthenticationError):
            register_device(
                Transport(None, stranger), "probe", "tcp://127.0.0.1:1", "x", secured_registry.url
            )
        assert time.monotonic() - started < QUICK
    finally:
        server.close()
    assert secured_registry.get_devices() == {}


# -------------------------------------------------------------------------- authorisation


def test_takeover_of_a_name_needs_an_admin_key(secured_registry, keys, caplog):
    url = secured_registry.url
    holder = serve(keys.device("device"), url)
    try:
        address = holder.advertised_endpoint()
        other = Transport(None, keys.device("device2"))
        with caplog.at_level(logging.WARNING, logger="labwire.registry.service"):
            refused = register_device(other, "probe", "tcp://127.0.0.1:1", "cam", url, True)
        assert refused == ""
        assert any(
            keys.public["device2"] in record.getMessage() and "admin" in record.getMessage()
            for record in caplog.records
        ), "the refusal is logged with the client's key"
        keeper = RegistrationKeeper(
            other, "probe", "cam", "tcp://127.0.0.1:1", url, overwrite=True, alive_timeout=ALIVE
        )
        started = time.monotonic()
        with pytest.raises(PermissionDenied, match=REGISTER_DENIED):
            keeper.start()
        assert time.monotonic() - started < QUICK
        assert secured_registry.get_devices()["cam"] == ("probe", address)

        # Without overwrite the seed's rule applies: the newcomer gets a suffix.
        granted = register_device(other, "probe", "tcp://127.0.0.1:2", "cam", url)
        assert isinstance(granted, tuple) and granted[0] == "cam-1"

        # The key that holds a name may take it back (a device restarting under its key).
        again = register_device(other, "probe", "tcp://127.0.0.1:3", "cam-1", url, True)
        assert isinstance(again, tuple) and again[0] == "cam-1"
        assert secured_registry.get_devices()["cam-1"] == ("probe", "tcp://127.0.0.1:3")

        # An admin key may take any name over.
        admin = Transport(None, keys.client("admin"))
        with RegistrationKeeper(
            admin, "probe", "cam", "tcp://127.0.0.1:4", url, overwrite=True, alive_timeout=ALIVE
        ) as taken:
            assert taken.name == "cam"
            assert secured_registry.get_devices()["cam"] == ("probe", "tcp://127.0.0.1:4")
            # The displaced device registers again under another name, never silently.
            wait_for(
                lambda: (
                    holder.name not in ("", "cam")
                    and secured_registry.get_devices().get(holder.name) == ("probe", address)
                ),
                timeout=ALIVE,
                what="the displaced device registers again",
            )
    finally:
        holder.close()


def test_keeper_refused_a_takeover_later_registers_under_another_name(secured_registry, keys):
    url = secured_registry.url
    healthy = threading.Event()
    healthy.set()
    names: list[str] = []
    keeper = RegistrationKeeper(
        Transport(None, keys.device("device")),
        "probe",
        "x",
        "tcp://127.0.0.1:5",
        url,
        overwrite=True,
        alive_timeout=1.0,
        health_check=healthy.is_set,
        on_name_change=names.append,
    )
    with keeper:
        healthy.clear()  # the device stops renewing; its lease runs out
        wait_for(lambda: "x" not in secured_registry.get_devices(), what="lease expired")
        other = Transport(None, keys.device("device2"))
        assert register_device(other, "probe", "tcp://127.0.0.1:6", "x", url)[0] == "x"
        healthy.set()  # its takeover is refused: it registers as x-1 instead of failing
        wait_for(lambda: names == ["x-1"], what="registered again without overwrite")
        assert secured_registry.get_devices()["x"] == ("probe", "tcp://127.0.0.1:6")
        assert secured_registry.get_devices()["x-1"] == ("probe", "tcp://127.0.0.1:5")


def test_overwrite_without_security_is_unchanged(registry):
    transport = Transport(None)
    first = register_device(transport, "probe", "tcp://127.0.0.1:1", "cam", registry.url)
    assert isinstance(first, tuple)
    taken = register_device(transport, "probe", "tcp://127.0.0.1:2", "cam", registry.url, True)
    assert isinstance(taken, tuple) and taken[0] == "cam"
    assert registry.list_devices()[0].public_key == ""


# ------------------------------------------------------------------------------ the wire

LIMITS = Limits()
KEY = zmq.curve_keypair()[0].decode("ascii")


def test_register_carries_the_public_key_only_when_there_is_one():
    plain = encode_request(RegisterRequest("probe", "tcp://h:1", "cam"))
    assert b"public_key" not in plain
    data = encode_request(RegisterRequest("probe", "tcp://h:1", "cam", public_key=KEY), 7)
    request, _ = decode_request(data, LIMITS)
    assert isinstance(request, RegisterRequest) and request.public_key == KEY
    with pytest.raises(ProtocolError, match="public_key"):
        decode_request(data.replace(KEY.encode(), b"not-a-key"), LIMITS)
    # Records without the field (older labwire registries) decode with no key.
    assert DeviceInfo.from_json({"name": "a", "device_type": "t", "address": "x"}).public_key == ""
    record = DeviceInfo("a", "t", "x", 1.0, 2.0, "i", 3.0, KEY)
    assert DeviceInfo.from_json(record.to_json()) == record


def test_refused_register_reply_is_an_ack_without_success():
    reply, _ = decode_reply(encode_reply(Ack(EventType.REGISTER, False, REGISTER_DENIED)), LIMITS)
    assert isinstance(reply, Ack) and reply.is_permission_denied
    assert not Ack(EventType.CHECK_ALIVE, False, "unknown").is_permission_denied


def test_lease_table_takeover_rule():
    table = LeaseTable()
    table.register(0.0, RegisterRequest("t", "a", "cam", incarnation="i1"), owner="k1")
    steal = RegisterRequest("t", "b", "cam", overwrite=True, incarnation="i2")
    with pytest.raises(PermissionDenied):
        table.register(1.0, steal, owner="k2", may_take_over=False)
    assert table.get("cam") is not None and table.get("cam").address == "a"  # nothing changed
    # An incarnation id copied from another key's lease does not hand that lease back.
    copied = table.register(1.0, RegisterRequest("t", "a", "cam", incarnation="i1"), owner="k2")
    assert copied.name == "cam-1" and copied.is_new
    assert table.register(2.0, steal, owner="k1", may_take_over=False).name == "cam"
    assert table.register(3.0, steal, owner="k3", may_take_over=True).name == "cam"
