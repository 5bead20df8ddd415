"""CurveZMQ security in labwire.transport: RELIABILITY rows S1, S2, S3, S9 and the authenticator.

Real sockets on 127.0.0.1 only. Each test gets its own ZeroMQ context (so its own ZAP handler),
and the teardown fails the test when a thread or a socket outlives it.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from labwire.config import Settings, security_from_env
from labwire.errors import AuthenticationError, ConfigurationError, SecurityConfigError
from labwire.transport import Socket, SocketType, Transport
from labwire.transport.security import (
    Security,
    ensure_keypair,
    generate_keypair,
    load_public_key,
    load_public_keys,
    load_secret_key,
    public_key_from_secret,
    public_key_of,
)

pytestmark = pytest.mark.timeout(20)

LOCAL = "tcp://127.0.0.1:0"


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    threads_before = set(threading.enumerate())
    context: zmq.Context[Any] = zmq.Context()
    yield context
    # Every socket must be closed by now, so term() returns at once; if it does not, a socket
    # leaked: fail, and destroy the context so the run can go on.
    terminator = threading.Thread(target=context.term, name="test-term")
    terminator.start()
    terminator.join(2.0)
    if terminator.is_alive():
        context.destroy(linger=0)
        terminator.join(2.0)
        pytest.fail("a socket was left open (the context could not terminate)")
    deadline = time.monotonic() + 2.0
    while (leaked := set(threading.enumerate()) - threads_before) and time.monotonic() < deadline:
        next(iter(leaked)).join(deadline - time.monotonic())
    assert not leaked, f"threads left running: {leaked}"


class Closer:
    """Closes what a test opened, in reverse order, before the context terminates."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def __call__(self, item: Any) -> Any:
        self.items.append(item)
        return item

    def close_all(self) -> None:
        for item in reversed(self.items):
            if isinstance(item, zmq.Socket):
                item.close(linger=0)
            else:
                item.close()


@pytest.fixture
def closing(ctx: zmq.Context[Any]) -> Iterator[Closer]:
    closer = Closer()
    yield closer
    closer.close_all()


def keypair() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode("ascii"), secret.decode("ascii")


def transport(ctx: zmq.Context[Any], security: Security | None, **settings: Any) -> Transport:
    return Transport(ctx, Settings(security=security, **settings))


def text_of(frames: list[zmq.Frame]) -> list[bytes]:
    return [frame.bytes for frame in frames]


def exchange_dealer_router(client: Socket, server: Socket) -> list[zmq.Frame]:
    """Send a request and its reply; return the frames the server received."""
    assert client.wait_handshake(2000)
    assert client.send([b"ping"])
    frames = server.recv_frames(2000)
    assert frames is not None, "server got nothing"
    assert text_of(frames)[1:] == [b"ping"]
    assert server.send([frames[0], b"pong"])
    reply = client.recv(2000)
    assert reply is not None and [bytes(part) for part in reply] == [b"pong"]
    return frames


def raw_monitor(sock: Any, events: int, closing: Closer) -> zmq.Socket[Any]:
    monitor: zmq.Socket[Any] = sock.get_monitor_socket(events)
    monitor.setsockopt(zmq.LINGER, 0)

    class _Stop:
        def close(self) -> None:
            if not sock.closed:
                sock.disable_monitor()
            monitor.close(linger=0)

    closing(_Stop())
    return monitor


# ----------------------------------------------------------------------------------- key files


def test_generate_keypair_writes_0600_secret_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        public_path, secret_path = generate_keypair(tmp_path / "keys", "camera-1")
    finally:
        os.umask(old)
    assert public_path == tmp_path / "keys" / "camera-1.key"
    assert secret_path == tmp_path / "keys" / "camera-1.key_secret"
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    # pyzmq (and czmq) read the same files.
    public_raw, no_secret = zmq.auth.load_certificate(public_path)
    public_again, secret_raw = zmq.auth.load_certificate(secret_path)
    assert no_secret is None and public_raw == public_again and secret_raw is not None
    assert load_public_key(public_path) == public_raw.decode()
    assert load_secret_key(secret_path) == secret_raw.decode()
    assert public_key_of(secret_path) == public_key_of(public_path) == public_raw.decode()
    assert public_key_from_secret(secret_raw.decode()) == public_raw.decode()


