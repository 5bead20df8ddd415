"""The deployed UDP datagram: one JSON array per message, the code first (format in the package)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labwire.errors import ConfigurationError, ProtocolError
from labwire.wire.codec import decode_json, encode_json
from labwire.wire.limits import Limits
from labwire.wire.rigs.messages import (
    _SINGLE_CODES,
    MAX_DATAGRAM_BYTES,
    ExpMessage,
)

#: Limits on decoded datagrams (a datagram is at most 64 KiB anyway).
_LIMITS = Limits(max_json_bytes=MAX_DATAGRAM_BYTES, max_depth=32)


@dataclass(frozen=True, slots=True)
class Datagram:
    """One decoded datagram.

    Attributes:
        code: The first element: a message code, or 0 for an error reply.
        items: The elements after the code.
    """

    code: int
    items: tuple[Any, ...]

    @property
    def is_error(self) -> bool:
        """Whether this is an error reply (code 0)."""
        return self.code == 0

    @property
    def message(self) -> ExpMessage | None:
        """The message this datagram carries, or None for an unknown code or an error."""
        return _SINGLE_CODES.get(self.code)

    @property
    def error(self) -> tuple[str, str, int]:
        """For an error reply: (remote type, remote message, code of the failed message).

        The deployed text ``"Type: message"`` is split at the first colon; a text without one
        has the type ``"RemoteError"``.
        """
        text = self.items[0] if self.items else ""
        text = text if isinstance(text, str) else str(text)
        code = self.items[1] if len(self.items) > 1 else 0
        code = code if isinstance(code, int) and not isinstance(code, bool) else 0
        kind, sep, rest = text.partition(": ")
        if sep and kind.isidentifier():
            return kind, rest, code
        return "RemoteError", text, code


def encode_datagram(code: int, items: Sequence[Any]) -> bytes:
    """Encode one datagram ``[code, *items]``.

    Raises:
        TypeError: The items hold something JSON cannot carry.
        ConfigurationError: The datagram is larger than a UDP datagram can be.
    """
    encoded = encode_json([int(code), *items])
    if len(encoded) > MAX_DATAGRAM_BYTES:
        raise ConfigurationError(
            f"message of {len(encoded)} bytes does not fit in one UDP datagram "
            f"({MAX_DATAGRAM_BYTES} bytes at most)"
        )
    return encoded


def encode_error(error_type: str, message: str, code: int) -> bytes:
    """Encode the error reply ``[0, "Type: message", code]`` to the message ``code``."""
    text = f"{error_type}: {message}" if error_type else message
    encoded = encode_json([0, text, int(code)])
    if len(encoded) > MAX_DATAGRAM_BYTES:
        encoded = encode_json([0, text[: MAX_DATAGRAM_BYTES // 8], int(code)])
    return encoded


def decode_datagram(data: bytes) -> Datagram:
    """Decode one datagram.

    Raises:
        ProtocolError: Not strict JSON, not an array, empty, or its first element is not an
            integer code.
    """
    value = decode_json(data, _LIMITS)
    if not isinstance(value, list) or not value:
        raise ProtocolError("a rig datagram must be a non-empty JSON array [code, ...]")
    code = value[0]
    if not isinstance(code, int) or isinstance(code, bool) or code < 0:
        raise ProtocolError(f"a rig datagram starts with an integer code >= 0, got {code!r}")
    return Datagram(code, tuple(value[1:]))
