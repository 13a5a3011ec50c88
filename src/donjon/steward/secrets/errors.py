"""The secret store's errors: one root, each cause carrying the data that explains it."""

from __future__ import annotations

__all__ = [
    "BadSecretName",
    "KekError",
    "KekUnwrapError",
    "SecretError",
    "SecretNotFound",
    "SecretTooLarge",
    "SecretUnreadable",
]


class SecretError(Exception):
    """Root of the secret store's errors."""


class KekError(SecretError):
    """The key-encryption key cannot be created, read or used; ``name`` says which KEK."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"key-encryption key {name}: {reason}")


class KekUnwrapError(KekError):
    """A wrapped data key did not unwrap: another KEK wrapped it, or it (or its AAD) was altered."""


class BadSecretName(SecretError):
    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"secret name {name!r}: {reason}")


class SecretTooLarge(SecretError):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"secret is {size} bytes; the limit is {limit}")


class SecretNotFound(SecretError):
    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        what = name if version is None else f"{name} version {version}"
        super().__init__(f"no secret {what}")


class SecretUnreadable(SecretError):
    """A stored secret version did not decrypt (its row was altered): never served."""

    def __init__(self, name: str, version: int, reason: str) -> None:
        self.name = name
        self.version = version
        self.reason = reason
        super().__init__(f"secret {name} version {version} does not decrypt: {reason}")
