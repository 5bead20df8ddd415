"""Small helpers of the cluster: durations, coroutine wrapping, addresses, debug output.

``DEBUG`` is the one switch the seed documents: ``import labwire.cluster.util;
labwire.cluster.util.DEBUG = True`` makes :func:`debug` write its messages to standard error.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import logging
import math
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from labwire.wire.cluster import duration_to_seconds

__all__ = [
    "DEBUG",
    "as_coroutine",
    "debug",
    "duration_to_seconds",
    "ip_info",
    "next_tick",
    "seconds_of",
]

_log = logging.getLogger("labwire.cluster")

#: When true, :func:`debug` also writes its messages to standard error.
DEBUG = False


def debug(msg: object) -> None:
    """Report an internal step of the cluster.

    The message always goes to the ``labwire.cluster`` logger at DEBUG level; when the
    module's ``DEBUG`` flag is true it is also written to standard error.

    Args:
        msg: The message.
    """
    _log.debug("%s", msg)
    if DEBUG:
        sys.stderr.write(f"labwire.cluster: {msg}\n")


def as_coroutine(func: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """A coroutine function that runs ``func``; ``func`` itself if it is one already.

    Args:
        func: A plain function or a coroutine function.
    """
    if inspect.iscoroutinefunction(func):
        return func

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def ip_info(
    addr: str,
) -> tuple[socket.AddressFamily, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Check an IP address and tell its family.

    Args:
        addr: An IPv4 or IPv6 address as text.

    Returns:
        ``(socket.AF_INET or socket.AF_INET6, the parsed address)``.

    Raises:
        ValueError: ``addr`` is not an IP address.
    """
    address = ipaddress.ip_address(addr)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return family, address


def seconds_of(duration: object, what: str) -> float:
    """``duration`` in seconds, for APIs that must not accept garbage.

    Raises:
        ValueError: ``duration`` is not a positive duration (the message quotes it).
    """
    seconds = duration_to_seconds(duration)
    if seconds <= 0:
        raise ValueError(
            f"{what}: {duration!r} is not a positive duration (a number of seconds, or text "
            "such as '100ms', '1.5s', '2m', '1h')"
        )
    return float(seconds)


def next_tick(due: float, period: float, now: float) -> float:
    """When a fixed-rate loop runs next, after the run that was due at ``due`` ended at ``now``.

    Runs stay on the grid ``due + k * period`` whatever they take; a run that overran skips
    the ticks it missed instead of making up for them in a burst.

    Args:
        due: When the run that just ended was due.
        period: Seconds between runs (positive).
        now: The time now, on the same clock.

    Returns:
        The first tick after ``due`` that is not in the past.
    """
    following = due + period
    if following < now:
        following += math.ceil((now - following) / period) * period
    return following
