"""Traffic between two namespace hosts during a secured call carries no plaintext.

A sniffer (a raw AF_PACKET socket) records every frame on the server host's interface while a
client on another host calls ``echo`` with a recognisable argument. Without security the
argument shows in the capture (so the capture works); with CurveZMQ it does not.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labwire.testing.netns import NamespaceHost, NamespaceNetwork, namespaces_unavailable
from labwire.transport.security import generate_keypair
from tests.rpc.conftest import ROOT

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(namespaces_unavailable() is not None, reason=str(namespaces_unavailable())),
]

MARKER = "LABWIRE-PLAINTEXT-MARKER-7f3a9c"

SNIFFER = textwrap.dedent(
    """
    import socket, sys
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sniffer.bind(("eth0", 0))
    sniffer.settimeout(0.1)
    with open(sys.argv[1], "wb") as out:
        print("ready", flush=True)
        while True:
            try:
                out.write(sniffer.recv(65535))
                out.flush()
            except socket.timeout:
                pass
    """
)

SERVER = textwrap.dedent(
    """
    import sys
    from labwire.config import Settings
    from labwire.transport.security import Security, load_secret_key, load_public_key
    from tests.rpc.devices import Camera
    keys = sys.argv[2]
    settings = Settings()
    if keys != "-":
        settings = Settings(security=Security(
            secret_key=load_secret_key(f"{keys}/server.key_secret"),
            allowed_keys=frozenset({load_public_key(f"{keys}/client.key")}),
        ))
    server = Camera(None, sys.argv[1], settings=settings)
    print(server.endpoint, flush=True)
    server.serve_forever()
    """
)

CLIENT = textwrap.dedent(
    """
    import sys
    from labwire.config import Settings
    from labwire.transport.security import Security, load_secret_key, load_public_key
    from tests.rpc.devices import CameraClient
    keys = sys.argv[2]
    settings = Settings()
    if keys != "-":
        settings = Settings(security=Security(
            client_secret_key=load_secret_key(f"{keys}/client.key_secret"),
            server_key=load_public_key(f"{keys}/server.key"),
        ))
    with CameraClient(None, sys.argv[1], settings=settings) as client:
        result = client.echo(sys.argv[3])
        print("ok" if result == sys.argv[3] else f"wrong result {result!r}", flush=True)
    """
)


def _capture_call(
    server_host: NamespaceHost, client_host: NamespaceHost, keys: str, capture: Path
) -> bytes:
    sniffer = server_host.python("-c", SNIFFER, str(capture), stdout=subprocess.PIPE, text=True)
    assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "ready"
    server = server_host.python(
        "-c",
        SERVER,
        f"tcp://{server_host.address}:0",
        keys,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    endpoint = server.stdout.readline().strip()
    assert endpoint.startswith("tcp://")
    result = client_host.run([sys.executable, "-c", CLIENT, endpoint, keys, MARKER * 4], timeout=30)
    assert result.stdout.strip() == "ok", result.stderr
    for process in (server, sniffer):
        process.kill()
        process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
    return capture.read_bytes()


def test_secured_call_leaves_no_plaintext_on_the_wire(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("server", "client"):
        generate_keypair(keys, name)
    with NamespaceNetwork(subnet="10.78.0.0/24") as network:
        server_host, client_host = network.add_host("srv"), network.add_host("cli")
        plain = _capture_call(server_host, client_host, "-", tmp_path / "plain.bin")
        secured = _capture_call(server_host, client_host, str(keys), tmp_path / "secure.bin")
    assert MARKER.encode() in plain, "the capture did not see the plaintext call"
    assert len(secured) > 1000, "the capture of the secured call is empty"
    assert MARKER.encode() not in secured
    assert b"METHOD_CALL" not in secured and b"echo" not in secured
