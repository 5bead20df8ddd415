"""One frozen settings object for every labwire socket, and the one place that reads ``LABWIRE_*``.

Pass a :class:`Settings` to any labwire server or client (``settings=``); without one, the
process-wide defaults from :func:`default_settings` apply. Environment variables are read only
by :meth:`Settings.from_env`:

=============================  ==========================================  =========
variable                       meaning                                     default
=============================  ==========================================  =========
``LABWIRE_LINGER_MS``          how long close() may flush pending output   100
``LABWIRE_HEARTBEAT_IVL_MS``   ZMTP heartbeat interval                      1000
``LABWIRE_HEARTBEAT_TIMEOUT_MS``  peer declared dead after this silence    3000
``LABWIRE_CONNECT_GRACE_MS``   how long a call waits for a connection      500
``LABWIRE_WORKERS``            worker threads per RPC server               8
``LABWIRE_REPLY_SPIN_US``      how long a call watches for its reply       300 (0 on
                               before it sleeps                            one CPU)
``LABWIRE_REGISTRY``           default registry URL (used by the CLI)      tcp://127.0.0.1:5555
``LABWIRE_SECRET_KEY``         this process's secret key file (turns       (off)
                               CurveZMQ security on)
``LABWIRE_CLIENT_SECRET_KEY``  separate secret key for client sockets      (off)
``LABWIRE_SERVER_KEY``         public key (or .key file) of the servers    (off)
                               this process connects to
``LABWIRE_ALLOWED_KEYS``       client keys, .key files or folders that     (off)
                               this process's servers accept; ``*``: any
``LABWIRE_ADMIN_KEYS``         client keys allowed admin operations        (off)
=============================  ==========================================  =========

Security is on when any ``LABWIRE_*KEY*`` variable is set (:func:`security_from_env`). A *key*
is either its 40-character Z85 text or the path of a key file; lists are separated by commas,
and a folder in a list stands for its ``*.key`` files. See :mod:`labwire.transport.security` for
how security is applied and :class:`~labwire.security.Security` for the same settings in code.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from labwire.errors import ConfigurationError, SecurityConfigError
from labwire.security import (
    Security,
    keys_from_text,
    load_public_keys,
    public_key_from_text,
    secret_key_from_text,
)
from labwire.wire.limits import Limits

__all__ = [
    "DEFAULT_REGISTRY_URL",
    "ENV_ADMIN_KEYS",
    "ENV_ALLOWED_KEYS",
    "ENV_CLIENT_SECRET_KEY",
    "ENV_SECRET_KEY",
    "ENV_SERVER_KEY",
    "Settings",
    "default_settings",
    "security_from_env",
]

_T = TypeVar("_T")

DEFAULT_REGISTRY_URL = "tcp://127.0.0.1:5555"
#: Microseconds a small call watches for its reply before it sleeps, on several CPUs.
_REPLY_SPIN_US = 300


def _default_reply_spin_us() -> int:
    """:data:`_REPLY_SPIN_US`; 0 on one CPU, where watching only keeps the server waiting."""
    return _REPLY_SPIN_US if (os.cpu_count() or 1) > 1 else 0


ENV_SECRET_KEY: Final = "LABWIRE_SECRET_KEY"
ENV_CLIENT_SECRET_KEY: Final = "LABWIRE_CLIENT_SECRET_KEY"
ENV_SERVER_KEY: Final = "LABWIRE_SERVER_KEY"
ENV_ALLOWED_KEYS: Final = "LABWIRE_ALLOWED_KEYS"
ENV_ADMIN_KEYS: Final = "LABWIRE_ADMIN_KEYS"


@dataclass(frozen=True, slots=True)
class Settings:
    """Transport and server settings shared by every labwire part.

    Attributes:
        linger_ms: ZeroMQ LINGER for every socket; never infinite, so close() is prompt.
        heartbeat_ivl_ms: ZMTP heartbeat interval on connections.
        heartbeat_timeout_ms: A silent peer is disconnected after this long.
        reconnect_ivl_ms: First reconnection delay after a lost connection.
        reconnect_ivl_max_ms: Largest reconnection delay (exponential backoff up to it).
        connect_grace_ms: How long a call waits for a connection to a server that is down
            before failing with :class:`~labwire.errors.Unavailable`.
        handshake_timeout_ms: A connection that has not completed the ZeroMQ (and CurveZMQ)
            handshake by then is dropped (e.g. a port scanner or a stray HTTP client).
        workers: Worker threads per RPC server (slow methods run here, off the I/O loop).
        reply_spin_us: How long a client's small call watches for its reply without sleeping
            before it waits for it, in a process with one Python thread. A reply within that
            time is read at once instead of after a wake-up (less latency), at the cost of
            keeping a CPU busy meanwhile; after two calls in a row whose replies came later,
            the next calls on that connection wait without watching for a while. 0 turns
            watching off (the default on one CPU).
        signal_hwm: Messages queued per signal subscriber before new ones are dropped.
        limits: Limits on incoming messages.
        registry_url: Default registry URL for the command line and connect-by-name.
        security: CurveZMQ settings applied to every socket, or None for plain sockets.
    """

    linger_ms: int = 100
    heartbeat_ivl_ms: int = 1000
    heartbeat_timeout_ms: int = 3000
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 1000
    connect_grace_ms: int = 500
    handshake_timeout_ms: int = 5000
    workers: int = 8
    reply_spin_us: int = field(default_factory=_default_reply_spin_us)
    signal_hwm: int = 10_000
    limits: Limits = field(default_factory=Limits)
    registry_url: str = DEFAULT_REGISTRY_URL
    security: Security | None = None

    def __post_init__(self) -> None:
        for name in (
            "linger_ms",
            "heartbeat_ivl_ms",
            "heartbeat_timeout_ms",
            "reconnect_ivl_ms",
            "reconnect_ivl_max_ms",
            "connect_grace_ms",
            "handshake_timeout_ms",
            "workers",
            "reply_spin_us",
            "signal_hwm",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"Settings.{name} must be an integer >= 0, got {value!r}")
        if self.workers < 1:
            raise ConfigurationError("Settings.workers must be at least 1")
        if self.security is not None and not isinstance(self.security, Security):
            raise ConfigurationError(
                "Settings.security must be a labwire.security.Security or None, "
                f"got {type(self.security).__name__}"
            )

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``LABWIRE_*`` environment variables over the defaults.

        Args:
            environ: The environment to read (``os.environ`` when None).

        Raises:
            ConfigurationError: A variable holds a value of the wrong form.
            SecurityConfigError: A security variable names a missing or unsafe key file.
        """
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for name in (
            "linger_ms",
            "heartbeat_ivl_ms",
            "heartbeat_timeout_ms",
            "connect_grace_ms",
            "workers",
            "reply_spin_us",
        ):
            raw = env.get(f"LABWIRE_{name.upper()}")
            if raw is not None:
                try:
                    changes[name] = int(raw)
                except ValueError:
                    raise ConfigurationError(
                        f"LABWIRE_{name.upper()} must be an integer, got {raw!r}"
                    ) from None
        registry = env.get("LABWIRE_REGISTRY")
        if registry:
            changes["registry_url"] = registry
        changes["security"] = security_from_env(env)
        return cls(**changes)


