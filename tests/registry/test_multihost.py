"""Tier 3: registry, two devices and a client on four hosts (network namespaces).

Connect by name across hosts; cut one device's link: it is removed; heal: it returns.
"""

from __future__ import annotations

import subprocess
import sys
import time

from tests.registry.conftest import TTL
from tests.registry.procs import Proc, ProcessPool

RENEW = TTL / 4


def call_until(client: Proc, word: str, timeout: float) -> list[str]:
    """Send "call" until the client answers with ``word`` (RESULT or ERROR)."""
    deadline = time.monotonic() + timeout
    while True:
        client.drain()
        client.send("call")
        answer = client.expect_any(("RESULT", "ERROR"), timeout=3.0)
        if answer[0] == word:
            return answer[1:]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {word} within {timeout} s (last: {answer})")


def test_connect_by_name_across_hosts_cut_and_heal(network, processes: ProcessPool):
    hub = network.add_host("registry")
    camera_host = network.add_host("camera")
    stage_host = network.add_host("stage")
    client_host = network.add_host("client")

    registry = processes.registry(addr=hub.address, prefix=hub.prefix)
    registry_url = registry.expect("READY", timeout=10)[0]
    assert registry_url.startswith(f"tcp://{hub.address}:")

    camera = processes.device(
        registry_url,
        "cam",
        "--rpc",
        "--bind",
        f"tcp://{camera_host.address}:0",
        prefix=camera_host.prefix,
    )
    stage = processes.device(
        registry_url,
        "cnc",
        "--rpc",
        "--type",
        "stage",
        "--bind",
        f"tcp://{stage_host.address}:0",
        prefix=stage_host.prefix,
    )
    assert camera.expect("REGISTERED", timeout=10)[1].startswith(f"tcp://{camera_host.address}:")
    assert stage.expect("REGISTERED", timeout=10)[1].startswith(f"tcp://{stage_host.address}:")

    client = processes.start(
        "client", "--registry", registry_url, "--name", "cam", prefix=client_host.prefix
    )
    assert client.expect("READY", timeout=10)[0].startswith(f"tcp://{camera_host.address}:")
    assert client.expect("EVENT")[:2] == ["snapshot", "cam,cnc"]
    name, pid, _url = call_until(client, "RESULT", timeout=5)
    assert (name, int(pid)) == ("cam", camera.pid)

    camera_host.cut()
    cut_at = time.monotonic()
    assert client.expect("EVENT", timeout=TTL + 2) == ["removed", "cam", "expired"]
    assert time.monotonic() - cut_at <= TTL + RENEW + 0.5
    assert registry.expect("REMOVED")[0] == "cam"
    call_until(client, "ERROR", timeout=5)  # the device is unreachable: a clear error, no hang

    camera_host.heal()
    assert client.expect("EVENT", timeout=5) == ["added", "cam", "-"]
    name, pid, _url = call_until(client, "RESULT", timeout=10)
    assert (name, int(pid)) == ("cam", camera.pid)
    # the other device never left
    assert "cnc" not in " ".join(
        line for line in client.history if line.startswith("EVENT removed")
    )


def test_namespace_hosts_cut_heal_and_cleanup(network):
    server_host, client_host = network.add_host("srv"), network.add_host("cli")
    server = server_host.python(
        "-c",
        "import socket, sys\n"
        "s = socket.socket(); s.bind((sys.argv[1], 7000)); s.listen()\n"
        "print('up', flush=True)\n"
        "while True: s.accept()[0].close()\n",
        server_host.address,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout.readline().strip() == "up"
    probe = [
        sys.executable,
        "-c",
        "import socket, sys\n"
        "try: socket.create_connection((sys.argv[1], 7000), timeout=0.5); print('ok')\n"
        "except OSError as exc: print(type(exc).__name__)\n",
        server_host.address,
    ]
    assert client_host.run(probe).stdout.strip() == "ok"
    server_host.cut()
    assert client_host.run(probe).stdout.strip() in ("TimeoutError", "timeout")
    server_host.heal()
    assert client_host.run(probe).stdout.strip() == "ok"
    namespaces = {server_host.namespace, client_host.namespace, network.hub}
    network.close()
    assert server.poll() is not None  # killed by PID on close
    server.stdout.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not namespaces & {line.split()[0] for line in listed.splitlines() if line}
