"""Secrets the Steward releases to attested Keeps (docs/secrets.md).

Each version of a secret is encrypted with its own random AES-256-GCM data key;
the data key is wrapped by a key-encryption key (:mod:`.kek`), under
authenticated data that binds it to the secret's name and version. The store
is the Steward's database (SQLite or PostgreSQL), so a stolen database alone
reveals nothing.
"""

from donjon.steward.secrets.errors import (
    BadSecretName,
    KekError,
    KekUnwrapError,
    SecretError,
    SecretNotFound,
    SecretTooLarge,
    SecretUnreadable,
)
from donjon.steward.secrets.kek import FileKek, Kek, create_file_kek, open_kek

__all__ = [
    "BadSecretName",
    "FileKek",
    "Kek",
    "KekError",
    "KekUnwrapError",
    "SecretError",
    "SecretNotFound",
    "SecretTooLarge",
    "SecretUnreadable",
    "create_file_kek",
    "open_kek",
]
