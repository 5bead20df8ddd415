"""Rig addresses: ``udp://HOST[:PORT]``, a bare host, a ZeroMQ URL or a registry name."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from labwire.errors import EndpointError
from labwire.wire.rigs.messages import (
    LISTEN_PORT,
)


@dataclass(frozen=True, slots=True)
class RigAddress:
    """Where a rig is and which link reaches it (see :func:`parse_rig_uri`).

    Attributes:
        link: ``"udp"`` (the deployed protocol), ``"zmq"`` (labwire's RPC transport) or
            ``"name"`` (a labwire registry name, reached over labwire's transport).
        host: UDP host ("" otherwise).
        port: UDP port (0 otherwise).
        url: The ZeroMQ URL, or the registry name, or ``udp://host:port``.
    """

    link: str
    host: str = ""
    port: int = 0
    url: str = ""


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_ZMQ_SCHEMES = ("tcp://", "ipc://", "inproc://")


def parse_rig_uri(uri: object, *, for_bind: bool = False) -> RigAddress:
    """Decide how to reach a rig from its URI.

    * ``udp://HOST[:PORT]``, an IP address, ``HOST:PORT`` or ``localhost`` (the forms the
      deployed code accepts; default port :data:`LISTEN_PORT`): the deployed UDP protocol.
    * ``tcp://``, ``ipc://`` or ``inproc://`` URLs: labwire's own transport.
    * A plain name (``camera-left``): a labwire registry name. A host name that is not a
      registry name needs the ``udp://`` scheme.

    Args:
        uri: The URI.
        for_bind: The address is one to listen on: port 0 (any free port) is allowed.

    Raises:
        EndpointError: The URI has none of these forms or a bad port.
    """
    if isinstance(uri, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return RigAddress("udp", str(uri), LISTEN_PORT, f"udp://{uri}:{LISTEN_PORT}")
    if not isinstance(uri, str) or not uri.strip():
        raise EndpointError(f"a rig URI must be a non-empty string, got {uri!r}")
    text = uri.strip()
    if text.startswith(_ZMQ_SCHEMES):
        return RigAddress("zmq", url=text)
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() != "udp":
        raise EndpointError(
            f"unsupported rig URI scheme {scheme!r} in {text!r}: use udp://, tcp://, ipc:// "
            "or a registry name"
        )
    body = rest if sep else text
    host, port = _split_host_port(body, text, 0 if for_bind else 1)
    if not sep and port is None and not _is_ip(host) and host != "localhost":
        if not _NAME.match(host):
            raise EndpointError(f"{text!r} is neither a rig URI nor a registry name")
        return RigAddress("name", url=host)
    if not host:
        raise EndpointError(f"rig URI {text!r} names no host")
    port = LISTEN_PORT if port is None else port
    shown = f"[{host}]" if ":" in host else host
    return RigAddress("udp", host, port, f"udp://{shown}:{port}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _split_host_port(body: str, text: str, lowest: int) -> tuple[str, int | None]:
    if body.startswith("["):
        host, bracket, after = body[1:].partition("]")
        if not bracket:
            raise EndpointError(f"unclosed '[' in rig URI {text!r}")
        port_text = after[1:] if after.startswith(":") else None
        if after and port_text is None:
            raise EndpointError(f"unexpected {after!r} after the address in {text!r}")
    elif body.count(":") == 1:
        host, _, port_text = body.partition(":")
    else:
        host, port_text = body, None
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not lowest <= int(port_text) <= 65535:
        raise EndpointError(f"invalid port {port_text!r} in rig URI {text!r} ({lowest}-65535)")
    return host, int(port_text)