def test_generate_keypair_never_overwrites_and_checks_the_name(tmp_path: Path) -> None:
    _, secret_path = generate_keypair(tmp_path, "rig")
    before = secret_path.read_bytes()
    with pytest.raises(SecurityConfigError, match="already exists"):
        generate_keypair(tmp_path, "rig")
    assert secret_path.read_bytes() == before
    for name in ("", "../evil", "a/b", ".hidden", "sp ace"):
        with pytest.raises(SecurityConfigError, match="invalid key name"):
            generate_keypair(tmp_path, name)


def test_ensure_keypair_makes_keys_once(tmp_path: Path) -> None:
    first = ensure_keypair(tmp_path, "lab")
    secret = load_secret_key(first[1])
    assert ensure_keypair(tmp_path, "lab") == first
    assert load_secret_key(first[1]) == secret
    first[0].unlink()
    with pytest.raises(SecurityConfigError, match="does not"):
        ensure_keypair(tmp_path, "lab")


def test_keys_made_by_pyzmq_load(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        public_file, secret_file = zmq.auth.create_certificates(tmp_path, "legacy")
    finally:
        os.umask(old)
    public_raw, secret_raw = zmq.auth.load_certificate(secret_file)
    assert load_public_key(public_file) == public_raw.decode()
    with pytest.raises(SecurityConfigError, match="chmod 600"):
        load_secret_key(secret_file)  # pyzmq writes it world-readable
    os.chmod(secret_file, 0o600)
    assert secret_raw is not None
    assert load_secret_key(secret_file) == secret_raw.decode()
    assert load_public_keys(tmp_path) == {public_raw.decode()}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_s9_secret_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    _, secret_path = generate_keypair(tmp_path, "device")
    os.chmod(secret_path, mode)
    with pytest.raises(SecurityConfigError) as caught:
        load_secret_key(secret_path)
    message = str(caught.value)
    assert str(secret_path) in message
    assert f"chmod 600 {secret_path}" in message
    # The same refusal at start-up, through the environment.
    with pytest.raises(SecurityConfigError, match=r"^LABWIRE_SECRET_KEY: .*chmod 600"):
        Settings.from_env({"LABWIRE_SECRET_KEY": str(secret_path)})
    os.chmod(secret_path, 0o600)
    assert Settings.from_env({"LABWIRE_SECRET_KEY": str(secret_path)}).security is not None


def test_bad_key_files_are_reported(tmp_path: Path) -> None:
    public_path, secret_path = generate_keypair(tmp_path, "x")
    with pytest.raises(SecurityConfigError, match="no secret-key"):
        load_secret_key(public_path)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("hello\n")
    with pytest.raises(SecurityConfigError, match="no public-key"):
        load_public_key(garbage)
    with pytest.raises(SecurityConfigError, match="cannot read"):
        load_public_key(tmp_path / "missing.key")
    mismatched = tmp_path / "mixed.key_secret"
    other_public, _ = keypair()
    mismatched.write_text(
        secret_path.read_text().replace(load_public_key(public_path), other_public)
    )
    mismatched.chmod(0o600)
    with pytest.raises(SecurityConfigError, match="do not belong together"):
        load_secret_key(mismatched)


OUT_OF_RANGE = "#" * 40  # forty valid Z85 characters that decode past 2**32


@pytest.mark.parametrize(
    "variable",
    [
        "LABWIRE_SECRET_KEY",
        "LABWIRE_CLIENT_SECRET_KEY",
        "LABWIRE_SERVER_KEY",
        "LABWIRE_ALLOWED_KEYS",
    ],
)
def test_a_key_that_decodes_out_of_range_is_refused_clearly(variable: str) -> None:
    with pytest.raises(SecurityConfigError, match=rf"^{variable}: .*decodes out of range"):
        Settings.from_env({variable: OUT_OF_RANGE})


def test_a_key_file_holding_an_out_of_range_key_is_refused_clearly(tmp_path: Path) -> None:
    public_path, secret_path = generate_keypair(tmp_path, "x")
    public = load_public_key(public_path)
    public_path.write_text(public_path.read_text().replace(public, OUT_OF_RANGE))
    with pytest.raises(SecurityConfigError, match=rf"{public_path}.*decodes out of range"):
        load_public_key(public_path)
    secret = load_secret_key(secret_path)
    secret_path.write_text(
        secret_path.read_text().replace(secret, OUT_OF_RANGE).replace(public, OUT_OF_RANGE)
    )
    with pytest.raises(SecurityConfigError, match="decodes out of range"):
        load_secret_key(secret_path)
    with pytest.raises(SecurityConfigError, match="decodes out of range"):
        Security(secret_key=OUT_OF_RANGE)
    with pytest.raises(SecurityConfigError, match="decodes out of range"):
        Security(allowed_keys=frozenset({OUT_OF_RANGE}))


# ------------------------------------------------------------------------------------ settings


def test_security_settings_validate_and_hide_secrets(tmp_path: Path) -> None:
    public, secret = keypair()
    security = Security(secret_key=secret, admin_keys=frozenset({public}))
    assert security.public_key == public
    assert secret not in repr(security)
    assert security.is_admin(public) and not security.is_admin(None)
    assert not security.is_admin(keypair()[0])
    with pytest.raises(SecurityConfigError, match="not a CurveZMQ key"):
        Security(secret_key="too-short")
    with pytest.raises(SecurityConfigError, match="collection of keys"):
        Security(allowed_keys=public)  # type: ignore[arg-type]
    with pytest.raises(SecurityConfigError, match="not a folder"):
        Security(allowed_keys_dirs=(tmp_path / "nope",))
    with pytest.raises(ConfigurationError, match=r"Settings\.security"):
        Settings(security="on")  # type: ignore[arg-type]


def test_security_from_env(tmp_path: Path) -> None:
    assert security_from_env({}) is None
    assert Settings.from_env({}).security is None
    server_public, server_secret = generate_keypair(tmp_path / "server", "server")
    clients = tmp_path / "clients"
    client_public, _ = generate_keypair(clients, "alice")
    admin_public, _ = generate_keypair(tmp_path / "admins", "bob")
    loose_key, _ = keypair()
    env = {
        "LABWIRE_SECRET_KEY": str(server_secret),
        "LABWIRE_SERVER_KEY": str(server_public),
        "LABWIRE_ALLOWED_KEYS": f"{clients}, {loose_key}",
        "LABWIRE_ADMIN_KEYS": str(admin_public),
    }
    security = Settings.from_env(env).security
    assert security is not None
    assert security.secret_key == load_secret_key(server_secret)
    assert security.server_key == load_public_key(server_public)
    assert security.allowed_keys == {loose_key}
    assert security.allowed_keys_dirs == (clients,)
    assert security.admin_keys == {load_public_key(admin_public)}
    assert not security.allow_any_client
    assert load_public_key(client_public) not in security.allowed_keys  # read per handshake
    any_client = security_from_env({"LABWIRE_ALLOWED_KEYS": "*"})
    assert any_client is not None and any_client.allow_any_client
    with pytest.raises(SecurityConfigError, match="LABWIRE_SERVER_KEY"):
        security_from_env({"LABWIRE_SERVER_KEY": str(tmp_path / "missing.key")})


# ------------------------------------------------------------------- allowed clients can talk


def test_allowed_client_dealer_router_and_peer_key(ctx: zmq.Context[Any], closing: Closer) -> None:
    server_public, server_secret = keypair()
    client_public, client_secret = keypair()
    server_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    )
    client_side = transport(ctx, Security(secret_key=client_secret, server_key=server_public))
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    client = closing(client_side.connect(SocketType.DEALER, server.endpoint))
    assert server.is_secure and client.is_secure
    frames = exchange_dealer_router(client, server)
    assert Socket.peer_key(frames[-1]) == client_public
    assert client.handshake_error() is None
    authenticator = server_side.authenticator
    assert authenticator is not None and authenticator.is_running
    assert authenticator.allowed_count == 1 and authenticator.denied_count == 0


