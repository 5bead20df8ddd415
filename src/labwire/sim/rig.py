"""A simulated auxiliary rig that answers like a camera PC.

:class:`SimRig` is a real :class:`~labwire.rigs.RigService` (real sockets, both links): it
keeps its status, answers EXPINFO with its details, EXPINIT/EXPSTART/EXPEND/EXPCLEANUP/
EXPINTERRUPT with its new status, remembers the Alyx token it is sent, and records what it was
told, so demos and tests can drive it like a camera PC with no hardware. ``delay`` makes every
handler slow, to stand in for a rig that takes its time.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from labwire.config import Settings
from labwire.rigs import ExpStatus, RigService

__all__ = ["SimRig"]


class SimRig(RigService):
    """A simulated camera PC.

    Args:
        name: The rig's name.
        udp: UDP listening address (None: no deployed-protocol link).
        url: labwire listening address (None: none).
        settings: labwire settings.
        registry_url: Register here when started (None: do not).
        kind: What the rig says it is in its EXPINFO details.
        delay: Seconds every handler takes.

    Attributes:
        log: ``(message name, data)`` of every message handled, oldest first.
        interrupted_by: The error details of the last EXPINTERRUPT, or None.
        alyx: ``(base_url, token)`` last sent to the rig, or None.
    """

    def __init__(
        self,
        name: str,
        *,
        udp: str | None = "udp://127.0.0.1:0",
        url: str | None = "tcp://127.0.0.1:0",
        settings: Settings | None = None,
        registry_url: str | None = None,
        kind: str = "camera",
        delay: float = 0.0,
    ) -> None:
        super().__init__(name, udp=udp, url=url, settings=settings, registry_url=registry_url)
        self.kind = kind
        self.delay = delay
        self.log: list[tuple[str, Any]] = []
        self.interrupted_by: dict[str, Any] | None = None
        self.alyx: tuple[str | None, dict[str, Any]] | None = None
        self._log_lock = threading.Lock()

    def _record(self, message: str, data: Any) -> None:
        if self.delay > 0:
            time.sleep(self.delay)
        with self._log_lock:
            self.log.append((message, data))

    def on_init(self, data: Any) -> Any:
        """Record EXPINIT; reply with the new status."""
        self._record("EXPINIT", data)
        return None

    def on_start(self, exp_ref: str | None, data: Any) -> Any:
        """Record EXPSTART (as if recording began); reply with the new status."""
        self._record("EXPSTART", {"exp_ref": exp_ref, "data": data})
        return None

    def on_end(self, data: Any) -> Any:
        """Record EXPEND; reply with the new status."""
        self._record("EXPEND", data)
        return None

    def on_interrupt(self, data: Any) -> Any:
        """Record EXPINTERRUPT and its error details; reply with the new status."""
        self._record("EXPINTERRUPT", data)
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            self.interrupted_by = data["error"]
        return None

    def on_cleanup(self, data: Any) -> Any:
        """Record EXPCLEANUP; reply with the new status."""
        self._record("EXPCLEANUP", data)
        return None

    def on_status(self, status: ExpStatus) -> None:
        """Record the coordinator's status."""
        self._record("EXPSTATUS", status.name)

    def on_info(self, status: ExpStatus, data: Any) -> Any:
        """Reply with this rig's details: name, kind, status, experiment and message count."""
        self._record("EXPINFO", data)
        return {
            "name": self.name,
            "kind": self.kind,
            "status": self.status.name,
            "exp_ref": self.exp_ref,
            "main_sync": False,
            "handled": self.handled,
        }

    def on_alyx(self, base_url: str | None, token: dict[str, Any]) -> tuple[str | None, Any] | None:
        """Keep a token that is sent; answer a request with the token kept (if any)."""
        self._record("ALYX", base_url)
        if base_url and token:
            self.alyx = (base_url, token)
        return self.alyx
