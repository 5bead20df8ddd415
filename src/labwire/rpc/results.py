"""NoResult: a failed remote call, returned as a falsy value."""

from __future__ import annotations

from labwire.errors import NotFound, PermissionDenied, RemoteError, RequestExpired

__all__ = ["NoResult"]

_ERRORS_BY_CODE: dict[str, type[RemoteError]] = {
    "not_found": NotFound,
    "denied": PermissionDenied,
    "expired": RequestExpired,
}


class NoResult:
    """The outcome of a remote call that failed on the remote side. It is falsy.

    Args:
        error: The error message.
        traceback: The remote traceback (or other detail) as text.

    Attributes:
        error: The error message.
        traceback: The remote traceback as text.
        error_type: Name of the remote exception type ("" from a deployed server).
        code: Why the call failed: ``"remote"`` (the method raised), ``"not_found"``,
            ``"bad_request"``, ``"expired"``, ``"denied"`` or ``"stopping"``.
    """

    __slots__ = ("code", "error", "error_type", "traceback")

    def __init__(self, error: str, traceback: str, error_type: str = "", code: str = "remote"):
        self.error = error
        self.traceback = traceback
        self.error_type = error_type
        self.code = code

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        kind = f"{self.error_type}: " if self.error_type else ""
        return f"NoResult({kind}{self.error!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoResult):
            return NotImplemented
        return (self.error, self.traceback, self.error_type, self.code) == (
            other.error,
            other.traceback,
            other.error_type,
            other.code,
        )

    def __hash__(self) -> int:
        return hash((self.error, self.error_type, self.code))

    def exception(self) -> RemoteError:
        """The failure as an exception (:class:`~labwire.errors.RemoteError` or a subclass)."""
        cls = _ERRORS_BY_CODE.get(self.code, RemoteError)
        return cls(self.error_type, self.error, self.traceback)

    def raise_error(self) -> None:
        """Raise :meth:`exception`."""
        raise self.exception()
