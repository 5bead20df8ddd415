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

Key files
---------
``labwire keys new NAME`` (:func:`generate_keypair`) writes ``NAME.key`` (public, shareable)
and ``NAME.key_secret`` (secret, created 0600). Both use pyzmq's certificate format, so
:func:`zmq.auth.load_certificate` and czmq tools read them, and keys made by those tools load
here. A secret key file that group or others can read is refused (:func:`load_secret_key`).

Environment variables
---------------------
Read by :meth:`Security.from_env` (and through it by :meth:`labwire.config.Settings.from_env`).
Security is on as soon as one of them is set. A *key* is either its 40-character Z85 text or the
path of a key file; lists are separated by commas.

==============================  ================================================================
variable                        meaning
==============================  ================================================================
``LABWIRE_SECRET_KEY``          this process's secret key (a ``.key_secret`` file): used by its
                                servers, and by its clients unless the next one is set
``LABWIRE_CLIENT_SECRET_KEY``   a separate secret key for this process's client sockets
``LABWIRE_SERVER_KEY``          the public key of the servers this process connects to
``LABWIRE_ALLOWED_KEYS``        client keys this process's servers accept: keys, ``.key``
                                files, or folders of ``.key`` files; ``*`` accepts any client
                                (encryption without an allow-list)
``LABWIRE_ADMIN_KEYS``          client keys allowed to run admin operations (stop a server,
                                overwrite a registered name, set properties): keys, ``.key``
                                files or folders
==============================  ================================================================
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
import os
import re
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from labwire.errors import AuthenticationError, SecurityConfigError

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

log = logging.getLogger(__name__)

_T = TypeVar("_T")

PUBLIC_KEY_SUFFIX: Final = ".key"
SECRET_KEY_SUFFIX: Final = ".key_secret"

ENV_SECRET_KEY: Final = "LABWIRE_SECRET_KEY"
ENV_CLIENT_SECRET_KEY: Final = "LABWIRE_CLIENT_SECRET_KEY"
ENV_SERVER_KEY: Final = "LABWIRE_SERVER_KEY"
ENV_ALLOWED_KEYS: Final = "LABWIRE_ALLOWED_KEYS"
ENV_ADMIN_KEYS: Final = "LABWIRE_ADMIN_KEYS"

_ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
_ZAP_VERSION: Final = b"1.0"
_KEY_TEXT = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_HANDSHAKE_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
# Unique suffixes for inproc endpoints and ZAP domains (itertools.count is thread-safe in CPython).
_ids = itertools.count(1)

_PUBLIC_BANNER = """#   ****  Generated on {now} by labwire  ****
#   ZeroMQ CURVE Public Certificate
#   Give this file to the peers that must accept this key.

"""
_SECRET_BANNER = """#   ****  Generated on {now} by labwire  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

"""


# --------------------------------------------------------------------------------- key material


def _has_key_shape(text: object) -> bool:
    """Whether ``text`` is 40 Z85 characters (a key, or text that only looks like one)."""
    return isinstance(text, str) and _KEY_TEXT.fullmatch(text) is not None


def _decodes(text: str) -> bool:
    """Whether Z85 ``text`` decodes: each group of five characters must stay below 2**32."""
    try:
        z85.decode(text)
    except (ValueError, struct.error):
        return False
    return True


def is_key_text(text: object) -> bool:
    """Whether ``text`` is a CurveZMQ key in its 40-character Z85 form."""
    return _has_key_shape(text) and _decodes(str(text))


def _check_key(text: object, what: str) -> str:
    """``text`` if it is a key; otherwise the one clear error every key source gives."""
    if not _has_key_shape(text):
        raise SecurityConfigError(f"{what} is not a CurveZMQ key (40 Z85 characters): {text!r}")
    assert isinstance(text, str)
    if not _decodes(text):
        raise SecurityConfigError(
            f"{what} is not a CurveZMQ key: {text!r} has the 40 Z85 characters of one but "
            "decodes out of range (a mistyped or made-up key; make one with `labwire keys new`)"
        )
    return text


def public_key_from_secret(secret_key: str) -> str:
    """The public key (Z85 text) that belongs to a secret key (Z85 text).

    Raises:
        SecurityConfigError: ``secret_key`` is not a key.
    """
    secret = _check_key(secret_key, "secret key").encode("ascii")
    return zmq.curve_public(secret).decode("ascii")


def _key_file_text(banner: str, public_key: str, secret_key: str | None) -> str:
    now = datetime.datetime.now().isoformat(timespec="seconds")
    lines = [banner.format(now=now), "metadata\n", "curve\n", f'    public-key = "{public_key}"\n']
    if secret_key is not None:
        lines.append(f'    secret-key = "{secret_key}"\n')
    return "".join(lines)


