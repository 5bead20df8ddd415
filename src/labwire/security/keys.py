"""CurveZMQ keys: Z85 key text, key files (make, read, check) and keys given as text or paths."""

from __future__ import annotations

import datetime
import logging
import os
import re
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import zmq
from zmq.utils import z85

from labwire.errors import SecurityConfigError

log = logging.getLogger(__name__)


PUBLIC_KEY_SUFFIX: Final = ".key"
SECRET_KEY_SUFFIX: Final = ".key_secret"


_KEY_TEXT = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


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


def secret_key_from_text(text: str) -> str | None:
    """A secret key given as its Z85 text or as the path of a ``.key_secret`` file.

    Returns:
        The secret key, or None for empty text.

    Raises:
        SecurityConfigError: Not a key, or the file cannot be used (see :func:`load_secret_key`).
    """
    if not text:
        return None
    return _check_key(text, "the value") if _has_key_shape(text) else load_secret_key(text)


def public_key_from_text(text: str) -> str | None:
    """A public key given as its Z85 text or as the path of any key file.

    Returns:
        The public key, or None for empty text.

    Raises:
        SecurityConfigError: Not a key, or the file holds none.
    """
    if not text:
        return None
    return _check_key(text, "the value") if _has_key_shape(text) else public_key_of(text)


def keys_from_text(text: str) -> tuple[set[str], list[Path], bool]:
    """Keys, folders and ``*`` from a comma-separated list (Z85 has no commas).

    Each entry is a key's Z85 text, a key file, a folder of ``.key`` files, or ``*``.

    Returns:
        ``(keys, folders, any)``: the keys named directly or by file, the folders, and whether
        ``*`` (any client) was listed.

    Raises:
        SecurityConfigError: An entry is not a key, a key file or a folder.
    """
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


def ephemeral_secret_key() -> str:
    """A fresh throw-away secret key (for clients configured without a keypair)."""
    return zmq.curve_keypair()[1].decode("ascii")
