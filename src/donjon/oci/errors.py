"""Exceptions of OCI packaging, pulling and signing: one root, one subclass per cause.

``donjon package`` and ``donjon run oci://`` map them to exit codes by class: a package that does
not verify is refused (1), a bad reference or option is a usage error (2), a registry that cannot
be reached or refuses our credentials is operational (3) - see :func:`exit_code`.
"""

from __future__ import annotations

__all__ = [
    "AuthFailed",
    "BadReference",
    "DigestMismatch",
    "KeyMismatch",
    "MalformedPackage",
    "NotFound",
    "OciError",
    "PackageRefused",
    "RegistryError",
    "RegistryUnavailable",
    "SignatureError",
    "TooLarge",
    "Unreadable",
    "exit_code",
]


class OciError(Exception):
    """Root of this package's errors."""


class BadReference(OciError):
    """A reference (``REGISTRY/REPO:TAG``, ``@sha256:...``) that does not parse."""

    def __init__(self, reference: str, reason: str) -> None:
        self.reference = reference
        self.reason = reason
        super().__init__(f"{reference!r}: {reason}")


class Unreadable(OciError):
    """A local file the command was given (a signer key, a layout) cannot be read: operational."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: cannot read: {reason}")


class MalformedPackage(OciError):
    """A manifest, layer or layout that is not a Donjon package (or not one we accept)."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


class DigestMismatch(OciError):
    """Bytes whose SHA-256 is not the digest they were asked for (a tampered blob or manifest)."""

    def __init__(self, what: str, expected: str, got: str) -> None:
        self.what = what
        self.expected = expected
        self.got = got
        super().__init__(f"{what}: digest mismatch: expected {expected}, got {got}")


class KeyMismatch(OciError):
    """A sealed layer that does not open under the content key the Keep was given.

    Its ciphertext was already checked against the signed manifest, so the key is the wrong one
    (another package's, or a file stored by mistake as the Steward secret ``key``), not the layer.
    """

    def __init__(self, what: str, key: str, reason: str) -> None:
        self.what = what
        self.key = key
        self.reason = reason
        super().__init__(f"{what}: {reason}")


class TooLarge(OciError):
    """A manifest, layer or the whole package over its size limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what = what
        self.size = size
        self.limit = limit
        super().__init__(f"{what}: {size} bytes is over the {limit}-byte limit")


class SignatureError(OciError):
    """The package is unsigned, or no signature verifies under a trusted key."""

    def __init__(self, digest: str, reason: str) -> None:
        self.digest = digest
        self.reason = reason
        super().__init__(f"package {digest}: {reason}")


class PackageRefused(OciError):
    """A package that verifies but asks for more than the run allows (e.g. a wider ``backends``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RegistryError(OciError):
    """The registry answered, but not usefully (an unexpected status, an OCI error body)."""

    def __init__(self, registry: str, reason: str) -> None:
        self.registry = registry
        self.reason = reason
        super().__init__(f"registry {registry}: {reason}")


class RegistryUnavailable(RegistryError):
    """No answer within the retry budget (connection refused, timeouts, 5xx, TLS failure)."""


class AuthFailed(RegistryError):
    """The registry refused our credentials (or we had none and it wants some)."""


class NotFound(RegistryError):
    """No such manifest, tag or blob."""


def exit_code(error: OciError) -> int:
    """The CLI's exit code for ``error``: 1 refused, 2 usage, 3 operational (README "Exit codes")."""
    if isinstance(error, BadReference):
        return 2
    if isinstance(error, RegistryError | Unreadable):
        return 3
    return 1
