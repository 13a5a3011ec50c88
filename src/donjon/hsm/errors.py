"""Errors of the PKCS#11 layer: one root, each cause carrying the data that explains it.

The binding's own exceptions (``pkcs11.exceptions.*``) never leave :mod:`donjon.hsm`: they are
wrapped ``from e`` at the boundary into one of these, so the CLI can print one line and exit 3.
"""

from __future__ import annotations

__all__ = [
    "BadPin",
    "BadUri",
    "HsmError",
    "MechanismUnsupported",
    "ModuleNotFound",
    "ObjectNotFound",
    "TokenError",
    "TokenNotFound",
    "UnwrapFailed",
]


class HsmError(Exception):
    """Root of the PKCS#11 layer's errors."""


class BadUri(HsmError, ValueError):
    """A ``pkcs11:`` URI (RFC 7512) is malformed or uses an attribute Donjon does not accept."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(f"PKCS#11 URI {uri!r}: {reason}")


class ModuleNotFound(HsmError):
    """No PKCS#11 module (shared library) could be loaded; ``tried`` lists the paths."""

    def __init__(self, tried: tuple[str, ...], reason: str) -> None:
        self.tried = tried
        self.reason = reason
        super().__init__(f"PKCS#11 module: {reason} (tried {', '.join(tried) or 'nothing'})")


class TokenError(HsmError):
    """The token cannot be used (not present, locked, refused an operation); ``token`` names it."""

    def __init__(self, token: str, reason: str) -> None:
        self.token = token
        self.reason = reason
        super().__init__(f"PKCS#11 token {token!r}: {reason}")


class TokenNotFound(TokenError):
    """No token with this label (or serial, manufacturer, model) is present."""


class BadPin(TokenError):
    """The token refused the PIN, or the PIN is locked, or none was given where one is needed."""


class ObjectNotFound(TokenError):
    """The token holds no key with the URI's ``object`` / ``id`` (or more than one)."""


class MechanismUnsupported(TokenError):
    """The token does not offer a mechanism Donjon needs (``CKM_EDDSA`` on an older HSM)."""


class UnwrapFailed(TokenError):
    """A wrapped key did not unwrap: another key wrapped it, or it or its AAD was altered."""
