"""SPIFFE IDs: parse them, and find the one an X.509-SVID carries.

Pure: strings and certificates in, a :class:`SpiffeId` or an exception out.

The grammar is the SPIFFE-ID specification's (github.com/spiffe/spiffe, standards/SPIFFE-ID.md,
section 2): ``spiffe://<trust domain><path>``, the scheme in lowercase, a trust domain of
lowercase letters, digits, ``.``, ``-`` and ``_``; a path of ``/``-separated segments of letters,
digits, ``.``, ``-`` and ``_``, no empty, ``.`` or ``..`` segment, no trailing ``/``; no port,
user info, query or fragment; at most 2048 bytes in all. The X.509-SVID specification
(standards/X509-SVID.md, section 2) says an SVID carries exactly one URI SAN, the SPIFFE ID;
a Keep-to-Keep check compares that ID, never a host name.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from donjon.tls.errors import InvalidSpiffeId, PeerIdentityMismatch

__all__ = [
    "MAX_SPIFFE_ID_BYTES",
    "SIMULATED_PREFIX",
    "UNATTESTED_PREFIX",
    "SpiffeId",
    "check_spiffe_id",
    "parse_spiffe_id",
    "spiffe_id_of",
]

#: SPIFFE-ID section 2.3: "URIs with a total length longer than 2048 bytes are not valid SPIFFE IDs".
MAX_SPIFFE_ID_BYTES = 2048
#: SPIFFE-ID section 2.1: a trust domain name is at most 255 characters.
MAX_TRUST_DOMAIN = 255
#: SPIFFE path prefixes a Donjon Steward reserves for identities it issued on simulated evidence
#: and without evidence (donjon.steward.policy.Policy.decide).
SIMULATED_PREFIX = "/sim/"
UNATTESTED_PREFIX = "/unattested/"

_SCHEME = "spiffe://"
_TRUST_DOMAIN_CHARS = frozenset(string.ascii_lowercase + string.digits + ".-_")
_SEGMENT_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")


@dataclass(frozen=True, order=True)
class SpiffeId:
    """A syntactically valid SPIFFE ID. Build one with :func:`parse_spiffe_id`."""

    trust_domain: str
    path: str  # "" or "/seg/seg..."

    def __str__(self) -> str:
        return f"{_SCHEME}{self.trust_domain}{self.path}"


def parse_spiffe_id(text: str) -> SpiffeId:
    """Parse ``text`` as a SPIFFE ID, refusing anything the specification does not allow."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPIFFE_ID_BYTES:
        raise InvalidSpiffeId(text, f"longer than {MAX_SPIFFE_ID_BYTES} bytes")
    if not text.startswith(_SCHEME):
        raise InvalidSpiffeId(text, "scheme is not 'spiffe://' (lowercase)")
    rest = text[len(_SCHEME) :]
    for bad, what in (("?", "a query"), ("#", "a fragment")):
        if bad in rest:
            raise InvalidSpiffeId(text, f"contains {what}")
    domain, slash, path = rest.partition("/")
    path = slash + path
    if not domain:
        raise InvalidSpiffeId(text, "empty trust domain")
    if len(domain) > MAX_TRUST_DOMAIN:
        raise InvalidSpiffeId(text, f"trust domain longer than {MAX_TRUST_DOMAIN} characters")
    if "@" in domain or ":" in domain:
        raise InvalidSpiffeId(text, "trust domain carries user info or a port")
    if not set(domain) <= _TRUST_DOMAIN_CHARS:
        raise InvalidSpiffeId(text, "trust domain has characters other than a-z 0-9 . - _")
    if path:
        segments = path[1:].split("/")
        for segment in segments:
            if not segment:
                raise InvalidSpiffeId(text, "empty path segment or trailing '/'")
            if segment in (".", ".."):
                raise InvalidSpiffeId(text, "path segment '.' or '..'")
            if not set(segment) <= _SEGMENT_CHARS:
                raise InvalidSpiffeId(text, "path has characters other than A-Z a-z 0-9 . - _")
    return SpiffeId(domain, path)


def spiffe_id_of(cert: x509.Certificate) -> SpiffeId:
    """The SPIFFE ID of an X.509-SVID: its one URI SAN, which must parse (X509-SVID section 2)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as e:
        raise PeerIdentityMismatch("certificate has no subjectAltName, so no SPIFFE ID") from e
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        # A malformed extension, reported lazily by cryptography.
        raise PeerIdentityMismatch(f"certificate subjectAltName does not parse: {e}") from e
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise PeerIdentityMismatch(
            "an X.509-SVID carries exactly one URI SAN", expected="1 URI SAN", got=f"{len(uris)}"
        )
    try:
        return parse_spiffe_id(uris[0])
    except InvalidSpiffeId as e:
        raise PeerIdentityMismatch(f"URI SAN is not a SPIFFE ID: {e.reason}", got=uris[0][:200]) from e


def check_spiffe_id(cert: x509.Certificate, allowed: Iterable[SpiffeId]) -> SpiffeId:
    """Return the certificate's SPIFFE ID if it is one of ``allowed``; raise otherwise."""
    allowed_set = frozenset(allowed)
    got = spiffe_id_of(cert)
    if got not in allowed_set:
        raise PeerIdentityMismatch(
            "peer SPIFFE ID is not an allowed one",
            expected=" or ".join(str(s) for s in sorted(allowed_set)) or "(none allowed)",
            got=str(got),
        )
    return got
