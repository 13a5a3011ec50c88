"""Trust anchors: what a Keep's TLS peer must chain to.

Three sources, as the workload config allows: the Steward's CA certificate (what Keeps and
their clients normally trust), certificates from a PEM file (an operator's own CA), or the
system's roots (for a workload calling out to public services). Client authentication on a
``listen`` socket never uses the system roots: a public CA vouches for host names, not for
workloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from OpenSSL import SSL, crypto

from donjon.tls.errors import TLSConfigError

__all__ = ["FOREIGN_ISSUER_ERRORS", "MAX_ANCHORS", "MAX_ANCHOR_BYTES", "TrustAnchors"]

#: A PEM bundle of anchors larger than this is refused unread (the Debian bundle is ~220 KB).
MAX_ANCHOR_BYTES = 1 << 20
#: More certificates than this in one anchor set is a mistake, not a configuration.
MAX_ANCHORS = 256
#: OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h) that mean "no anchor issued this
#: chain": unable to get issuer certificate (2), certificate signature failure (7), self-signed
#: (18, 19), unable to get local issuer certificate (20), unable to verify the first certificate
#: (21), path length exceeded (25: a chain carrying its own, other, CA).
FOREIGN_ISSUER_ERRORS = frozenset({2, 7, 18, 19, 20, 21, 25})


@dataclass(frozen=True)
class TrustAnchors:
    """A set of trusted root certificates, or the system's roots."""

    certificates: tuple[x509.Certificate, ...] = ()
    system: bool = False
    #: Where the anchors come from, for logs ("Steward CA", a file name, "system roots").
    source: str = ""

    def __post_init__(self) -> None:
        if self.system and self.certificates:
            raise TLSConfigError(
                "trust anchors", "either the system roots or explicit certificates, not both"
            )
        if not self.system and not self.certificates:
            raise TLSConfigError("trust anchors", f"no certificate to trust ({self.source or 'empty set'})")
        if len(self.certificates) > MAX_ANCHORS:
            raise TLSConfigError(
                "trust anchors", f"{len(self.certificates)} certificates exceed {MAX_ANCHORS}"
            )

    @classmethod
    def steward_ca(cls, certificates: Sequence[x509.Certificate]) -> TrustAnchors:
        """The Steward's CA certificate(s)."""
        return cls(certificates=tuple(certificates), source="Steward CA")

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "PEM") -> TrustAnchors:
        """Every certificate in a PEM bundle."""
        if len(data) > MAX_ANCHOR_BYTES:
            raise TLSConfigError(f"trust anchors {source}", f"{len(data)} bytes exceed {MAX_ANCHOR_BYTES}")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise TLSConfigError(f"trust anchors {source}", f"not a PEM certificate bundle: {e}") from e
        return cls(certificates=tuple(certs), source=source)

    @classmethod
    def from_pem_file(cls, path: Path) -> TrustAnchors:
        """Every certificate in the PEM file at ``path``."""
        try:
            with path.open("rb") as f:
                data = f.read(MAX_ANCHOR_BYTES + 1)
        except OSError as e:
            raise TLSConfigError(f"trust anchors {path}", f"cannot read: {e.strerror or e}") from e
        return cls.from_pem(data, source=str(path))

    @classmethod
    def system_roots(cls) -> TrustAnchors:
        """The operating system's root certificates (``/etc/ssl/certs`` on Debian)."""
        return cls(system=True, source="system roots")

    def install(self, context: SSL.Context) -> None:
        """Make ``context`` trust these anchors (and nothing else)."""
        if self.system:
            # pyOpenSSL falls back to the distribution's bundle when cryptography's
            # wheel-built OpenSSL points at its own (empty) default directory.
            context.set_default_verify_paths()
            return
        store = context.get_cert_store()
        if store is None:  # pragma: no cover - a fresh Context always has one
            raise TLSConfigError("trust anchors", "the TLS context has no certificate store")
        for cert in self.certificates:
            try:
                store.add_cert(crypto.X509.from_cryptography(cert))
            except crypto.Error as e:
                # OpenSSL refuses a duplicate; anything else is a real error.
                if "cert already in hash table" not in str(e):
                    raise TLSConfigError("trust anchors", f"OpenSSL refused a certificate: {e}") from e
