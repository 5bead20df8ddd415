"""The experiment vocabulary: message codes, rig statuses, and parsing them from user input."""

from __future__ import annotations

from enum import IntEnum, IntFlag

from labwire.errors import ConfigurationError

#: Port deployed rig services listen on when a URI names none.
LISTEN_PORT = 11001
#: Version of the deployed message and status enumerations.
PROTOCOL_VERSION = "1.0.0"
#: Largest UDP payload; bigger messages cannot be sent as one datagram.
MAX_DATAGRAM_BYTES = 65507


class ExpMessage(IntFlag):
    """The experiment messages, with the integer codes of the deployed protocol."""

    EXPINIT = 1
    EXPSTART = 2
    EXPEND = 4
    EXPCLEANUP = 8
    EXPINTERRUPT = 16
    EXPSTATUS = 32
    EXPINFO = 64
    ALYX = 128


class ExpStatus(IntEnum):
    """A rig's experiment status, with the values of the deployed protocol."""

    CONNECTED = 0
    INITIALIZED = 10
    RUNNING = 20
    STOPPED = 30


#: Messages sent to rigs in reverse order when sent one rig after the other.
REVERSED_MESSAGES = frozenset({ExpMessage.EXPEND, ExpMessage.EXPINTERRUPT, ExpMessage.EXPCLEANUP})

_SINGLE_CODES = {int(member): member for member in ExpMessage}


def parse_message(value: object) -> ExpMessage:
    """The message named by ``value``: an :class:`ExpMessage`, its name or its integer code.

    Names are case-insensitive (``"expinit"``), as the deployed code accepts them.

    Raises:
        TypeError: ``value`` is neither a message, a string nor an integer.
        ConfigurationError: No single message has that name or code.
    """
    if isinstance(value, ExpMessage) and int(value) in _SINGLE_CODES:
        return _SINGLE_CODES[int(value)]
    if isinstance(value, str):
        member = ExpMessage.__members__.get(value.strip().upper())
        if member is None:
            raise ConfigurationError(
                f"unknown experiment message {value!r}; choose from {', '.join(_NAMES)}"
            )
        return member
    if isinstance(value, int) and not isinstance(value, bool):
        member = _SINGLE_CODES.get(int(value))
        if member is None:
            raise ConfigurationError(
                f"unknown experiment message code {value}; codes are "
                + ", ".join(f"{m.name}={int(m)}" for m in ExpMessage)
            )
        return member
    raise TypeError(
        f"an experiment message is an ExpMessage, its name or its code, not {type(value).__name__}"
    )


_NAMES = tuple(ExpMessage.__members__)


def parse_status(value: object) -> ExpStatus:
    """The status named by ``value``: an :class:`ExpStatus`, its name or its integer value.

    Raises:
        ConfigurationError: No status has that name or value.
    """
    if isinstance(value, ExpStatus):
        return value
    if isinstance(value, str):
        member = ExpStatus.__members__.get(value.strip().upper())
        if member is not None:
            return member
    elif isinstance(value, int) and not isinstance(value, bool):
        try:
            return ExpStatus(value)
        except ValueError:
            pass
    choices = ", ".join(f"{s.name}={int(s)}" for s in ExpStatus)
    raise ConfigurationError(f"unknown experiment status {value!r}; choose from {choices}")