def security_from_env(environ: Mapping[str, str] | None = None) -> Security | None:
    """Build security settings from the ``LABWIRE_*KEY*`` variables listed in the module docs.

    Args:
        environ: The environment to read (``os.environ`` when None).

    Returns:
        The settings, or None when none of the variables is set (security off).

    Raises:
        SecurityConfigError: A variable names a missing or unsafe file or an invalid key;
            the message names the variable.
    """
    env = os.environ if environ is None else environ
    names = (
        ENV_SECRET_KEY,
        ENV_CLIENT_SECRET_KEY,
        ENV_SERVER_KEY,
        ENV_ALLOWED_KEYS,
        ENV_ADMIN_KEYS,
    )
    values = {name: env.get(name, "").strip() for name in names}
    if not any(values.values()):
        return None
    allowed, allowed_dirs, allow_any = _parse(values, ENV_ALLOWED_KEYS, keys_from_text)
    admin, admin_dirs, admin_any = _parse(values, ENV_ADMIN_KEYS, keys_from_text)
    if admin_any:
        raise SecurityConfigError(f"{ENV_ADMIN_KEYS} cannot be '*': list the admin keys")
    for folder in admin_dirs:
        admin |= _parse({ENV_ADMIN_KEYS: str(folder)}, ENV_ADMIN_KEYS, load_public_keys)
    return Security(
        secret_key=_parse(values, ENV_SECRET_KEY, secret_key_from_text),
        server_key=_parse(values, ENV_SERVER_KEY, public_key_from_text),
        allowed_keys=frozenset(allowed),
        allowed_keys_dirs=tuple(allowed_dirs),
        admin_keys=frozenset(admin),
        client_secret_key=_parse(values, ENV_CLIENT_SECRET_KEY, secret_key_from_text),
        allow_any_client=allow_any,
    )


def _parse(values: Mapping[str, str], name: str, parse: Callable[[str], _T]) -> _T:
    """Parse one variable; errors name the variable."""
    try:
        return parse(values[name])
    except SecurityConfigError as exc:
        raise SecurityConfigError(f"{name}: {exc}") from None


@functools.cache
def default_settings() -> Settings:
    """The process-wide default settings, read once from the environment."""
    return Settings.from_env()
