"""What happens to labwire objects in the child of ``fork()``.

ZeroMQ sockets and contexts cannot cross a fork: in the child, the parent's sockets belong to
a context whose I/O thread does not exist there, and using them hangs or spins. An object that
holds sockets derives from :class:`ProcessBound` and calls :meth:`ProcessBound.check_process`
before it uses them. The check costs nothing per call: the child learns of the fork once, from
:func:`os.register_at_fork`, and every bound object of the process is marked then. The parent's
objects keep working in the parent; the child makes its own.
"""

from __future__ import annotations

import os
import weakref

from labwire.errors import ClosedError

__all__ = ["ProcessBound"]

#: The live bound objects of this process: the fork hook marks them in the child.
_BOUND: weakref.WeakSet[ProcessBound] = weakref.WeakSet()


class ProcessBound:
    """Base for objects whose sockets belong to the process that made them.

    Call ``ProcessBound.__init__(self, what)`` in the constructor; :attr:`forked_from` is the
    parent's pid in a fork's child, else None.

    Args:
        what: How errors name the object, e.g. ``"client for tcp://10.0.0.7:5000"``.
    """

    def __init__(self, what: str) -> None:
        self._bound_pid = os.getpid()
        self._bound_what = what
        self.forked_from: int | None = None
        _BOUND.add(self)

    def after_fork_in_child(self) -> None:
        """Called in a fork's child once :attr:`forked_from` is set.

        Subclasses mark themselves closed here, without touching their sockets (the parent's).
        """

    def check_process(self) -> None:
        """Refuse use in a fork's child.

        Raises:
            ClosedError: This object was made in the parent of this process.
        """
        if self.forked_from is not None:
            raise ClosedError(
                f"{self._bound_what} was made in process {self.forked_from}, before this "
                "process forked from it: make a new one here (the parent's keeps working)"
            )


def _mark_forked() -> None:
    for bound in list(_BOUND):
        bound.forked_from = bound._bound_pid
        bound.after_fork_in_child()


os.register_at_fork(after_in_child=_mark_forked)