def _write_new_file(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first byte on; never overwrite anything."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise SecurityConfigError(
            f"{path} already exists; key files are never overwritten "
            "(choose another name, or delete the old pair first)"
        ) from None
    except OSError as exc:
        raise SecurityConfigError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        # The umask can only take permission bits away; fchmod makes the mode exact.
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        data = text.encode("ascii")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise SecurityConfigError(f"cannot write key file {path}: {exc.strerror}") from exc
    os.close(fd)


def generate_keypair(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write a new CurveZMQ keypair as ``NAME.key`` (public) and ``NAME.key_secret`` (secret).

    The secret file is created with mode 0600 (it never exists with wider permissions, whatever
    the umask); the folder is created (mode 0700) when missing. Existing files are never
    overwritten. This is what ``labwire keys new NAME --dir FOLDER`` runs.

    Args:
        folder: Where to write the files.
        name: The base name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
            digit.

    Returns:
        ``(public_path, secret_path)``.

    Raises:
        SecurityConfigError: Bad name, a file of that name exists, or the files cannot be written.
    """
    if not isinstance(name, str) or _KEY_NAME.fullmatch(name) is None:
        raise SecurityConfigError(
            f"invalid key name {name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    directory = Path(folder).expanduser()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SecurityConfigError(f"cannot create key folder {directory}: {exc.strerror}") from exc
    public_path = directory / f"{name}{PUBLIC_KEY_SUFFIX}"
    secret_path = directory / f"{name}{SECRET_KEY_SUFFIX}"
    for path in (public_path, secret_path):
        if path.exists() or path.is_symlink():
            raise SecurityConfigError(
                f"{path} already exists; key files are never overwritten "
                "(choose another name, or delete the old pair first)"
            )
    public_raw, secret_raw = zmq.curve_keypair()
    public_key, secret_key = public_raw.decode("ascii"), secret_raw.decode("ascii")
    _write_new_file(secret_path, _key_file_text(_SECRET_BANNER, public_key, secret_key), 0o600)
    try:
        _write_new_file(public_path, _key_file_text(_PUBLIC_BANNER, public_key, None), 0o644)
    except SecurityConfigError:
        secret_path.unlink(missing_ok=True)
        raise
    log.info("wrote CurveZMQ keypair %s (public key %s)", secret_path, public_key)
    return public_path, secret_path


def ensure_keypair(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Return the keypair ``NAME`` in ``folder``, generating it on first use.

    Used by ``--secure`` to make keys on the first run and reuse them afterwards.

    Returns:
        ``(public_path, secret_path)``.

    Raises:
        SecurityConfigError: Only one of the two files exists, the secret file is unsafe,
            or the files cannot be written.
    """
    directory = Path(folder).expanduser()
    public_path = directory / f"{name}{PUBLIC_KEY_SUFFIX}"
    secret_path = directory / f"{name}{SECRET_KEY_SUFFIX}"
    has_public, has_secret = public_path.exists(), secret_path.exists()
    if not has_public and not has_secret:
        return generate_keypair(directory, name)
    if not (has_public and has_secret):
        present, missing = (public_path, secret_path) if has_public else (secret_path, public_path)
        raise SecurityConfigError(f"{present} exists but {missing} does not; restore or remove it")
    if public_key_of(public_path) != public_key_from_secret(load_secret_key(secret_path)):
        raise SecurityConfigError(f"{public_path} and {secret_path} hold different keypairs")
    return public_path, secret_path


def _parse_key_file(text: str) -> tuple[str | None, str | None]:
    """Read the keys out of a certificate, the way :func:`zmq.auth.load_certificate` does."""
    public_key: str | None = None
    secret_key: str | None = None
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.startswith("#"):
            continue
        if line.startswith("public-key") and "=" in line:
            public_key = line.split("=", 1)[1].strip(" \t'\"")
        elif line.startswith("secret-key") and "=" in line:
            secret_key = line.split("=", 1)[1].strip(" \t'\"")
    return public_key, secret_key


def _read_key_file(path: Path) -> tuple[str, int]:
    """The text of a key file and its permission bits."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SecurityConfigError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecurityConfigError(f"key file {path} is not a regular file")
        if info.st_size > 65536:
            raise SecurityConfigError(f"key file {path} is too large to be a key file")
        with os.fdopen(os.dup(fd), "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise SecurityConfigError(f"cannot read key file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    try:
        return data.decode("ascii"), stat.S_IMODE(info.st_mode)
    except UnicodeDecodeError:
        raise SecurityConfigError(f"{path} is not a key file (not ASCII text)") from None


def load_public_key(path: str | os.PathLike[str]) -> str:
    """Read the public key out of a key file (``.key``, or the public line of a ``.key_secret``).

    Returns:
        The public key as Z85 text.

    Raises:
        SecurityConfigError: The file cannot be read or holds no valid public key.
    """
    file = Path(path).expanduser()
    public_key, _ = _parse_key_file(_read_key_file(file)[0])
    if public_key is None:
        raise SecurityConfigError(f"{file} holds no public-key line; is it a key file?")
    return _check_key(public_key, f"the public key in {file}")


def load_secret_key(path: str | os.PathLike[str]) -> str:
    """Read a secret key file, refusing one that group or others can read.

    Args:
        path: A ``.key_secret`` file.

    Returns:
        The secret key as Z85 text.

    Raises:
        SecurityConfigError: The file cannot be read, holds no valid secret key, its public and
            secret keys do not match, or its permissions let group or others read it (the
            message names the file and the ``chmod 600`` that fixes it).
    """
    file = Path(path).expanduser()
    text, mode = _read_key_file(file)
    public_key, secret_key = _parse_key_file(text)
    if secret_key is None:
        raise SecurityConfigError(
            f"{file} holds no secret-key line (use the {SECRET_KEY_SUFFIX} file, not the "
            f"public {PUBLIC_KEY_SUFFIX} file)"
        )
    if os.name != "nt" and mode & 0o077:
        raise SecurityConfigError(
            f"secret key file {file} can be read or changed by group or others "
            f"(mode {mode:04o}); labwire refuses to use it. Fix it with: chmod 600 {file}"
        )
    secret_key = _check_key(secret_key, f"the secret key in {file}")
    if public_key is not None and public_key != public_key_from_secret(secret_key):
        raise SecurityConfigError(f"the public and secret keys in {file} do not belong together")
    return secret_key


def public_key_of(path: str | os.PathLike[str]) -> str:
    """The public key of any key file, public or secret (what ``labwire keys show`` prints).

    A secret file's permissions are not checked here: only its public half is used.

    Raises:
        SecurityConfigError: The file cannot be read or holds no key.
    """
    file = Path(path).expanduser()
    public_key, secret_key = _parse_key_file(_read_key_file(file)[0])
    if public_key is not None:
        return _check_key(public_key, f"the public key in {file}")
    if secret_key is not None:
        return public_key_from_secret(_check_key(secret_key, f"the secret key in {file}"))
    raise SecurityConfigError(f"{file} holds no key; is it a key file?")


def load_public_keys(directory: str | os.PathLike[str]) -> frozenset[str]:
    """Read every ``*.key`` file in a folder (the czmq/pyzmq convention for allow-lists).

    Raises:
        SecurityConfigError: The folder or one of its key files cannot be read.
    """
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        raise SecurityConfigError(f"key folder {folder} does not exist or is not a folder")
    return frozenset(load_public_key(file) for file in sorted(folder.glob(f"*{PUBLIC_KEY_SUFFIX}")))


def _key_set(value: object, what: str) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise SecurityConfigError(f"{what} must be a collection of keys, got {value!r}")
    return frozenset(_check_key(key, f"an entry of {what}") for key in value)


# ----------------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True, repr=False)
class Security:
    """CurveZMQ settings, applied by :class:`labwire.transport.Transport` to every socket.

    Put one in :attr:`labwire.config.Settings.security`. Keys are Z85 text (40 characters);
    use :func:`load_secret_key` / :func:`load_public_key` to read key files, or
    :meth:`from_env` / :meth:`from_folder`.

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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Security | None:
        """Build security settings from the ``LABWIRE_*`` variables listed in the module docs.

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
        allowed, allowed_dirs, allow_any = _from_env(values, ENV_ALLOWED_KEYS, _key_list)
        admin, admin_dirs, admin_any = _from_env(values, ENV_ADMIN_KEYS, _key_list)
        if admin_any:
            raise SecurityConfigError(f"{ENV_ADMIN_KEYS} cannot be '*': list the admin keys")
        for folder in admin_dirs:
            admin |= _from_env({ENV_ADMIN_KEYS: str(folder)}, ENV_ADMIN_KEYS, load_public_keys)
        return cls(
            secret_key=_from_env(values, ENV_SECRET_KEY, _secret_key_from_text),
            server_key=_from_env(values, ENV_SERVER_KEY, _public_key_from_text),
            allowed_keys=frozenset(allowed),
            allowed_keys_dirs=tuple(allowed_dirs),
            admin_keys=frozenset(admin),
            client_secret_key=_from_env(values, ENV_CLIENT_SECRET_KEY, _secret_key_from_text),
            allow_any_client=allow_any,
        )


def _from_env(values: Mapping[str, str], name: str, parse: Callable[[str], _T]) -> _T:
    """Parse one variable; errors name the variable."""
    try:
        return parse(values[name])
    except SecurityConfigError as exc:
        raise SecurityConfigError(f"{name}: {exc}") from None


def _secret_key_from_text(text: str) -> str | None:
    if not text:
        return None
    return _check_key(text, "the value") if _has_key_shape(text) else load_secret_key(text)


def _public_key_from_text(text: str) -> str | None:
    if not text:
        return None
    return _check_key(text, "the value") if _has_key_shape(text) else public_key_of(text)


def _key_list(text: str) -> tuple[set[str], list[Path], bool]:
    """Keys, folders and ``*`` from a comma-separated list (Z85 has no commas)."""
    keys: set[str] = set()
    folders: list[Path] = []
    allow_any = False
    for raw_entry in text.split(","):
        entry = raw_entry.strip()
        if not entry:
            continue
        if entry == "*":
            allow_any = True
        elif _has_key_shape(entry):
            keys.add(_check_key(entry, "an entry"))
        elif Path(entry).expanduser().is_dir():
            folders.append(Path(entry).expanduser())
        else:
            keys.add(public_key_of(entry))
    return keys, folders, allow_any


# ------------------------------------------------------------------------------ authenticator


class AccessPolicy:
    """Decides whether a client key may connect to the servers of one :class:`Security`.

    Used on the authenticator thread only (it caches the contents of the key folders).
    """

    def __init__(self, security: Security) -> None:
        keys = set(security.allowed_keys) | set(security.admin_keys)
        if security.public_key is not None:
            keys.add(security.public_key)
        self._keys = frozenset(keys)
        self._folders = security.allowed_keys_dirs
        self._allow_any = security.allow_any_client
        self._key_check = security.key_check
        self._folder_cache: dict[Path, tuple[object, frozenset[str]]] = {}

    def allows(self, client_key: str) -> bool:
        """Whether ``client_key`` (Z85 text) may connect.

        Raises:
            Exception: Whatever :attr:`Security.key_check` raises (the authenticator denies).
        """
        if self._allow_any or client_key in self._keys:
            return True
        if any(client_key in self._folder_keys(folder) for folder in self._folders):
            return True
        if self._key_check is not None:
            return bool(self._key_check(client_key))
        return False

    def _folder_keys(self, folder: Path) -> frozenset[str]:
        try:
            signature = tuple(
                sorted(
                    (entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
                    for entry in os.scandir(folder)
                    if entry.name.endswith(PUBLIC_KEY_SUFFIX)
                )
            )
        except OSError as exc:
            log.warning("cannot read allowed keys folder %s: %s", folder, exc)
            return frozenset()
        cached = self._folder_cache.get(folder)
        if cached is not None and cached[0] == signature:
            return cached[1]
        keys: set[str] = set()
        for name, _, _ in signature:
            try:
                keys.add(load_public_key(folder / name))
            except SecurityConfigError as exc:
                log.warning("ignoring unusable key file: %s", exc)
        result = frozenset(keys)
        self._folder_cache[folder] = (signature, result)
        return result


def new_zap_domain() -> bytes:
    """A ZAP domain unique in this process (one per :class:`~labwire.transport.Transport`)."""
    return f"labwire-{os.getpid()}-{next(_ids)}".encode("ascii")


class Authenticator:
    """The ZAP handler of one ZeroMQ context: which client keys may connect to labwire servers.

    There is at most one per context (ZeroMQ has one ZAP endpoint per context). Server sockets
    get it through :func:`lease_authenticator`; the first lease starts it and the last release
    stops it, so its thread never outlives the sockets it serves. :meth:`stop` can also be
    called directly: while it is stopped, every handshake on the context's secured servers
    fails (fail closed) until :meth:`start`.

    Attributes:
        context: The ZeroMQ context it serves.
        allowed_count: Handshakes allowed so far.
        denied_count: Handshakes denied so far (unknown key, bad request, or a callback error).
    """

    def __init__(self, context: zmq.Context[Any]) -> None:
        self.context = context
        self.allowed_count = 0
        self.denied_count = 0
        self._lock = threading.Lock()
        self._policies: dict[bytes, AccessPolicy] = {}
        self._holds: dict[bytes, int] = {}
        self._thread: threading.Thread | None = None
        self._control: zmq.Socket[Any] | None = None

    @property
    def is_running(self) -> bool:
        """Whether the handler thread is answering handshakes."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start answering handshakes (no-op when running).

        Raises:
            SecurityConfigError: Another ZAP handler is bound on this context.
        """
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._close_control()
            zap = _sync_socket(self.context, zmq.REP)
            zap.setsockopt(zmq.LINGER, 0)
            try:
                zap.bind(_ZAP_ENDPOINT)
            except zmq.ZMQError as exc:
                zap.close(linger=0)
                if exc.errno == zmq.EADDRINUSE:
                    raise SecurityConfigError(
                        "another ZAP authenticator is already running on this ZeroMQ context; "
                        "labwire needs its own (give labwire a separate context)"
                    ) from exc
                raise SecurityConfigError(f"cannot start the authenticator: {exc}") from exc
            endpoint = f"inproc://labwire-authenticator-{next(_ids)}"
            control = _sync_socket(self.context, zmq.PAIR)
            control.setsockopt(zmq.LINGER, 0)
            control.bind(endpoint)
            peer = _sync_socket(self.context, zmq.PAIR)
            peer.setsockopt(zmq.LINGER, 0)
            peer.connect(endpoint)
            thread = threading.Thread(
                target=self._run, args=(zap, peer), name="labwire-authenticator", daemon=True
            )
            thread.start()
            self._thread, self._control = thread, control
        log.debug("authenticator started")

    def stop(self, timeout: float = 1.0) -> None:
        """Stop answering handshakes and join the thread (no-op when stopped).

        Secured servers stay up but refuse every client until :meth:`start` (fail closed).

        Args:
            timeout: Longest wait for the thread, in seconds (it may be inside a slow
                :attr:`Security.key_check`).
        """
        with self._lock:
            thread, control = self._thread, self._control
            self._thread = None
            if thread is None or control is None:
                return
            try:
                control.send(b"STOP", zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.debug("cannot signal the authenticator thread: %s", exc)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("authenticator thread did not stop within %.1f s", timeout)
        with self._lock:
            if self._thread is None:
                self._close_control()
        log.debug("authenticator stopped")

    def close(self) -> None:
        """Same as :meth:`stop`."""
        self.stop()

    def _close_control(self) -> None:
        if self._control is not None:
            self._control.close(linger=0)
            self._control = None

    def _hold(self, domain: bytes, policy: AccessPolicy) -> None:
        with self._lock:
            self._policies.setdefault(domain, policy)
            self._holds[domain] = self._holds.get(domain, 0) + 1

    def _drop(self, domain: bytes) -> int:
        """Release one hold on ``domain``; return the holds left on all domains."""
        with self._lock:
            left = self._holds.get(domain, 0) - 1
            if left <= 0:
                self._holds.pop(domain, None)
                self._policies.pop(domain, None)
            else:
                self._holds[domain] = left
            return sum(self._holds.values())

    def _run(self, zap: zmq.Socket[Any], control: zmq.Socket[Any]) -> None:
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        try:
            while True:
                try:
                    ready = dict(poller.poll())
                except zmq.ZMQError as exc:
                    if exc.errno not in (zmq.ETERM, zmq.ENOTSOCK):
                        log.error("authenticator stopped by a socket error: %s", exc)
                    return
                if control in ready:
                    return
                if zap in ready and not self._serve_one(zap):
                    return
        finally:
            # Closing the ZAP socket makes libzmq refuse every handshake (fail closed).
            zap.close(linger=0)
            control.close(linger=0)

    def _serve_one(self, zap: zmq.Socket[Any]) -> bool:
        """Answer one ZAP request; False when the ZAP socket is no longer usable."""
        try:
            request = zap.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return True
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.ETERM, zmq.ENOTSOCK):
                log.error("authenticator stopped: cannot receive ZAP request: %s", exc)
            return False
        reply = self._reply_to(request)
        try:
            zap.send_multipart(reply)
        except zmq.ZMQError as exc:
            if exc.errno not in (zmq.ETERM, zmq.ENOTSOCK):
                log.error("authenticator stopped: cannot send ZAP reply: %s", exc)
            return False
        return True

    def _reply_to(self, request: list[bytes]) -> list[bytes]:
        request_id = request[1] if len(request) > 1 else b""
        try:
            status, text, user_id = self._decide(request)
        except Exception:
            log.exception("authenticator error; the client is denied")
            status, text, user_id = b"500", b"internal error", b""
        if status == b"200":
            self.allowed_count += 1
        else:
            self.denied_count += 1
        return [_ZAP_VERSION, request_id, status, text, user_id, b""]

    def _decide(self, request: list[bytes]) -> tuple[bytes, bytes, bytes]:
        if len(request) < 6 or request[0] != _ZAP_VERSION:
            log.warning("malformed ZAP request (%d frames); denied", len(request))
            return b"400", b"malformed ZAP request", b""
        domain, address, mechanism, credentials = request[2], request[3], request[5], request[6:]
        peer = address.decode("ascii", "replace")
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            log.warning("refused %s handshake from %s: only CURVE is accepted", mechanism, peer)
            return b"400", b"CURVE required", b""
        with self._lock:
            policy = self._policies.get(domain)
        client_key = z85.encode(credentials[0]).decode("ascii")
        if policy is None:
            log.warning("refused client key %s from %s: server is closing", client_key, peer)
            return b"400", b"unknown ZAP domain", b""
        try:
            allowed = policy.allows(client_key)
        except Exception:
            log.exception("key check failed for client key %s from %s; denied", client_key, peer)
            return b"400", b"key check failed", b""
        if not allowed:
            log.warning("refused client key %s from %s: not in the allow-list", client_key, peer)
            return b"400", b"client key not allowed", b""
        log.debug("allowed client key %s from %s", client_key, peer)
        return b"200", b"OK", client_key.encode("ascii")


class AuthenticatorLease:
    """One secured server socket's hold on its context's :class:`Authenticator`.

    Attributes:
        authenticator: The authenticator held.
        domain: The ZAP domain of the socket.
    """

    def __init__(self, authenticator: Authenticator, domain: bytes) -> None:
        self.authenticator = authenticator
        self.domain = domain
        self._released = False

    def release(self) -> None:
        """Give the hold back (idempotent); the last release stops the authenticator."""
        with _shared_lock:
            if self._released:
                return
            self._released = True
            if self.authenticator._drop(self.domain) == 0:
                key = _context_key(self.authenticator.context)
                if _shared.get(key) is self.authenticator:
                    del _shared[key]
                self.authenticator.stop()


# ZeroMQ has one ZAP endpoint per context, so authenticators are shared per context: an entry
# exists only while a lease is held (the entry keeps the context alive, nothing longer). Keyed
# by the libzmq context, so that shadows of one context (zmq.asyncio) share one authenticator.
_shared: dict[int, Authenticator] = {}
_shared_lock = threading.Lock()


def _context_key(context: zmq.Context[Any]) -> int:
    return int(context.underlying)


def _sync_socket(context: zmq.Context[Any], kind: int) -> zmq.Socket[Any]:
    """A plain (blocking) socket, even when ``context`` is a ``zmq.asyncio`` shadow."""
    sock: zmq.Socket[Any] = context.socket(kind, socket_class=zmq.Socket)
    return sock


def plain_handshake_refused(context: zmq.Context[Any], url: str, timeout_ms: int = 500) -> bool:
    """Whether the server at ``url`` drops a plain (unsecured) client during the handshake.

    What a CurveZMQ server does to a client without keys, so the command line can say "this
    peer requires security" instead of "not reachable". False also when nobody answers.

    Args:
        context: The context to make the probing socket in.
        url: The server's endpoint.
        timeout_ms: How long to wait for the handshake's outcome.
    """
    probe = _sync_socket(context, zmq.DEALER)
    events = _sync_socket(context, zmq.PAIR)
    address = f"inproc://labwire-probe-{next(_ids)}"
    try:
        probe.setsockopt(zmq.LINGER, 0)
        events.setsockopt(zmq.LINGER, 0)
        probe.monitor(address, _HANDSHAKE_EVENTS)
        events.connect(address)
        probe.connect(url)
        if not events.poll(timeout_ms):
            return False
        event = parse_monitor_message(events.recv_multipart())["event"]
        return bool(event != zmq.EVENT_HANDSHAKE_SUCCEEDED)
    except zmq.ZMQError as exc:
        log.debug("cannot probe %s for security: %s", url, exc)
        return False
    finally:
        with contextlib.suppress(zmq.ZMQError):
            probe.disable_monitor()
        events.close(linger=0)
        probe.close(linger=0)


def lease_authenticator(
    context: zmq.Context[Any], domain: bytes, policy: AccessPolicy
) -> AuthenticatorLease:
    """Hold the authenticator of ``context`` for a server socket of ZAP ``domain``.

    Starts it when needed. Release the lease when the socket closes.

    Raises:
        SecurityConfigError: Another ZAP handler is bound on this context.
    """
    key = _context_key(context)
    with _shared_lock:
        authenticator = _shared.get(key)
        if authenticator is None or authenticator.context.closed:
            authenticator = Authenticator(context)
            _shared[key] = authenticator
        authenticator._hold(domain, policy)
        try:
            authenticator.start()
        except BaseException:
            if authenticator._drop(domain) == 0:
                del _shared[key]
            raise
    return AuthenticatorLease(authenticator, domain)


def shared_authenticator(context: zmq.Context[Any]) -> Authenticator | None:
    """The authenticator currently serving ``context`` (None when no secured server exists)."""
    with _shared_lock:
        authenticator = _shared.get(_context_key(context))
    if authenticator is None or authenticator.context.closed:
        return None
    return authenticator


# ---------------------------------------------------------------------------- handshake watch


class HandshakeWatcher:
    """Follows the security handshakes of one client socket and reports failures.

    Made by the transport for every secured client socket; reached through the
    :class:`~labwire.transport.Socket` methods (``handshake_error``, ``wait_handshake``,
    ``retry_handshake``, ``handshake_events``). Use it from the thread that owns the socket.

    Args:
        raw: The client socket (before it connects).
        client_key: The public key the socket presents (named in error messages).
        retry_interval_ms: Least time between two attempts on one endpoint.
    """

    def __init__(self, raw: zmq.Socket[Any], *, client_key: str, retry_interval_ms: int) -> None:
        self._raw = raw
        self._client_key = client_key
        self._retry_interval = retry_interval_ms / 1000
        address = f"inproc://labwire-handshakes-{next(_ids)}"
        raw.monitor(address, _HANDSHAKE_EVENTS)
        events = _sync_socket(raw.context, zmq.PAIR)
        try:
            events.setsockopt(zmq.LINGER, 0)
            # Unbounded: libzmq blocks the monitored socket when the event pipe is full.
            # Only handshake events are sent (one per connection), and readers drain them.
            events.setsockopt(zmq.RCVHWM, 0)
            events.connect(address)
        except zmq.ZMQError:
            events.close(linger=0)
            raw.disable_monitor()
            raise
        self.events = events
        self.failure_count = 0
        self._server_keys: dict[str, str] = {}
        self._failures: dict[str, tuple[AuthenticationError, float]] = {}
        self._succeeded: set[str] = set()
        self._forgotten: set[str] = set()

    def watch(self, url: str, server_key: str) -> None:
        """Record that the socket connects to ``url`` expecting ``server_key``."""
        self.drain(0)  # events of an earlier connection to ``url`` are not about this one
        self._server_keys[url] = server_key
        self._failures.pop(url, None)
        self._succeeded.discard(url)
        self._forgotten.discard(url)

    def forget(self, url: str) -> None:
        """Stop following ``url`` (the socket disconnected from it)."""
        self.drain(0)
        if self._server_keys.pop(url, None) is not None:
            self._forgotten.add(url)
        self._failures.pop(url, None)
        self._succeeded.discard(url)

    def drain(self, timeout_ms: int | None = 0) -> None:
        """Read the pending monitor events, waiting up to ``timeout_ms`` for the first one."""
        wait = timeout_ms
        while self.events.poll(wait):
            wait = 0
            try:
                message = self.events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                event = parse_monitor_message(message)
            except (ValueError, IndexError, TypeError):
                log.debug("ignoring malformed monitor event %r", message)
                continue
            self._on_event(int(event["event"]), int(event["value"]), event["endpoint"])

    def _url_of(self, endpoint: bytes | str) -> str | None:
        text = endpoint.decode("utf-8", "replace") if isinstance(endpoint, bytes) else endpoint
        if text in self._server_keys:
            return text
        if text in self._forgotten:
            return None  # a late event from an endpoint the socket left
        if len(self._server_keys) == 1:
            return next(iter(self._server_keys))
        # A hostname is reported by its resolved address; match on the port.
        port = text.rpartition(":")[2]
        matches = [url for url in self._server_keys if url.rpartition(":")[2] == port]
        return matches[0] if len(matches) == 1 else None

    def _on_event(self, event: int, value: int, endpoint: bytes | str) -> None:
        url = self._url_of(endpoint)
        if url is None:
            log.debug("handshake event %d for unknown endpoint %r", event, endpoint)
            return
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._failures.pop(url, None)
            self._succeeded.add(url)
            return
        self.failure_count += 1
        self._succeeded.discard(url)
        error = self._error_for(event, value, url)
        self._failures[url] = (error, time.monotonic())
        log.info("%s", error)  # raised to the caller, who says it (once)
        # libzmq does not reconnect after a failed handshake (RECONNECT_STOP); dropping the
        # endpoint makes that explicit (and holds even where that option is unsupported).
        try:
            self._raw.disconnect(url)
        except zmq.ZMQError:
            log.debug("endpoint %s already gone after its failed handshake", url)

    def _error_for(self, event: int, value: int, url: str) -> AuthenticationError:
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            if value == 400:
                return AuthenticationError(
                    f"{url}: the server refused this client's key {self._client_key} "
                    "(it is not in the server's allowed keys)"
                )
            return AuthenticationError(
                f"{url}: the server's authenticator refused the handshake (ZAP status {value})"
            )
        if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            return AuthenticationError(
                f"{url}: security handshake failed (protocol error {value:#x}): the server may "
                "not have security turned on"
            )
        return AuthenticationError(
            f"{url}: security handshake failed: the server's public key is wrong, or the "
            "server's authenticator is not running"
        )

    def error(self) -> AuthenticationError | None:
        """The latest unresolved handshake failure (after :meth:`drain`), or None."""
        if not self._failures:
            return None
        return max(self._failures.values(), key=lambda item: item[1])[0]

    def wait(self, timeout_ms: int) -> bool:
        """Wait until every watched endpoint completed a handshake.

        Returns:
            True when they all did; False when ``timeout_ms`` passed first.

        Raises:
            AuthenticationError: A handshake failed.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            self.drain(0)
            error = self.error()
            if error is not None:
                raise error
            if self._server_keys and self._succeeded >= self._server_keys.keys():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.drain(max(1, int(remaining * 1000)))

    def retry(self) -> bool:
        """Make one new attempt on each failed endpoint whose retry interval has passed.

        Returns:
            True when at least one new attempt started.
        """
        self.drain(0)
        now = time.monotonic()
        retried = False
        for url, (_, failed_at) in list(self._failures.items()):
            if now - failed_at < self._retry_interval:
                continue
            self._raw.setsockopt(zmq.CURVE_SERVERKEY, self._server_keys[url].encode("ascii"))
            with contextlib.suppress(zmq.ZMQError):  # already dropped after the failure
                self._raw.disconnect(url)
            self._raw.connect(url)
            del self._failures[url]
            retried = True
            log.debug("retrying the security handshake with %s", url)
        return retried

    def close(self) -> None:
        """Stop monitoring (call before closing the watched socket)."""
        if not self._raw.closed:
            try:
                self._raw.disable_monitor()
            except zmq.ZMQError as exc:
                log.debug("cannot disable the socket monitor: %s", exc)
        self.events.close(linger=0)


# ------------------------------------------------------------------------- socket configuration


def secure_server_socket(
    raw: zmq.Socket[Any], security: Security, domain: bytes, policy: AccessPolicy
) -> AuthenticatorLease:
    """Make ``raw`` (not yet bound) a CURVE server of ZAP ``domain``, and hold the authenticator.

    ``ZAP_ENFORCE_DOMAIN`` makes libzmq refuse handshakes that no ZAP handler answers.

    Returns:
        The lease to release when the socket closes.

    Raises:
        SecurityConfigError: No server secret key, or the authenticator cannot start.
        zmq.ZMQError: An option was refused (translated by the caller).
    """
    if security.secret_key is None:
        raise SecurityConfigError(
            f"a secured server needs a secret key: set Security.secret_key ({ENV_SECRET_KEY})"
        )
    raw.setsockopt(zmq.CURVE_SERVER, 1)
    raw.setsockopt(zmq.CURVE_SECRETKEY, security.secret_key.encode("ascii"))
    raw.setsockopt(zmq.ZAP_DOMAIN, domain)
    raw.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    return lease_authenticator(raw.context, domain, policy)


def secure_client_socket(
    raw: zmq.Socket[Any], client_secret_key: str, retry_interval_ms: int
) -> HandshakeWatcher:
    """Give ``raw`` (not yet connected) a CURVE client keypair and a handshake watcher.

    The server key is set per connection (:meth:`HandshakeWatcher.watch` and the socket's
    ``connect``). Failed handshakes are not retried by libzmq.

    Raises:
        zmq.ZMQError: An option was refused (translated by the caller).
    """
    public_key = public_key_from_secret(client_secret_key)
    raw.setsockopt(zmq.CURVE_PUBLICKEY, public_key.encode("ascii"))
    raw.setsockopt(zmq.CURVE_SECRETKEY, client_secret_key.encode("ascii"))
    option = getattr(zmq, "RECONNECT_STOP", None)
    value = getattr(zmq, "RECONNECT_STOP_HANDSHAKE_FAILED", None)
    if isinstance(option, int) and isinstance(value, int):
        try:
            raw.setsockopt(option, value)
        except zmq.ZMQError:
            # Older libzmq: the watcher drops failed endpoints itself when it drains events.
            log.debug("RECONNECT_STOP is not supported by this libzmq")
    return HandshakeWatcher(raw, client_key=public_key, retry_interval_ms=retry_interval_ms)


def ephemeral_secret_key() -> str:
    """A fresh throw-away secret key (for clients configured without a keypair)."""
    return zmq.curve_keypair()[1].decode("ascii")
