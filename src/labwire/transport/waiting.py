"""Read the messages already queued on an asyncio socket in one go, without awaiting each.

Awaiting a ``zmq.asyncio`` receive costs several times more than the receive itself (a future,
event-loop callbacks, poller state per message). A reader that awaits readability
(``await sock.poll(None)``) and then drains what is waiting (:func:`recv_waiting`) pays that
cost once per burst instead of once per message; under load, bursts are long.

The receives are ZeroMQ's non-blocking ones, made without touching the socket's options (a
receive timeout would also bound the asyncio side's waits). A reader must receive *only* this
way: an awaited ``recv()`` pending on the same socket would be woken for a message that
:func:`recv_waiting` already took.
"""

from __future__ import annotations

from typing import Any

import zmq

from labwire.transport.aio import AsyncSocket
from labwire.transport.sockets import translate_errors

__all__ = ["recv_waiting"]

_NOBLOCK = int(zmq.NOBLOCK)
# The backend's receive, below pyzmq's asyncio and sugar layers (as the socket factory does).
_RECV: Any = zmq.backend.Socket.recv


def recv_waiting(sock: AsyncSocket, limit: int) -> list[list[memoryview]]:
    """Up to ``limit`` messages already waiting on ``sock``, each as its frames; never waits.

    Args:
        sock: An asyncio socket (from :class:`~labwire.transport.aio.AsyncTransport`).
        limit: The most messages to read (so one busy peer cannot starve the loop).

    Returns:
        The messages, oldest first, as zero-copy memoryviews (empty when none is waiting).

    Raises:
        ClosedError: The socket is closed.
    """
    raw = sock._socket.fileno()  # the same ZeroMQ socket, below the asyncio layer
    messages: list[list[memoryview]] = []
    try:
        while len(messages) < limit:
            frame = _RECV(raw, _NOBLOCK, False)
            frames = [frame.buffer]
            while frame.more:  # the parts of one message arrive together
                frame = _RECV(raw, 0, False)
                frames.append(frame.buffer)
            messages.append(frames)
    except zmq.Again:
        pass
    except zmq.ZMQError as exc:
        with translate_errors("receive"):
            raise exc
    return messages
