"""Keys in a PKCS#11 token (an HSM, or SoftHSM2 to try it): RFC 7512 URIs, sessions, signers, KEK.

:mod:`.uri` is pure; :mod:`.token` and :mod:`.keys` talk to the token through ``python-pkcs11``
and import it only when first used, so reading a ``steward.toml`` never loads a module.
See docs/steward.md "Keys in an HSM".
"""

from donjon.hsm.errors import (
    BadPin,
    BadUri,
    HsmError,
    MechanismUnsupported,
    ModuleNotFound,
    ObjectNotFound,
    TokenError,
    TokenNotFound,
    UnwrapFailed,
)
from donjon.hsm.uri import Pkcs11Uri, parse_uri

__all__ = [
    "BadPin",
    "BadUri",
    "HsmError",
    "MechanismUnsupported",
    "ModuleNotFound",
    "ObjectNotFound",
    "Pkcs11Uri",
    "TokenError",
    "TokenNotFound",
    "UnwrapFailed",
    "is_pkcs11_uri",
    "parse_uri",
]


def is_pkcs11_uri(text: str) -> bool:
    """Whether a setting is a PKCS#11 URI rather than a file name (RFC 3986: case-insensitive scheme)."""
    return text[:7].lower() == "pkcs11:"
