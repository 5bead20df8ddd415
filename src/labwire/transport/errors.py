"""Error translation: ZeroMQ errors, by errno, become :mod:`labwire.errors` exceptions."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

import zmq

from labwire.errors import ClosedError, EndpointError, TransportError, Unavailable

__all__ = ["translate_errors"]


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Translate ZeroMQ errors raised inside the block into labwire errors.

    Args:
        what: A short description of the operation, used in error messages.
    """
    try:
        yield
    except zmq.ZMQError as exc:
        if exc.errno == zmq.ETERM:
            raise ClosedError(f"{what}: the ZeroMQ context was terminated") from exc
        if exc.errno == zmq.ENOTSOCK:
            raise ClosedError(f"{what}: the socket is closed") from exc
        if exc.errno == zmq.EADDRINUSE:
            raise EndpointError(f"{what}: address already in use") from exc
        if exc.errno in (zmq.EINVAL, zmq.EPROTONOSUPPORT, errno.ENODEV, zmq.EADDRNOTAVAIL):
            raise EndpointError(f"{what}: {exc.strerror}") from exc
        if exc.errno == zmq.EHOSTUNREACH:
            raise Unavailable(f"{what}: peer is not connected") from exc
        raise TransportError(f"{what}: {exc.strerror}") from exc
