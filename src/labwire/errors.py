"""The labwire exception tree.

Every error labwire raises derives from :class:`LabwireError`, so ``except LabwireError``
catches all of them. Where a builtin exception says the same thing, the labwire error also
derives from it, so code that catches ``TimeoutError``, ``ConnectionError`` or ``ValueError``
keeps working::

    LabwireError
    ├── ConfigurationError (ValueError)       bad settings, bad arguments to labwire itself
    │   ├── EndpointError                     an address labwire cannot parse or use
    │   └── SecurityConfigError               unreadable, unsafe or missing key material
    ├── ProtocolError (ValueError)            a message that breaks the wire format
    │   └── LimitExceeded                     a message over a configured size/depth limit
    ├── TransportError (ConnectionError)      the network path is not usable
    │   ├── Unavailable                       nobody answers / peer gone / no such endpoint
    │   │   └── ServerRestarted               the server restarted while a call was pending
    │   └── AuthenticationError               CurveZMQ handshake refused
    ├── CallTimeout (TimeoutError)            no reply within the deadline: outcome unknown
    ├── RemoteError                           the remote side raised (type, message, traceback)
    │   ├── NotFound (LookupError)            no such method, property, signal or device
    │   ├── PermissionDenied (PermissionError)  the remote side refused the operation
    │   └── RequestExpired                    the server dropped a request past its expiry
    ├── RegistryError                         a registry operation failed
    └── ClosedError (RuntimeError)            the object was used after close()

Errors from ZeroMQ never escape :mod:`labwire.transport`: they are translated there into the
most specific class above, chained with ``raise ... from exc``. Remote failures come back as
data (type name, message, traceback) and are never rebuilt as arbitrary classes.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CallTimeout",
    "ClosedError",
    "ConfigurationError",
    "EndpointError",
    "LabwireError",
    "LimitExceeded",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "RegistryError",
    "RemoteError",
    "RequestExpired",
    "SecurityConfigError",
    "ServerRestarted",
    "TransportError",
    "Unavailable",
]


class LabwireError(Exception):
    """Root of every error raised by labwire."""


class ConfigurationError(LabwireError, ValueError):
    """A setting or argument given to labwire is invalid."""


class EndpointError(ConfigurationError):
    """An endpoint (``tcp://host:port``, ``ipc://path``...) cannot be parsed or used."""


class SecurityConfigError(ConfigurationError):
    """Key material is missing, malformed, or stored unsafely."""


class ProtocolError(LabwireError, ValueError):
    """A message does not follow the wire format.

    The message says which rule was broken (e.g. ``"frame 0 is not valid UTF-8"``).
    """


class LimitExceeded(ProtocolError):
    """A message is over one of the configured limits (size, frames, depth, length)."""


class TransportError(LabwireError, ConnectionError):
    """The network path to a peer is not usable."""


class Unavailable(TransportError):
    """The peer cannot be reached: not listening, gone, or not answering heartbeats."""


class ServerRestarted(Unavailable):
    """The server restarted while a call was pending; the call's outcome is unknown."""


class AuthenticationError(TransportError):
    """The security handshake with the peer failed (wrong key, or key not allowed)."""


class CallTimeout(LabwireError, TimeoutError):
    """No reply arrived before the call's deadline.

    The outcome is unknown: the remote side may or may not have executed the request.
    labwire never retries such a call silently.
    """


class RemoteError(LabwireError):
    """The remote side reported a failure.

    Attributes:
        remote_type: Name of the exception type raised remotely (e.g. ``"ValueError"``).
        remote_message: The remote error message.
        remote_traceback: The remote traceback as text ("" when none was sent).
    """

    def __init__(self, remote_type: str, remote_message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {remote_message}" if remote_type else remote_message)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback


class NotFound(RemoteError, LookupError):
    """The remote side has no such method, property, signal or device."""


class PermissionDenied(RemoteError, PermissionError):
    """The remote side refused the operation for this client."""


class RequestExpired(RemoteError):
    """The server received the request after its expiry and did not execute it."""


class RegistryError(LabwireError):
    """A registry operation failed."""


class ClosedError(LabwireError, RuntimeError):
    """The object was used after it was closed."""