def test_allowed_client_pub_sub(ctx: zmq.Context[Any], closing: Closer) -> None:
    server_public, server_secret = keypair()
    client_public, client_secret = keypair()
    publisher_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    )
    subscriber_side = transport(ctx, Security(secret_key=client_secret))
    publisher = closing(publisher_side.bind(SocketType.PUB, LOCAL))
    subscriber = closing(
        subscriber_side.connect(SocketType.SUB, publisher.endpoint, server_key=server_public)
    )
    subscriber.subscribe(b"")
    assert subscriber.wait_handshake(2000)
    # The subscription travels after the handshake: publish until the first message arrives.
    deadline = time.monotonic() + 5
    received = None
    while received is None and time.monotonic() < deadline:
        publisher.send([b"topic", b"value"])
        received = subscriber.recv(50)
    assert received is not None and [bytes(part) for part in received] == [b"topic", b"value"]


def test_client_with_the_servers_own_keypair_is_allowed_and_admin(
    ctx: zmq.Context[Any], closing: Closer
) -> None:
    public, secret = keypair()
    security = Security(secret_key=secret, server_key=public)
    lab = transport(ctx, security)
    server = closing(lab.bind(SocketType.ROUTER, LOCAL))
    client = closing(lab.connect(SocketType.DEALER, server.endpoint))
    frames = exchange_dealer_router(client, server)
    assert security.is_admin(Socket.peer_key(frames[-1]))


