"""The log key: the Ed25519 key that signs the Steward's checkpoints (never the CA key).

The private key is a PKCS#8 PEM file created ``O_CREAT | O_EXCL | O_NOFOLLOW``
with mode 0600 (whatever the umask); its verifier key — the C2SP signed-note
``vkey`` line ``<origin>+<key ID>+<base64 key>`` that witnesses and relying
parties pin — is written beside it (``log-key.pub``, mode 0644) and served at
``GET /log/key``. A witness must be given that line out of band: a key fetched
from the log it audits proves nothing.

The key may instead live in a PKCS#11 token (``log_key = "pkcs11:..."``, docs/steward.md "Keys
in an HSM"): the token signs each checkpoint with ``CKM_EDDSA``, and ``log-key.pub`` beside
``steward.toml`` holds its verifier key.

The key name is the log's origin (``<trust domain>/donjon-steward-log`` unless
``[log] origin`` says otherwise), the first line of every checkpoint.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from donjon.hsm import Pkcs11Uri
from donjon.steward.errors import ConfigError
from donjon.tlog.checkpoint import NoteError, NoteSigner, check_key_name

__all__ = ["MAX_KEY_FILE", "create_log_key", "default_origin", "load_log_signer", "public_key_path"]

#: A PEM Ed25519 key is ~120 bytes.
MAX_KEY_FILE = 64 * 1024


def default_origin(trust_domain: str) -> str:
    return f"{trust_domain}/donjon-steward-log"


def public_key_path(key_path: Path) -> Path:
    """Where the verifier key of ``key_path`` is written: ``log-key.pem`` -> ``log-key.pub``."""
    return key_path.with_suffix(".pub")


def _create(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never replace a key (a new log key breaks every witness); O_NOFOLLOW with O_EXCL:
    # a planted symlink is an error, not a redirect.
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode
    )
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away (or the mode was never applied)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def create_log_key(path: Path, origin: str) -> NoteSigner:
    """Create a new log key at ``path`` (0600) and its verifier key beside it (0644).

    ``FileExistsError`` if either exists: a log key is created once.
    """
    check_key_name(origin)
    key = ed25519.Ed25519PrivateKey.generate()
    signer = NoteSigner(origin, key)
    pub = public_key_path(path)
    if pub.exists() or pub.is_symlink():
        raise FileExistsError(f"{pub} exists")
    _create(
        path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        0o600,
    )
    _create(pub, (signer.verifier.vkey() + "\n").encode(), 0o644)
    return signer


def load_log_signer(path: Path | Pkcs11Uri, origin: str, *, base: Path | None = None) -> NoteSigner:
    """The log key at ``path`` (or in the token the URI names: HsmError if it cannot be used), as
    a signer under ``origin``; :class:`ConfigError` naming the fix. ``base``: where a URI's
    relative ``pin-source`` is."""
    if isinstance(path, Pkcs11Uri):
        from donjon.hsm.keys import open_ed25519_key

        token_key = open_ed25519_key(path, base=base)
        try:
            return NoteSigner(origin, token_key)
        except NoteError as e:
            token_key.close()
            raise ConfigError(path.redacted(), f"log origin: {e.reason}") from e
    try:
        # Following a link to read is fine (secret mounts are links); creating never follows one.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:
        raise ConfigError(
            str(path),
            "the log key does not exist: a Steward created before the transparency log has none; "
            "`donjon steward log migrate --config steward.toml` creates it and converts the log",
        ) from e
    except OSError as e:
        raise ConfigError(str(path), f"cannot open the log key: {e.strerror}") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(str(path), "the log key is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise ConfigError(str(path), "the log key file is too large to be a key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(path), f"the log key is not a PEM private key: {e}") from e
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(str(path), "the log key must be an Ed25519 key")
    try:
        return NoteSigner(origin, key)
    except NoteError as e:
        raise ConfigError(str(path), f"log origin: {e.reason}") from e
