"""The only package that talks to ZeroMQ: socket factory, endpoints, error translation."""

from labwire.transport.endpoints import Endpoint, parse_endpoint, primary_ip
from labwire.transport.sockets import (
    Context,
    Poller,
    Socket,
    SocketType,
    Transport,
    default_context,
    translate_errors,
)

__all__ = [
    "Context",
    "Endpoint",
    "Poller",
    "Socket",
    "SocketType",
    "Transport",
    "default_context",
    "parse_endpoint",
    "primary_ip",
    "translate_errors",
]