def test_from_folder_makes_a_lab_key_once_and_uses_it(
    tmp_path: Path, ctx: zmq.Context[Any], closing: Closer
) -> None:
    lab = Security.from_folder(tmp_path / "lab-keys")
    assert Security.from_folder(tmp_path / "lab-keys") == lab
    assert lab.server_key == lab.public_key
    side = transport(ctx, lab)
    server = closing(side.bind(SocketType.ROUTER, LOCAL))
    exchange_dealer_router(closing(side.connect(SocketType.DEALER, server.endpoint)), server)


def test_allowed_keys_folder_is_reread(
    tmp_path: Path, ctx: zmq.Context[Any], closing: Closer
) -> None:
    server_public, server_secret = keypair()
    folder = tmp_path / "allowed"
    folder.mkdir()
    server_side = transport(ctx, Security(secret_key=server_secret, allowed_keys_dirs=(folder,)))
    _, client_secret_path = generate_keypair(tmp_path / "mine", "client")
    client_side = transport(
        ctx,
        Security(secret_key=load_secret_key(client_secret_path), server_key=server_public),
        reconnect_ivl_max_ms=100,
    )
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    client = closing(client_side.connect(SocketType.DEALER, server.endpoint))
    with pytest.raises(AuthenticationError, match="refused this client's key"):
        client.wait_handshake(2000)
    # The lab adds the client's public key file to the folder; the next attempt gets in.
    (folder / "client.key").write_bytes((tmp_path / "mine" / "client.key").read_bytes())
    deadline = time.monotonic() + 2
    while not client.retry_handshake():
        assert time.monotonic() < deadline, "retry never allowed"
        client.handshake_error(20)
    exchange_dealer_router(client, server)


def test_secured_ipc_and_unconnected_client(
    tmp_path: Path, ctx: zmq.Context[Any], closing: Closer
) -> None:
    server_public, server_secret = keypair()
    client_public, client_secret = keypair()
    server_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    )
    client_side = transport(ctx, Security(secret_key=client_secret, server_key=server_public))
    server = closing(server_side.bind(SocketType.ROUTER, f"ipc://{tmp_path}/sock"))
    client = closing(client_side.unconnected(SocketType.DEALER))
    client.connect(server.endpoint)
    frames = exchange_dealer_router(client, server)
    assert Socket.peer_key(frames[-1]) == client_public


def test_inproc_sockets_are_not_secured(ctx: zmq.Context[Any], closing: Closer) -> None:
    _, secret = keypair()
    lab = transport(ctx, Security(secret_key=secret))
    server = closing(lab.bind(SocketType.ROUTER, Transport.unique_inproc("security")))
    client = closing(lab.connect(SocketType.DEALER, server.endpoint))
    assert not server.is_secure and not client.is_secure
    frames = exchange_dealer_router(client, server)
    assert Socket.peer_key(frames[-1]) is None
    assert lab.authenticator is None


def test_peer_key_is_none_without_security(ctx: zmq.Context[Any], closing: Closer) -> None:
    plain = transport(ctx, None)
    server = closing(plain.bind(SocketType.ROUTER, LOCAL))
    client = closing(plain.connect(SocketType.DEALER, server.endpoint))
    assert client.handshake_events is None and client.handshake_error() is None
    frames = exchange_dealer_router(client, server)
    assert Socket.peer_key(frames[-1]) is None


