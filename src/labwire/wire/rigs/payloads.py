"""One typed payload per experiment message, checked when built and when received."""

from __future__ import annotations

import traceback
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from labwire.errors import ConfigurationError, ProtocolError
from labwire.wire.codec import encode_json
from labwire.wire.rigs.messages import (
    ExpMessage,
    ExpStatus,
    parse_message,
    parse_status,
)


def _check_json(message: str, field: str, value: Any) -> Any:
    try:
        encode_json(value)
    except TypeError as exc:
        raise TypeError(f"{message} {field}: {exc}") from None
    return value


@dataclass(frozen=True, slots=True)
class Payload(ABC):
    """Base of the typed payloads: one subclass per message."""

    message: ClassVar[ExpMessage]
    signature: ClassVar[str]

    @abstractmethod
    def items(self) -> list[Any]:
        """The payload as the list of values that follow the code on the wire."""

    @classmethod
    @abstractmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items, checking them.

        Raises:
            ProtocolError: Too many items, or an item of the wrong type.
        """


def _items_of(message: ExpMessage, items: Sequence[Any], count: int) -> list[Any]:
    if len(items) > count:
        raise ProtocolError(
            f"{message.name} carries at most {count} value(s) after its code, got {len(items)}"
        )
    return [*items, *([None] * (count - len(items)))]


@dataclass(frozen=True, slots=True)
class _DataOnly(Payload):
    data: Any = None

    def __post_init__(self) -> None:
        _check_json(self.message.name or "", "data", self.data)

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [self.data]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        (data,) = _items_of(cls.message, items, 1)
        return cls(data)


@dataclass(frozen=True, slots=True)
class Init(_DataOnly):
    """EXPINIT: the experiment is initialising.

    Attributes:
        data: Optional JSON data for the rigs (e.g. the experiment description).
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPINIT
    signature: ClassVar[str] = "(data=None)"


@dataclass(frozen=True, slots=True)
class End(_DataOnly):
    """EXPEND: the experiment has stopped.

    Attributes:
        data: Optional JSON data.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPEND
    signature: ClassVar[str] = "(data=None)"


@dataclass(frozen=True, slots=True)
class Cleanup(_DataOnly):
    """EXPCLEANUP: the experiment's clean-up has begun.

    Attributes:
        data: Optional JSON data.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPCLEANUP
    signature: ClassVar[str] = "(data=None)"


@dataclass(frozen=True, slots=True)
class Interrupt(_DataOnly):
    """EXPINTERRUPT: the experiment was interrupted.

    Attributes:
        data: Optional JSON data; labwire sends ``{"error": error_details(exc)}`` when an
            exception interrupted the experiment.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPINTERRUPT
    signature: ClassVar[str] = "(data=None)"


@dataclass(frozen=True, slots=True)
class Start(Payload):
    """EXPSTART: the experiment has begun.

    Attributes:
        exp_ref: The experiment reference ``yyyy-mm-dd_n_subject`` (None when unknown). A dict
            with ``date``, ``sequence`` and ``subject`` is joined into that form.
        data: Optional JSON data.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPSTART
    signature: ClassVar[str] = "(exp_ref, data=None)"
    exp_ref: str | None = None
    data: Any = None

    def __post_init__(self) -> None:
        exp_ref = self.exp_ref
        if isinstance(exp_ref, Mapping):
            try:
                exp_ref = f"{exp_ref['date']}_{int(exp_ref['sequence'])}_{exp_ref['subject']}"
            except (KeyError, TypeError, ValueError):
                raise TypeError(
                    "EXPSTART exp_ref as a dict needs 'date', an integer 'sequence' and 'subject'"
                ) from None
            object.__setattr__(self, "exp_ref", exp_ref)
        elif exp_ref == "":
            object.__setattr__(self, "exp_ref", None)
        elif exp_ref is not None and not isinstance(exp_ref, str):
            raise TypeError(
                f"EXPSTART exp_ref must be a string yyyy-mm-dd_n_subject or None, "
                f"not {type(exp_ref).__name__}"
            )
        _check_json("EXPSTART", "data", self.data)

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [self.exp_ref, self.data]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        exp_ref, data = _items_of(cls.message, items, 2)
        if exp_ref is not None and not isinstance(exp_ref, str):
            raise ProtocolError(f"EXPSTART exp_ref must be a string, got {type(exp_ref).__name__}")
        return cls(exp_ref, data)


