"""CurveZMQ security: key files, the security settings, the authenticator, handshake errors.

Theory of operation
-------------------
When :attr:`labwire.config.Settings.security` holds a :class:`Security`, the socket factory
(:class:`labwire.transport.Transport`) makes every socket that leaves the process (``tcp://``
and ``ipc://``; ``inproc://`` never runs a handshake) a CurveZMQ socket:

* sockets made with ``bind()`` are CURVE **servers**: they use :attr:`Security.secret_key`,
  a ZAP domain unique to their ``Transport``, and ``ZAP_ENFORCE_DOMAIN``. With that option
  libzmq refuses every handshake that no ZAP handler answers, so when the authenticator is not
  running nobody gets in (fail closed; tested, not assumed).
* sockets made with ``connect()`` / ``unconnected()`` are CURVE **clients**: they use the
  client keypair and the server's public key (the settings' :attr:`Security.server_key`, or a
  per-call override, e.g. a device key learnt from the registry).

One :class:`Authenticator` per ZeroMQ context answers the ZAP requests (ZeroMQ allows one ZAP
endpoint per context). Each secured server socket holds a lease on it: the first lease starts
its thread, the last one released (when the socket closes) stops and joins it. It allows a
client key when it is listed (:attr:`Security.allowed_keys`, a ``*.key`` file in one of
:attr:`Security.allowed_keys_dirs`, re-read when the folder changes), when it is an admin key
or the server's own key, or when :attr:`Security.key_check` says so. An exception in that
callback denies the client and is logged; the authenticator keeps running.

A client learns about a failed handshake through a ZeroMQ socket monitor (a
:class:`HandshakeWatcher`, made for every secured client socket). Failed handshakes are not
retried by libzmq (``RECONNECT_STOP_HANDSHAKE_FAILED``): the owner of the socket asks for one
new attempt with :meth:`HandshakeWatcher.retry`, which allows at most one attempt per
``Settings.reconnect_ivl_max_ms``, so a wrong key never turns into a tight reconnect loop.

Keys, key files and the :class:`~labwire.security.Security` settings live in
:mod:`labwire.security` (below this package: the configuration holds a ``Security``); the
``LABWIRE_*`` variables that turn security on are read by :mod:`labwire.config`. Every name
of those is re-exported here. Modules: :mod:`~labwire.transport.security.authenticator` (the
ZAP authenticator) and :mod:`~labwire.transport.security.handshake` (secured sockets and the
handshake watch).
"""

from labwire.config import (
    ENV_ADMIN_KEYS,
    ENV_ALLOWED_KEYS,
    ENV_CLIENT_SECRET_KEY,
    ENV_SECRET_KEY,
    ENV_SERVER_KEY,
)
from labwire.security import (
    PUBLIC_KEY_SUFFIX,
    SECRET_KEY_SUFFIX,
    Security,
    ensure_keypair,
    ephemeral_secret_key,
    generate_keypair,
    is_key_text,
    load_public_key,
    load_public_keys,
    load_secret_key,
    public_key_from_secret,
    public_key_of,
)
from labwire.transport.security.authenticator import (
    AccessPolicy,
    Authenticator,
    AuthenticatorLease,
    lease_authenticator,
    new_zap_domain,
    shared_authenticator,
)
from labwire.transport.security.handshake import (
    HandshakeWatcher,
    plain_handshake_refused,
    secure_client_socket,
    secure_server_socket,
)

__all__ = [
    "ENV_ADMIN_KEYS",
    "ENV_ALLOWED_KEYS",
    "ENV_CLIENT_SECRET_KEY",
    "ENV_SECRET_KEY",
    "ENV_SERVER_KEY",
    "PUBLIC_KEY_SUFFIX",
    "SECRET_KEY_SUFFIX",
    "AccessPolicy",
    "Authenticator",
    "AuthenticatorLease",
    "HandshakeWatcher",
    "Security",
    "ensure_keypair",
    "ephemeral_secret_key",
    "generate_keypair",
    "is_key_text",
    "lease_authenticator",
    "load_public_key",
    "load_public_keys",
    "load_secret_key",
    "new_zap_domain",
    "plain_handshake_refused",
    "public_key_from_secret",
    "public_key_of",
    "secure_client_socket",
    "secure_server_socket",
    "shared_authenticator",
]
