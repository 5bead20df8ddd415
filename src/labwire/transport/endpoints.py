"""Endpoint parsing: one strict parser for every address labwire binds or connects to.

Accepted forms::

    tcp://HOST:PORT     HOST: hostname (letters, digits, hyphens, dots), IPv4, [IPv6], or *
                        PORT: 0-65535, or * / 0 (any free port, bind only)
    tcp://HOST          bind only: any free port
    ipc://PATH          Unix domain socket
    inproc://NAME       in-process

Rejected with :class:`~labwire.errors.EndpointError`: ``tcp://host:port:port``, an empty host,
ports out of range, spaces, unknown schemes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from labwire.errors import EndpointError

__all__ = ["Endpoint", "parse_endpoint", "primary_ip", "url_parser"]

#: The URL pattern deployed RPC code imports as ``url_parser``: ``url_parser.match(url)``
#: gives the scheme, the host (letters, digits and dots) and the port ("" when absent) as its
#: three groups. It checks nothing: labwire itself parses with :func:`parse_endpoint`.
url_parser = re.compile(r"(?P<scheme>[A-Za-z]*)://(?P<host>[A-Za-z0-9.]*):?(?P<port>[0-9]*)")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A parsed ZeroMQ endpoint.

    Attributes:
        scheme: ``"tcp"``, ``"ipc"`` or ``"inproc"``.
        host: TCP host (without brackets for IPv6), ``"*"`` for all interfaces; "" otherwise.
        port: TCP port; 0 means "any free port". None for ipc/inproc.
        path: ipc path or inproc name; "" for tcp.
    """

    scheme: str
    host: str = ""
    port: int | None = None
    path: str = ""

    @property
    def is_tcp(self) -> bool:
        """Whether this is a TCP endpoint."""
        return self.scheme == "tcp"

    @property
    def is_ipv6(self) -> bool:
        """Whether the host is an IPv6 literal."""
        return ":" in self.host

    @property
    def is_wildcard(self) -> bool:
        """Whether the host is ``*`` or an unspecified address (binds every interface)."""
        return self.host in ("*", "0.0.0.0", "::")

    def with_port(self, port: int) -> Endpoint:
        """The same endpoint with another port."""
        return Endpoint(self.scheme, self.host, port, self.path)

    def with_host(self, host: str) -> Endpoint:
        """The same endpoint with another host."""
        return Endpoint(self.scheme, host, self.port, self.path)

    def __str__(self) -> str:
        if self.scheme != "tcp":
            return f"{self.scheme}://{self.path}"
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        port = "*" if not self.port else str(self.port)
        return f"tcp://{host}:{port}"


def _parse_port(text: str, url: str) -> int:
    if text == "*":
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise EndpointError(f"invalid port {text!r} in endpoint {url!r}")
    port = int(text)
    if port > 65535:
        raise EndpointError(f"port {port} out of range in endpoint {url!r}")
    return port


def _check_host(host: str, url: str) -> str:
    if host == "*":
        return host
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host.split("%", 1)[0])) + (
                "%" + host.split("%", 1)[1] if "%" in host else ""
            )
        except ValueError:
            raise EndpointError(f"invalid IPv6 address {host!r} in endpoint {url!r}") from None
    if not _HOSTNAME.match(host):
        raise EndpointError(f"invalid host {host!r} in endpoint {url!r}")
    return host


def parse_endpoint(url: str, *, for_bind: bool = False) -> Endpoint:
    """Parse and validate an endpoint.

    Args:
        url: The endpoint text, e.g. ``"tcp://rpi-camera-2:5000"``.
        for_bind: Allow a missing port and port 0/``*`` (any free port).

    Returns:
        The parsed endpoint.

    Raises:
        EndpointError: ``url`` is not a usable endpoint; the message says why.
    """
    if not isinstance(url, str):
        raise EndpointError(f"endpoint must be a string, got {type(url).__name__}")
    if not url or any(ch.isspace() for ch in url):
        raise EndpointError(f"invalid endpoint {url!r}: empty or contains white space")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise EndpointError(f"invalid endpoint {url!r}: expected scheme://address")
    if scheme in ("ipc", "inproc"):
        if not rest:
            raise EndpointError(f"invalid endpoint {url!r}: empty {scheme} path")
        return Endpoint(scheme, path=rest)
    if scheme != "tcp":
        raise EndpointError(f"unsupported scheme {scheme!r} in {url!r} (use tcp, ipc or inproc)")
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket:
            raise EndpointError(f"invalid endpoint {url!r}: unclosed '[' in IPv6 address")
        if tail and not tail.startswith(":"):
            raise EndpointError(f"invalid endpoint {url!r}: expected ':' after ']'")
        port_text = tail[1:] if tail else None
        if ":" not in host:
            raise EndpointError(f"invalid endpoint {url!r}: brackets are for IPv6 addresses")
    else:
        if rest.count(":") > 1:
            raise EndpointError(
                f"invalid endpoint {url!r}: more than one ':' (IPv6 addresses need [brackets])"
            )
        host, colon, port_text_raw = rest.partition(":")
        port_text = port_text_raw if colon else None
    if not host:
        raise EndpointError(f"invalid endpoint {url!r}: empty host")
    host = _check_host(host, url)
    if port_text is None or port_text == "":
        if port_text == "" or not for_bind:
            raise EndpointError(f"invalid endpoint {url!r}: missing port")
        port = 0
    else:
        port = _parse_port(port_text, url)
    if port == 0 and not for_bind:
        raise EndpointError(f"invalid endpoint {url!r}: port 0 or * can only be bound")
    if host == "*" and not for_bind:
        raise EndpointError(f"invalid endpoint {url!r}: cannot connect to '*'")
    return Endpoint("tcp", host, port)


def primary_ip() -> str:
    """This host's first non-loopback IPv4 address by name resolution, else loopback."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return "127.0.0.1"
    for *_, address in infos:
        if not str(address[0]).startswith("127."):
            return str(address[0])
    return "127.0.0.1"
