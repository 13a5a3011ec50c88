"""Key-encryption keys (KEKs): what wraps the per-version data key of every stored secret.

A :class:`Kek` wraps a 32-byte data key under authenticated data that binds it to
the secret's name and version, and unwraps it or raises :class:`KekUnwrapError`.
Two implementations: :class:`FileKek`, a 32-byte AES-256 key in a mode-0600
file, and (``donjon.hsm``) a key held in a PKCS#11 token. ``steward.toml``
``[secrets] kek`` names it; :func:`open_kek` is the one place that turns that
setting into a KEK, so a new kind only adds a branch there.

The file KEK wraps with AES-256-GCM (NIST SP 800-38D) and a random 96-bit nonce:
``0x01 || nonce (12) || ciphertext (32) || tag (16)`` — 61 bytes. A KEK wraps
one data key per secret version, far below the 2^32 random-nonce invocations
SP 800-38D section 8.3 allows per key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from donjon.steward.secrets.errors import KekError, KekUnwrapError

if TYPE_CHECKING:
    from donjon.hsm.keys import Pkcs11Kek
    from donjon.steward.config import StewardConfig

__all__ = [
    "DATA_KEY_BYTES",
    "FileKek",
    "Kek",
    "KekError",
    "KekUnwrapError",
    "create_file_kek",
    "kek_location",
    "open_kek",
]

#: Data keys are AES-256 keys.
DATA_KEY_BYTES = 32
_KEK_BYTES = 32
_FORMAT = b"\x01"
_NONCE = 12
_WRAPPED = 1 + _NONCE + DATA_KEY_BYTES + 16


@runtime_checkable
class Kek(Protocol):
    """A key-encryption key. Implementations never expose the key itself."""

    #: Names the KEK in errors and ``secret list`` (a file path or a PKCS#11 URI; never key bytes).
    name: str

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        """``data_key`` encrypted and authenticated together with ``aad``."""
        ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """The data key :meth:`wrap` was given; :class:`KekUnwrapError` if this KEK did not wrap it
        under this ``aad`` or the bytes were altered."""
        ...


class FileKek:
    """An AES-256 key read from a file; see the module docstring for the wrapped format."""

    def __init__(self, name: str, key: bytes) -> None:
        if len(key) != _KEK_BYTES:
            raise KekError(name, f"a file KEK is {_KEK_BYTES} bytes, not {len(key)}")
        self.name = name
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return f"FileKek({self.name!r})"

    @classmethod
    def open(cls, path: Path) -> FileKek:
        """Read the KEK at ``path``: a regular file (not a symlink), not readable by group or others,
        exactly 32 bytes."""
        name = str(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise KekError(
                name, "no such file ('donjon steward secret put' creates it with the first secret)"
            ) from e
        except OSError as e:
            raise KekError(name, f"cannot open: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KekError(name, "not a regular file")
            if st.st_mode & 0o077:
                raise KekError(name, f"mode {stat.S_IMODE(st.st_mode):04o} lets others read it; chmod 600")
            key = os.read(fd, _KEK_BYTES + 1)
        finally:
            os.close(fd)
        return cls(name, key)

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        if len(data_key) != DATA_KEY_BYTES:
            raise KekError(self.name, f"a data key is {DATA_KEY_BYTES} bytes, not {len(data_key)}")
        nonce = os.urandom(_NONCE)
        return _FORMAT + nonce + self._aead.encrypt(nonce, data_key, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if len(wrapped) != _WRAPPED or wrapped[:1] != _FORMAT:
            raise KekUnwrapError(self.name, f"a wrapped key is {_WRAPPED} bytes of format 1")
        try:
            return self._aead.decrypt(wrapped[1 : 1 + _NONCE], wrapped[1 + _NONCE :], aad)
        except InvalidTag as e:
            raise KekUnwrapError(self.name, "the data key does not unwrap (another KEK, or altered)") from e


def create_file_kek(path: Path) -> FileKek:
    """Create a new random file KEK at ``path``, mode 0600 whatever the umask.

    ``O_EXCL``: an existing KEK is never replaced (that would orphan every stored secret);
    ``O_NOFOLLOW`` with ``O_EXCL``: a planted symlink is an error, not a redirect.
    """
    key = AESGCM.generate_key(bit_length=256)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError as e:
        raise KekError(str(path), "exists; a KEK is created once (every stored secret depends on it)") from e
    except OSError as e:
        raise KekError(str(path), f"cannot create: {e.strerror}") from e
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(key)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return FileKek(str(path), key)


def kek_location(config: StewardConfig) -> Path:
    """The file ``[secrets] kek`` names, relative to ``steward.toml``."""
    return config.path.resolve().parent / config.secrets_kek


def open_kek(config: StewardConfig, *, create: bool = False) -> Kek:
    """The KEK ``steward.toml`` ``[secrets] kek`` names: a file path (relative to ``steward.toml``).

    Or an AES key in a PKCS#11 token (``pkcs11:`` URI, RFC 7512; :mod:`donjon.hsm`): recognised
    here, by the form of the setting. ``create`` makes it there when it does not exist yet (the
    first ``secret put``), as the first put makes the file.
    """
    if not config.secrets_kek.startswith("pkcs11:"):
        return FileKek.open(kek_location(config))
    from donjon.hsm import HsmError, ObjectNotFound, parse_uri
    from donjon.hsm.keys import create_kek, open_pkcs11_kek

    base = config.path.resolve().parent
    try:
        uri = parse_uri(config.secrets_kek)
    except HsmError as e:
        raise KekError("[secrets] kek", str(e)) from e
    try:
        try:
            return TokenKek(open_pkcs11_kek(uri, base=base))
        except ObjectNotFound:
            if not create:
                raise
            return TokenKek(create_kek(uri, base=base))
    except HsmError as e:
        raise KekError(uri.redacted(), str(e)) from e


class TokenKek:
    """A KEK in a PKCS#11 token (:class:`donjon.hsm.keys.Pkcs11Kek`) as the store's :class:`Kek`:
    the token's errors become the store's (a data key that does not unwrap: :class:`KekUnwrapError`)."""

    def __init__(self, kek: Pkcs11Kek) -> None:
        self._kek = kek
        self.name = kek.name

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        from donjon.hsm import HsmError

        try:
            return self._kek.wrap(data_key, aad)
        except HsmError as e:
            raise KekError(self.name, str(e)) from e

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        from donjon.hsm import HsmError, UnwrapFailed

        try:
            return self._kek.unwrap(wrapped, aad)
        except UnwrapFailed as e:
            raise KekUnwrapError(self.name, e.reason) from e
        except HsmError as e:
            raise KekError(self.name, str(e)) from e

    def close(self) -> None:
        self._kek.close()