# --------------------------------------------------------------------- clients that get refused


def test_s1_client_without_keys_cannot_exchange_messages(
    ctx: zmq.Context[Any], closing: Closer
) -> None:
    _, server_secret = keypair()
    server = closing(
        transport(ctx, Security(secret_key=server_secret)).bind(SocketType.ROUTER, LOCAL)
    )
    intruder: zmq.Socket[Any] = closing(ctx.socket(zmq.DEALER))
    intruder.setsockopt(zmq.LINGER, 0)
    events = raw_monitor(intruder, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, closing)
    intruder.connect(server.endpoint)
    intruder.send(b"stop the server")
    assert events.poll(2000), "the plain-text handshake was not refused"
    assert recv_monitor_message(events)["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    assert server.recv(200) is None
    # A plain labwire client is refused the same way.
    plain = closing(transport(ctx, None).connect(SocketType.DEALER, server.endpoint))
    plain.send([b"hello"])
    assert server.recv(200) is None


def test_s2_unknown_client_key_is_refused(
    ctx: zmq.Context[Any], closing: Closer, caplog: pytest.LogCaptureFixture
) -> None:
    server_public, server_secret = keypair()
    server_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({keypair()[0]}))
    )
    stranger_public, stranger_secret = keypair()
    stranger_side = transport(ctx, Security(secret_key=stranger_secret, server_key=server_public))
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    stranger = closing(stranger_side.connect(SocketType.DEALER, server.endpoint))
    stranger.send([b"let me in"], nowait=True)
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, "labwire.transport.security"),
        pytest.raises(AuthenticationError, match="refused this client's key") as caught,
    ):
        stranger.wait_handshake(2000)
    assert time.monotonic() - started < 1.0
    assert stranger_public in str(caught.value)
    assert server.recv(200) is None
    authenticator = server_side.authenticator
    assert authenticator is not None and authenticator.denied_count == 1
    assert any(stranger_public in record.getMessage() for record in caplog.records)


def test_s3_wrong_server_key_fails_fast_and_never_spins(
    ctx: zmq.Context[Any], closing: Closer
) -> None:
    _, server_secret = keypair()
    client_public, client_secret = keypair()
    server_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    )
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    accepted = raw_monitor(server.fileno(), zmq.EVENT_ACCEPTED, closing)
    wrong_server_public, _ = keypair()
    client_side = transport(ctx, Security(secret_key=client_secret, server_key=wrong_server_public))
    started = time.monotonic()
    client = closing(client_side.connect(SocketType.DEALER, server.endpoint))
    error = client.handshake_error(1000)
    assert isinstance(error, AuthenticationError), error
    assert time.monotonic() - started < 1.0
    assert "public key is wrong" in str(error)
    # A caller that retries on every request, as fast as it can, for 2 s:
    attempts = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        client.retry_handshake()
        client.handshake_error(10)
        while accepted.poll(0):
            recv_monitor_message(accepted)
            attempts += 1
    # The first attempt plus at most one per reconnect_ivl_max_ms (1 s by default).
    assert 1 <= attempts <= 3, attempts
    assert client.handshake_error(1000) is not None
    assert server.recv(0) is None


def test_one_socket_many_servers_reports_the_failing_one(
    ctx: zmq.Context[Any], closing: Closer
) -> None:
    client_public, client_secret = keypair()
    publishers = []
    for _ in range(2):
        public, secret = keypair()
        side = transport(ctx, Security(secret_key=secret, allowed_keys=frozenset({client_public})))
        publishers.append((public, closing(side.bind(SocketType.PUB, LOCAL))))
    (good_key, good), (_, bad) = publishers
    subscriber_side = transport(ctx, Security(secret_key=client_secret))
    subscriber = closing(subscriber_side.unconnected(SocketType.SUB))
    subscriber.subscribe(b"")
    subscriber.connect(good.endpoint, server_key=good_key)
    subscriber.connect(bad.endpoint, server_key=keypair()[0])
    with pytest.raises(AuthenticationError) as caught:
        subscriber.wait_handshake(2000)
    assert bad.endpoint in str(caught.value) and good.endpoint not in str(caught.value)
    deadline = time.monotonic() + 5
    received = None
    while received is None and time.monotonic() < deadline:
        good.send([b"still", b"flowing"])
        received = subscriber.recv(50)
    assert received is not None
    # Leaving the bad endpoint clears its failure.
    subscriber.disconnect(bad.endpoint)
    assert subscriber.handshake_error() is None


