"""Device types and the socket types each one relays between (checked before anything opens)."""

from __future__ import annotations

import enum

from labwire.errors import ConfigurationError
from labwire.transport import SocketType

__all__ = ["FORWARDER", "QUEUE", "STREAMER", "DeviceType", "check_pairing"]


class DeviceType(enum.IntEnum):
    """The device types, with ZeroMQ's numbers (``zmq.QUEUE`` and friends work too)."""

    STREAMER = 1
    FORWARDER = 2
    QUEUE = 3


STREAMER = DeviceType.STREAMER
FORWARDER = DeviceType.FORWARDER
QUEUE = DeviceType.QUEUE

_RECEIVING = frozenset(
    {
        SocketType.PULL,
        SocketType.SUB,
        SocketType.XSUB,
        SocketType.XPUB,
        SocketType.ROUTER,
        SocketType.DEALER,
        SocketType.PAIR,
    }
)
_SENDING = frozenset(
    {
        SocketType.PUSH,
        SocketType.PUB,
        SocketType.XPUB,
        SocketType.XSUB,
        SocketType.ROUTER,
        SocketType.DEALER,
        SocketType.PAIR,
    }
)
#: Types one socket can serve both sides with (it receives, and sends back).
_SINGLE = frozenset({SocketType.ROUTER, SocketType.DEALER, SocketType.PAIR, SocketType.REP})
_DEVICE_SIDES = {
    DeviceType.QUEUE: (
        frozenset({SocketType.ROUTER, SocketType.DEALER}),
        frozenset({SocketType.ROUTER, SocketType.DEALER}),
    ),
    DeviceType.FORWARDER: (
        frozenset({SocketType.SUB, SocketType.XSUB}),
        frozenset({SocketType.PUB, SocketType.XPUB}),
    ),
    DeviceType.STREAMER: (frozenset({SocketType.PULL}), frozenset({SocketType.PUSH})),
}


def _socket_type(value: object, what: str) -> SocketType:
    if isinstance(value, SocketType):
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a ZeroMQ socket type, got {value!r}")
    try:
        return SocketType(value)
    except ValueError:
        raise ConfigurationError(f"{what} {value} is not a socket type a broker can use") from None


def _names(kinds: frozenset[SocketType]) -> str:
    return "/".join(sorted(kind.name for kind in kinds))


def check_pairing(
    device_type: DeviceType | None, in_kind: SocketType, out_kind: SocketType | None
) -> None:
    """Refuse socket types that cannot make a working broker.

    Args:
        device_type: QUEUE, FORWARDER or STREAMER; None for a proxy, which only needs an in
            socket that receives and an out socket that sends.
        in_kind: The in socket's type.
        out_kind: The out socket's type; None when the in socket serves both sides.

    Raises:
        ConfigurationError: The pairing cannot work; the message says which types can.
    """
    label = "proxy" if device_type is None else device_type.name
    if out_kind is None:
        if device_type not in (None, DeviceType.QUEUE) or in_kind not in _SINGLE:
            raise ConfigurationError(
                f"one socket serving both sides (out_type < 0) must be a "
                f"{_names(_SINGLE)} socket of a QUEUE or proxy; got {in_kind.name} in a {label}"
            )
        return
    if device_type is None:
        if in_kind not in _RECEIVING:
            raise ConfigurationError(
                f"a proxy's in socket receives: {in_kind.name} cannot "
                f"(use one of {_names(_RECEIVING)})"
            )
        if out_kind not in _SENDING:
            raise ConfigurationError(
                f"a proxy's out socket sends: {out_kind.name} cannot "
                f"(use one of {_names(_SENDING)})"
            )
        return
    ins, outs = _DEVICE_SIDES[device_type]
    if in_kind not in ins or out_kind not in outs:
        raise ConfigurationError(
            f"a {label} relays from {_names(ins)} to {_names(outs)} sockets; "
            f"got in={in_kind.name}, out={out_kind.name}"
        )
