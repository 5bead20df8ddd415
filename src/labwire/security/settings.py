"""The security settings: one frozen :class:`Security` that every socket of a process follows."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labwire.errors import SecurityConfigError
from labwire.security.keys import (
    SECRET_KEY_SUFFIX,
    _check_key,
    _key_set,
    ensure_keypair,
    load_secret_key,
    public_key_from_secret,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True, repr=False)
class Security:
    """CurveZMQ settings, applied by :class:`labwire.transport.Transport` to every socket.

    Put one in :attr:`labwire.config.Settings.security`. Keys are Z85 text (40 characters);
    use :func:`load_secret_key` / :func:`load_public_key` to read key files, or
    :func:`labwire.config.security_from_env` / :meth:`from_folder`.

    Who may connect to this process's servers: the keys in :attr:`allowed_keys`, the ``*.key``
    files in :attr:`allowed_keys_dirs` (re-read when a folder changes), :attr:`admin_keys`,
    this process's own public key, and any key :attr:`key_check` accepts; everybody when
    :attr:`allow_any_client` is set (encryption without an allow-list).

    Attributes:
        secret_key: This process's secret key. Required for servers; also used by client
            sockets unless :attr:`client_secret_key` is set.
        server_key: Public key of the server(s) client sockets connect to, unless a key is
            given per connection (e.g. a device key learnt from the registry).
        allowed_keys: Client public keys this process's servers accept.
        allowed_keys_dirs: Folders of ``*.key`` files whose keys are accepted too.
        admin_keys: Client public keys allowed to run admin operations (see :meth:`is_admin`).
        client_secret_key: A separate secret key for client sockets. When neither this nor
            :attr:`secret_key` is set, each ``Transport`` makes a throw-away keypair (useful
            only with servers that set :attr:`allow_any_client`).
        allow_any_client: Accept every client key (encryption, no allow-list).
        key_check: Called with a client's public key (Z85 text) that no list accepted; a true
            result lets the client in. It runs on the authenticator thread during the handshake,
            so it must be quick. An exception means "deny" and is logged.
    """

    secret_key: str | None = None
    server_key: str | None = None
    allowed_keys: frozenset[str] = frozenset()
    allowed_keys_dirs: tuple[Path, ...] = ()
    admin_keys: frozenset[str] = frozenset()
    client_secret_key: str | None = None
    allow_any_client: bool = False
    key_check: Callable[[str], bool] | None = None

    def __post_init__(self) -> None:
        for name in ("secret_key", "server_key", "client_secret_key"):
            value = getattr(self, name)
            if value is not None:
                _check_key(value, f"Security.{name}")
        object.__setattr__(
            self, "allowed_keys", _key_set(self.allowed_keys, "Security.allowed_keys")
        )
        object.__setattr__(self, "admin_keys", _key_set(self.admin_keys, "Security.admin_keys"))
        if isinstance(self.allowed_keys_dirs, str | os.PathLike):
            raise SecurityConfigError("Security.allowed_keys_dirs must be a tuple of folders")
        dirs = tuple(Path(folder).expanduser() for folder in self.allowed_keys_dirs)
        for folder in dirs:
            if not folder.is_dir():
                raise SecurityConfigError(f"allowed keys folder {folder} is not a folder")
        object.__setattr__(self, "allowed_keys_dirs", dirs)
        if not isinstance(self.allow_any_client, bool):
            raise SecurityConfigError("Security.allow_any_client must be True or False")
        if self.key_check is not None and not callable(self.key_check):
            raise SecurityConfigError("Security.key_check must be callable or None")

    def __repr__(self) -> str:
        # Never show secret keys (settings end up in logs).
        return (
            f"Security(public_key={self.public_key!r}, server_key={self.server_key!r}, "
            f"allowed_keys={len(self.allowed_keys)} keys, "
            f"allowed_keys_dirs={[str(folder) for folder in self.allowed_keys_dirs]!r}, "
            f"admin_keys={len(self.admin_keys)} keys, "
            f"client_public_key={self.client_public_key!r}, "
            f"allow_any_client={self.allow_any_client!r})"
        )

    @property
    def public_key(self) -> str | None:
        """This process's public key (from :attr:`secret_key`), the one servers present."""
        return None if self.secret_key is None else public_key_from_secret(self.secret_key)

    @property
    def client_public_key(self) -> str | None:
        """The public key client sockets present (None: a throw-away key per Transport)."""
        secret = self.client_secret_key or self.secret_key
        return None if secret is None else public_key_from_secret(secret)

    def is_admin(self, client_key: str | None) -> bool:
        """Whether a client key may run admin operations on this process's servers.

        Admin keys are :attr:`admin_keys` plus this process's own public key (a client holding
        the server's own secret key is its owner). None (no authenticated key) is never admin.
        """
        if client_key is None:
            return False
        return client_key in self.admin_keys or client_key == self.public_key

    def replace(self, **changes: Any) -> Security:
        """Return a copy with some fields changed."""
        fields = {
            name: getattr(self, name)
            for name in (
                "secret_key",
                "server_key",
                "allowed_keys",
                "allowed_keys_dirs",
                "admin_keys",
                "client_secret_key",
                "allow_any_client",
                "key_check",
            )
        }
        fields.update(changes)
        return Security(**fields)

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike[str], name: str = "labwire", *, create: bool = True
    ) -> Security:
        """Settings for a lab that keeps its keys in one folder (what ``--secure`` uses).

        This process uses the keypair ``NAME`` in ``folder`` as its own key and as the server
        key it expects; clients whose ``.key`` file is in the folder are accepted.

        Args:
            folder: The folder of the lab's keys.
            name: The keypair's name.
            create: Make the folder and the keypair when they do not exist yet; when False, a
                missing one is an error (so a mistyped folder is not taken for a new lab).

        Raises:
            SecurityConfigError: The keys cannot be read or made, or ``create`` is False and
                the folder or its keypair does not exist.
        """
        directory = Path(folder).expanduser()
        if not create and not (directory / f"{name}{SECRET_KEY_SUFFIX}").exists():
            what = "folder" if not directory.is_dir() else f"keypair {name!r} in the folder"
            raise SecurityConfigError(
                f"no key {what} {directory}: is the path right? To start a new lab's keys "
                f"there, run `labwire keys new {name} --dir {directory}`"
            )
        _, secret_path = ensure_keypair(folder, name)
        secret_key = load_secret_key(secret_path)
        return cls(
            secret_key=secret_key,
            server_key=public_key_from_secret(secret_key),
            allowed_keys_dirs=(Path(folder).expanduser(),),
        )