@dataclass(frozen=True, slots=True)
class Status(Payload):
    """EXPSTATUS: a status report.

    Attributes:
        status: The sender's status.
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPSTATUS
    signature: ClassVar[str] = "(status)"
    status: ExpStatus

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", parse_status(self.status))

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [int(self.status)]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        (status,) = _items_of(cls.message, items, 1)
        return cls(_wire_status(cls.message, status))


@dataclass(frozen=True, slots=True)
class Info(Payload):
    """EXPINFO: a status report with details.

    Attributes:
        status: The sender's status.
        data: Optional JSON details (e.g. the experiment reference, whether this is the main
            sync).
    """

    message: ClassVar[ExpMessage] = ExpMessage.EXPINFO
    signature: ClassVar[str] = "(status, data=None)"
    status: ExpStatus
    data: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", parse_status(self.status))
        _check_json("EXPINFO", "data", self.data)

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [int(self.status), self.data]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        status, data = _items_of(cls.message, items, 2)
        return cls(_wire_status(cls.message, status), data)


@dataclass(frozen=True, slots=True)
class Alyx(Payload):
    """ALYX: an Alyx database token, sent or requested.

    Build it with :func:`build_payload` from an ``AlyxClient`` (or None to request the token
    from the rig), or directly from the URL and the token.

    Attributes:
        base_url: The Alyx database URL (None when requesting).
        token: ``{user: token}`` (empty when requesting).
    """

    message: ClassVar[ExpMessage] = ExpMessage.ALYX
    signature: ClassVar[str] = "(alyx=None)"
    base_url: str | None = None
    token: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.base_url is not None and not isinstance(self.base_url, str):
            raise TypeError(f"ALYX base_url must be a string, not {type(self.base_url).__name__}")
        if self.token is None:
            object.__setattr__(self, "token", {})
        elif not isinstance(self.token, Mapping):
            raise TypeError(f"ALYX token must be a dict, not {type(self.token).__name__}")
        _check_json("ALYX", "token", dict(self.token or {}))

    def items(self) -> list[Any]:
        """The payload's wire items (see :meth:`Payload.items`)."""
        return [self.base_url, dict(self.token or {})]

    @classmethod
    def from_items(cls, items: Sequence[Any]) -> Payload:
        """Build the payload from wire items (see :meth:`Payload.from_items`)."""
        base_url, token = _items_of(cls.message, items, 2)
        if base_url is not None and not isinstance(base_url, str):
            raise ProtocolError("ALYX base_url must be a string or null")
        if token is not None and not isinstance(token, dict):
            raise ProtocolError("ALYX token must be an object or null")
        return cls(base_url, token)


def _wire_status(message: ExpMessage, value: Any) -> ExpStatus:
    try:
        return parse_status(value)
    except ConfigurationError as exc:
        raise ProtocolError(f"{message.name}: {exc}") from None


_PAYLOADS: dict[ExpMessage, type[Payload]] = {
    cls.message: cls for cls in (Init, Start, End, Cleanup, Interrupt, Status, Info, Alyx)
}


def _alyx_payload(*args: Any, **kwargs: Any) -> Alyx:
    if len(args) == 2 or {"base_url", "token"} & kwargs.keys():
        return Alyx(*args, **kwargs)
    if len(args) > 1 or set(kwargs) - {"alyx"}:
        raise TypeError("ALYX takes (alyx=None) or (base_url, token)")
    alyx = args[0] if args else kwargs.get("alyx")
    if alyx is None:
        return Alyx()
    base_url = getattr(alyx, "base_url", None)
    logged_in = bool(getattr(alyx, "is_logged_in", False))
    token = {alyx.user: alyx._token} if logged_in else {}
    return Alyx(base_url, token)


def build_payload(message: object, *args: Any, **kwargs: Any) -> Payload:
    """The typed payload of ``message`` built from a caller's arguments.

    The arguments follow the deployed ``Service`` methods: ``EXPINIT(data=None)``,
    ``EXPSTART(exp_ref, data=None)``, ``EXPEND(data=None)``, ``EXPCLEANUP(data=None)``,
    ``EXPINTERRUPT(data=None)``, ``EXPSTATUS(status)``, ``EXPINFO(status, data=None)``,
    ``ALYX(alyx=None)`` (or ``ALYX(base_url, token)``).

    Raises:
        TypeError: Wrong arguments for the message, or data JSON cannot carry.
        ConfigurationError: An unknown message or status.
    """
    kind = parse_message(message)
    if kind is ExpMessage.ALYX:
        return _alyx_payload(*args, **kwargs)
    cls = _PAYLOADS[kind]
    try:
        return cls(*args, **kwargs)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{kind.name}: {exc}") from None
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise TypeError(f"{kind.name} takes {cls.signature}: {exc}") from None


def payload_from_items(message: ExpMessage, items: Sequence[Any]) -> Payload:
    """The typed payload of a received ``message`` carrying ``items``.

    Raises:
        ProtocolError: The items do not fit the message.
    """
    try:
        return _PAYLOADS[message].from_items(items)
    except (TypeError, ConfigurationError) as exc:
        raise ProtocolError(f"{message.name}: {exc}") from None


def error_details(exc: BaseException) -> dict[str, str]:
    """The details of ``exc`` as data: ``{"type", "message", "traceback"}``."""
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
