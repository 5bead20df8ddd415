"""CurveZMQ keys and security settings, below the transport and the configuration.

:class:`Security` says which keys a process uses and which clients its servers accept;
:attr:`labwire.config.Settings.security` holds one, :func:`labwire.config.security_from_env`
builds one from the ``LABWIRE_*`` variables, and :mod:`labwire.transport.security` applies it to
sockets. This package makes and reads keys; it opens no socket.

Key files
---------
``labwire keys new NAME`` (:func:`generate_keypair`) writes ``NAME.key`` (public, shareable)
and ``NAME.key_secret`` (secret, created 0600). Both use pyzmq's certificate format, so
:func:`zmq.auth.load_certificate` and czmq tools read them, and keys made by those tools load
here. A secret key file that group or others can read is refused (:func:`load_secret_key`).

Modules: :mod:`~labwire.security.keys` (key text and key files) and
:mod:`~labwire.security.settings` (:class:`Security`); every name is re-exported here.
"""

from labwire.security.keys import (
    PUBLIC_KEY_SUFFIX,
    SECRET_KEY_SUFFIX,
    ensure_keypair,
    ephemeral_secret_key,
    generate_keypair,
    is_key_text,
    keys_from_text,
    load_public_key,
    load_public_keys,
    load_secret_key,
    public_key_from_secret,
    public_key_from_text,
    public_key_of,
    secret_key_from_text,
)
from labwire.security.settings import Security

__all__ = [
    "PUBLIC_KEY_SUFFIX",
    "SECRET_KEY_SUFFIX",
    "Security",
    "ensure_keypair",
    "ephemeral_secret_key",
    "generate_keypair",
    "is_key_text",
    "keys_from_text",
    "load_public_key",
    "load_public_keys",
    "load_secret_key",
    "public_key_from_secret",
    "public_key_from_text",
    "public_key_of",
    "secret_key_from_text",
]
