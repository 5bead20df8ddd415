"""The rig's status machine as a table: ``{status: {message: next status}}``."""

from __future__ import annotations

from collections.abc import Mapping

from labwire.errors import ProtocolError
from labwire.wire.rigs.messages import (
    ExpMessage,
    ExpStatus,
)


class IllegalTransition(ProtocolError):
    """A message the rig's current status does not allow (e.g. EXPSTART before EXPINIT)."""


_S = ExpStatus
_M = ExpMessage
_LIFECYCLE: dict[ExpStatus, dict[ExpMessage, ExpStatus]] = {
    _S.CONNECTED: {
        _M.EXPINIT: _S.INITIALIZED,
        _M.EXPINTERRUPT: _S.CONNECTED,
        _M.EXPCLEANUP: _S.CONNECTED,
    },
    _S.INITIALIZED: {
        _M.EXPINIT: _S.INITIALIZED,
        _M.EXPSTART: _S.RUNNING,
        _M.EXPINTERRUPT: _S.STOPPED,
        _M.EXPEND: _S.STOPPED,
        _M.EXPCLEANUP: _S.CONNECTED,
    },
    _S.RUNNING: {_M.EXPEND: _S.STOPPED, _M.EXPINTERRUPT: _S.STOPPED},
    _S.STOPPED: {
        _M.EXPINIT: _S.INITIALIZED,
        _M.EXPEND: _S.STOPPED,
        _M.EXPINTERRUPT: _S.STOPPED,
        _M.EXPCLEANUP: _S.CONNECTED,
    },
}
#: The rig status table: ``{status: {message: next status}}``. Messages missing from a row are
#: illegal in that status; EXPSTATUS, EXPINFO and ALYX are allowed everywhere and keep it.
TRANSITIONS: Mapping[ExpStatus, Mapping[ExpMessage, ExpStatus]] = {
    status: {**row, _M.EXPSTATUS: status, _M.EXPINFO: status, _M.ALYX: status}
    for status, row in _LIFECYCLE.items()
}


def next_status(status: ExpStatus, message: ExpMessage) -> ExpStatus:
    """The status after ``message`` arrives in ``status``.

    Raises:
        IllegalTransition: ``message`` is not allowed in ``status``.
    """
    following = TRANSITIONS[status].get(message)
    if following is None:
        allowed = ", ".join(m.name or "" for m in TRANSITIONS[status])
        raise IllegalTransition(
            f"{message.name} is not allowed while the rig is {status.name} (allowed: {allowed})"
        )
    return following