def test_hostname_endpoint_failure_is_reported(ctx: zmq.Context[Any], closing: Closer) -> None:
    _, server_secret = keypair()
    client_public, client_secret = keypair()
    server_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    )
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    client_side = transport(ctx, Security(secret_key=client_secret, server_key=keypair()[0]))
    url = f"tcp://localhost:{server.port}"
    client = closing(client_side.connect(SocketType.DEALER, url))
    with pytest.raises(AuthenticationError, match="localhost"):
        client.wait_handshake(2000)


def test_server_key_override_per_connection(ctx: zmq.Context[Any], closing: Closer) -> None:
    server_public, server_secret = keypair()
    client_public, client_secret = keypair()
    server_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    )
    wrong, _ = keypair()
    client_side = transport(ctx, Security(secret_key=client_secret, server_key=wrong))
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    client = closing(
        client_side.connect(SocketType.DEALER, server.endpoint, server_key=server_public)
    )
    exchange_dealer_router(client, server)


def test_missing_keys_are_configuration_errors(ctx: zmq.Context[Any], closing: Closer) -> None:
    client_only = transport(ctx, Security(server_key=None, allowed_keys=frozenset()))
    with pytest.raises(SecurityConfigError, match="secret key"):
        client_only.bind(SocketType.ROUTER, LOCAL)
    with pytest.raises(SecurityConfigError, match="no server public key"):
        client_only.connect(SocketType.DEALER, "tcp://127.0.0.1:9")
    sock = closing(client_only.unconnected(SocketType.DEALER))
    with pytest.raises(SecurityConfigError, match="no server public key"):
        sock.connect("tcp://127.0.0.1:9")


# --------------------------------------------------------------------------- the authenticator


def test_key_check_that_raises_denies_and_the_server_keeps_working(
    ctx: zmq.Context[Any], closing: Closer, caplog: pytest.LogCaptureFixture
) -> None:
    server_public, server_secret = keypair()
    friend_public, friend_secret = keypair()
    trusted_public, trusted_secret = keypair()
    checked: list[str] = []

    def key_check(key: str) -> bool:
        checked.append(key)
        if key == trusted_public:
            return True
        raise RuntimeError("the key database is down")

    server_side = transport(
        ctx,
        Security(
            secret_key=server_secret,
            allowed_keys=frozenset({friend_public}),
            key_check=key_check,
        ),
    )
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    stranger_side = transport(ctx, Security(server_key=server_public))
    with caplog.at_level(logging.ERROR, "labwire.transport.security"):
        stranger = closing(stranger_side.connect(SocketType.DEALER, server.endpoint))
        with pytest.raises(AuthenticationError):
            stranger.wait_handshake(2000)
    assert any("key check failed" in record.getMessage() for record in caplog.records)
    assert any(record.exc_info for record in caplog.records)
    authenticator = server_side.authenticator
    assert authenticator is not None and authenticator.is_running
    # Listed keys never reach the callback; keys the callback accepts get in.
    for secret in (friend_secret, trusted_secret):
        side = transport(ctx, Security(secret_key=secret, server_key=server_public))
        exchange_dealer_router(closing(side.connect(SocketType.DEALER, server.endpoint)), server)
    assert friend_public not in checked and trusted_public in checked


def test_authenticator_stopped_fails_closed(ctx: zmq.Context[Any], closing: Closer) -> None:
    server_public, server_secret = keypair()
    client_public, client_secret = keypair()
    server_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    )
    client_side = transport(
        ctx, Security(secret_key=client_secret, server_key=server_public), reconnect_ivl_max_ms=50
    )
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    authenticator = server_side.authenticator
    assert authenticator is not None
    authenticator.stop()
    assert not authenticator.is_running
    client = closing(client_side.connect(SocketType.DEALER, server.endpoint))
    client.send([b"anyone there?"], nowait=True)
    with pytest.raises(AuthenticationError, match="authenticator is not running"):
        client.wait_handshake(2000)
    assert server.recv(200) is None
    # Back on: the client's next attempt gets in.
    authenticator.start()
    deadline = time.monotonic() + 2
    while not client.retry_handshake():
        assert time.monotonic() < deadline, "retry never allowed"
        client.handshake_error(20)
    exchange_dealer_router(client, server)


