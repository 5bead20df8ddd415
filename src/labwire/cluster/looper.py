"""An event loop's group of tasks that start and stop together, and the loop thread they run on.

A :class:`Looper` owns coroutines of two kinds: *tasks*, run once, and *daemons*, run again
(after a short pause) whenever they return or raise, until the looper stops. Both can be added
before :meth:`Looper.start` (they start with it) or after (they start at once). Every method
may be called from any thread; the coroutines always run on the looper's loop.

A :class:`Context` is a thread running an event loop, for programs that are not themselves
asyncio: ``Context.instance()`` is the process-wide one that devices use by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Self

__all__ = ["Context", "Looper"]

_log = logging.getLogger("labwire.cluster")

CoroutineFunction = Callable[..., Coroutine[Any, Any, Any]]

#: Pause before a daemon that returned or raised runs again (no busy loop).
DAEMON_RESTART_DELAY = 0.1


class Context(threading.Thread):
    """A thread that runs an event loop until :meth:`stop`.

    Attributes:
        loop: The event loop the thread runs.
    """

    _default: ClassVar[Context | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        super().__init__(name="labwire-cluster-loop", daemon=True)
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()

    @staticmethod
    def instance() -> Context:
        """The process-wide context, started on first use (and again if it was stopped)."""
        with Context._default_lock:
            context = Context._default
            if context is None or context.loop.is_closed():
                context = Context._default = Context()
                context.start()
            context.ensure_started()
            return context

    def ensure_started(self) -> None:
        """Start the thread unless it runs already, and wait until its loop runs."""
        if not self.is_alive() and not self.loop.is_closed() and not self._ready.is_set():
            with contextlib.suppress(RuntimeError):  # started by another thread meanwhile
                self.start()
        self._ready.wait()

    def run(self) -> None:
        """Run the loop until :meth:`stop`, then cancel what is left and close the loop."""
        loop = self.loop
        asyncio.set_event_loop(loop)
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()

    def wait(self) -> None:
        """Wait until the thread ends (Ctrl-C ends the wait, not the thread)."""
        try:
            while self.is_alive():
                self.join(0.5)
        except KeyboardInterrupt:
            _log.info("interrupted while waiting for the cluster context")

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the loop and end the thread (waits up to ``timeout`` seconds)."""
        if self.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self.loop.call_soon_threadsafe(self.loop.stop)
            self.join(timeout)
        elif not self._ready.is_set() and not self.loop.is_closed():
            self.loop.close()  # never started


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Looper:
    """A group of tasks and daemons on one event loop, started and stopped together.

    Args:
        loop: The event loop; default the loop running in this thread, or else the loop of
            :meth:`Context.instance`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            loop = running_loop() or Context.instance().loop
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, got {type(loop).__name__}")
        self._loop = loop
        self._daemons: list[tuple[CoroutineFunction, tuple[Any, ...], dict[str, Any]]] = []
        self._queued: list[tuple[CoroutineFunction, tuple[Any, ...], dict[str, Any]]] = []
        self._running: set[asyncio.Task[Any]] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the looper's coroutines run on."""
        return self._loop

    @property
    def is_running(self) -> bool:
        """Whether the looper is started."""
        return self._running is not None

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the looper's loop (in its thread)."""
        return running_loop() is self._loop

    def create_task(self, coro: CoroutineFunction, *args: Any, **kwargs: Any) -> None:
        """Run ``coro(*args, **kwargs)`` once: now if started, else when started.

        An exception it raises is logged.
        """
        if self._running is None:
            self._queued.append((coro, args, kwargs))
            return
        self._spawn(self._run_once(coro, args, kwargs))

    def create_daemon(self, coro: CoroutineFunction, *args: Any, **kwargs: Any) -> None:
        """Add a daemon: ``coro(*args, **kwargs)``, run again whenever it ends, until stop.

        Starts at once if the looper is started. Arguments past ``coro`` are passed to it.
        """
        self._daemons.append((coro, args, kwargs))
        if self._running is not None:
            self._spawn(self._run_daemon(coro, args, kwargs))

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling coroutine for ``seconds``."""
        await asyncio.sleep(seconds)

    def start(self) -> None:
        """Start the daemons and the tasks added so far (does nothing if started)."""
        if self._running is not None:
            return
        self._running = set()
        for coro, args, kwargs in self._daemons:
            self._spawn(self._run_daemon(coro, args, kwargs))
        queued, self._queued = self._queued, []
        for coro, args, kwargs in queued:
            self._spawn(self._run_once(coro, args, kwargs))

    def stop(self) -> None:
        """Cancel the running daemons and tasks (does nothing if not started)."""
        running, self._running = self._running, None
        if not running:
            return
        if self.in_loop_thread():
            for task in running:
                task.cancel()
        elif not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(_cancel_all, running)

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        if self.in_loop_thread():
            self._track(coroutine)
            return
        try:
            self._loop.call_soon_threadsafe(self._track, coroutine)
        except RuntimeError:
            coroutine.close()
            raise

    def _track(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        running = self._running
        if running is None:  # stopped before the task could start
            coroutine.close()
            return
        task = self._loop.create_task(coroutine)
        running.add(task)
        task.add_done_callback(running.discard)

    async def _run_once(
        self, coro: CoroutineFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            await coro(*args, **kwargs)
        except Exception:
            _log.exception("task %s raised", getattr(coro, "__qualname__", coro))

    async def _run_daemon(
        self, coro: CoroutineFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        name = getattr(coro, "__qualname__", coro)
        while True:
            try:
                await coro(*args, **kwargs)
                _log.debug("daemon %s returned; running it again", name)
            except Exception:
                _log.exception("daemon %s raised; running it again", name)
            await asyncio.sleep(DAEMON_RESTART_DELAY)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
