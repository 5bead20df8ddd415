"""Several "hosts" on one Linux machine: network namespaces joined by a private bridge.

Theory of operation
-------------------
A :class:`NamespaceNetwork` creates one *hub* namespace holding a bridge (the switch), and for
every :meth:`~NamespaceNetwork.add_host` one more namespace (the host) linked to the hub by a
veth pair (the cable). Inside a host the cable end is called ``eth0`` and carries a private
address from the network's subnet; nothing is added to the machine's own namespace, so tests
cannot disturb it. :meth:`NamespaceHost.cut` sets the hub end of the cable down: packets from
and to the host are lost (the host keeps its address and routes, as when a cable is pulled at
the switch); :meth:`NamespaceHost.heal` sets it up again.

Processes run inside a host with ``ip netns exec``; those started through
:meth:`NamespaceHost.popen` are killed (by PID) when the network closes. Every name includes a
random token, so concurrent test runs do not collide, and everything is deleted in
:meth:`NamespaceNetwork.close` (also on errors). Needs root and the ``ip`` tool;
:func:`namespaces_unavailable` says why they cannot be used, for a clear skip.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, Self

__all__ = ["NamespaceHost", "NamespaceNetwork", "namespaces_unavailable"]

_log = logging.getLogger(__name__)

_IP_TIMEOUT = 10.0


def _ip(*args: str, namespace: str | None = None) -> None:
    argv = ["ip", *(["-n", namespace] if namespace else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=_IP_TIMEOUT)
    if result.returncode != 0:
        raise OSError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can.

    The check really creates and deletes a namespace, so a sandbox that forbids it is
    detected.
    """
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "the 'ip' tool (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"lw-probe-{secrets.token_hex(3)}"
    try:
        _ip("netns", "add", probe)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        _ip("link", "add", "lwprobe0", "type", "bridge", namespace=probe)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot create a bridge inside a namespace: {exc}"
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _ip("netns", "del", probe)
    return None


class NamespaceHost:
    """One host of a :class:`NamespaceNetwork` (made by :meth:`NamespaceNetwork.add_host`).

    Attributes:
        label: The short name given by the test.
        namespace: The network namespace's name.
        address: The host's IP address on the network.
        interface: The name of its network interface inside the namespace (``eth0``).
    """

    def __init__(
        self, network: NamespaceNetwork, label: str, namespace: str, address: str, cable: str
    ) -> None:
        self.label = label
        self.namespace = namespace
        self.address = address
        self.interface = "eth0"
        self._network = network
        self._cable = cable
        self.is_cut = False

    @property
    def prefix(self) -> list[str]:
        """The command prefix that runs a program inside this host."""
        return ["ip", "netns", "exec", self.namespace]

    def cut(self) -> None:
        """Disconnect the host from the network (its cable goes down at the switch)."""
        _ip("link", "set", self._cable, "down", namespace=self._network.hub)
        self.is_cut = True

    def heal(self) -> None:
        """Reconnect the host."""
        _ip("link", "set", self._cable, "up", namespace=self._network.hub)
        self.is_cut = False

    def popen(self, argv: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the host; it is killed when the network closes.

        Args:
            argv: The program and its arguments.
            **options: Passed to :class:`subprocess.Popen`.
        """
        process: subprocess.Popen[Any] = subprocess.Popen([*self.prefix, *argv], **options)
        self._network.processes.append(process)
        return process

    def run(self, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the host to completion and return its result (text output)."""
        return subprocess.run(
            [*self.prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )

    def python(self, *args: str, **options: Any) -> subprocess.Popen[Any]:
        """Start this Python interpreter inside the host with ``args``."""
        return self.popen([sys.executable, *args], **options)

    def __repr__(self) -> str:
        return f"NamespaceHost({self.label!r}, {self.address}, cut={self.is_cut})"


class NamespaceNetwork:
    """A private network of namespace hosts, deleted on :meth:`close` or context exit.

    Args:
        subnet: The IPv4 network the hosts get addresses from (hosts get .1, .2, ...).

    Attributes:
        token: The random token in every name this network creates.
        hub: The name of the hub (switch) namespace.
        hosts: The hosts, by label.
        processes: Processes started in the hosts (killed on close).

    Raises:
        OSError: A namespace or link could not be created (everything made so far is deleted).
    """

    def __init__(self, subnet: str = "10.77.0.0/24") -> None:
        self.token = secrets.token_hex(3)
        self.subnet = ipaddress.IPv4Network(subnet)
        self.hub = f"lw-{self.token}-hub"
        self.hosts: dict[str, NamespaceHost] = {}
        self.processes: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []
        self._addresses = self.subnet.hosts()
        try:
            self._add_namespace(self.hub)
            _ip("link", "add", "br0", "type", "bridge", namespace=self.hub)
            _ip("link", "set", "br0", "up", namespace=self.hub)
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("link", "set", "lo", "up", namespace=name)

    def add_host(self, label: str) -> NamespaceHost:
        """Create a host on this network.

        Args:
            label: A short name for the host (letters and digits), unique in this network.

        Returns:
            The host, already connected.
        """
        if label in self.hosts or not label.isalnum():
            raise ValueError(f"host label {label!r} must be alphanumeric and unique")
        index = len(self.hosts)
        namespace = f"lw-{self.token}-{label}"
        cable = f"lw{self.token}h{index}"  # hub side; at most 15 characters
        inner = f"lw{self.token}c{index}"
        address = str(next(self._addresses))
        try:
            self._add_namespace(namespace)
            _ip(
                "link",
                "add",
                inner,
                "netns",
                namespace,
                "type",
                "veth",
                "peer",
                "name",
                cable,
                "netns",
                self.hub,
            )
            _ip("link", "set", cable, "master", "br0", namespace=self.hub)
            _ip("link", "set", cable, "up", namespace=self.hub)
            _ip("link", "set", inner, "name", "eth0", namespace=namespace)
            _ip(
                "addr",
                "add",
                f"{address}/{self.subnet.prefixlen}",
                "dev",
                "eth0",
                namespace=namespace,
            )
            _ip("link", "set", "eth0", "up", namespace=namespace)
        except BaseException:
            self.close()
            raise
        host = NamespaceHost(self, label, namespace, address, cable)
        self.hosts[label] = host
        return host

    def close(self) -> None:
        """Kill the processes started in the hosts and delete every namespace (idempotent)."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGCONT)
                    os.kill(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        self.processes.clear()
        for name in reversed(self._namespaces):
            try:
                _ip("netns", "del", name)
            except (OSError, subprocess.SubprocessError) as exc:
                _log.warning("could not delete network namespace %s: %s", name, exc)
        self._namespaces.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