def test_authenticator_survives_malformed_zap_requests(
    ctx: zmq.Context[Any], closing: Closer
) -> None:
    server_public, server_secret = keypair()
    client_public, client_secret = keypair()
    server_side = transport(
        ctx, Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    )
    server = closing(server_side.bind(SocketType.ROUTER, LOCAL))
    for request in ([b"junk"], [b"1.0", b"1", b"d", b"a", b"", b"CURVE", b"short"], [b"9"] * 7):
        probe: zmq.Socket[Any] = closing(ctx.socket(zmq.REQ))
        probe.setsockopt(zmq.LINGER, 0)
        probe.connect("inproc://zeromq.zap.01")
        probe.send_multipart(request)
        assert probe.poll(2000)
        reply = probe.recv_multipart()
        assert reply[2] != b"200"
    client_side = transport(ctx, Security(secret_key=client_secret, server_key=server_public))
    exchange_dealer_router(closing(client_side.connect(SocketType.DEALER, server.endpoint)), server)


def test_servers_in_one_context_keep_their_own_allow_lists(
    ctx: zmq.Context[Any], closing: Closer
) -> None:
    alice_public, alice_secret = keypair()
    bob_public, _ = keypair()
    servers = []
    for allowed in (alice_public, bob_public):
        public, secret = keypair()
        side = transport(ctx, Security(secret_key=secret, allowed_keys=frozenset({allowed})))
        servers.append((public, closing(side.bind(SocketType.ROUTER, LOCAL)), side))
    (alice_server_key, alice_server, side_a), (bob_server_key, bob_server, side_b) = servers
    assert side_a.authenticator is side_b.authenticator is not None
    alice = transport(ctx, Security(secret_key=alice_secret))
    exchange_dealer_router(
        closing(
            alice.connect(SocketType.DEALER, alice_server.endpoint, server_key=alice_server_key)
        ),
        alice_server,
    )
    intruding = closing(
        alice.connect(SocketType.DEALER, bob_server.endpoint, server_key=bob_server_key)
    )
    with pytest.raises(AuthenticationError):
        intruding.wait_handshake(2000)
    # The authenticator stops with the last secured server socket.
    authenticator = side_a.authenticator
    assert authenticator is not None
    alice_server.close()
    assert authenticator.is_running
    bob_server.close()
    assert not authenticator.is_running and side_b.authenticator is None


def test_asyncio_shadow_context_shares_the_authenticator(
    ctx: zmq.Context[Any], closing: Closer
) -> None:
    server_public, server_secret = keypair()
    client_public, client_secret = keypair()
    security = Security(secret_key=server_secret, allowed_keys=frozenset({client_public}))
    shadow = zmq.asyncio.Context(shadow=ctx.underlying)
    sync_side, async_side = transport(ctx, security), transport(shadow, security)
    sync_server = closing(sync_side.bind(SocketType.ROUTER, LOCAL))
    async_server = closing(async_side.bind(SocketType.ROUTER, LOCAL))
    assert isinstance(async_server.fileno(), zmq.asyncio.Socket)
    assert sync_side.authenticator is async_side.authenticator is not None
    client_side = transport(shadow, Security(secret_key=client_secret, server_key=server_public))
    for server in (sync_server, async_server):
        client = closing(client_side.connect(SocketType.DEALER, server.endpoint))
        assert isinstance(client.fileno(), zmq.asyncio.Socket)
        assert client.wait_handshake(2000)


def test_a_foreign_zap_handler_is_reported(ctx: zmq.Context[Any], closing: Closer) -> None:
    foreign: zmq.Socket[Any] = closing(ctx.socket(zmq.REP))
    foreign.setsockopt(zmq.LINGER, 0)
    foreign.bind("inproc://zeromq.zap.01")
    _, secret = keypair()
    with pytest.raises(SecurityConfigError, match="another ZAP authenticator"):
        transport(ctx, Security(secret_key=secret)).bind(SocketType.ROUTER, LOCAL)
