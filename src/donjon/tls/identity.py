"""The Keep's TLS identity: one place that holds the certificate chain and key.

Every TLS context is built from :class:`Identity`. Renewal (attesting again and getting a
new certificate from the Steward) calls :meth:`Identity.replace`; contexts notice the new
generation and build afresh, so new connections present the new certificate while
existing ones carry on with the one they started with. No socket code changes.

Until attestation is wired in, a Keep's identity is :func:`self_signed`: an EC P-256 key
generated in memory (never written anywhere) and a self-signed certificate, marked
unattested so that every connection log line says so.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from donjon.tls.errors import TLSConfigError
from donjon.tls.spiffe import SpiffeId

__all__ = [
    "MAX_CHAIN_LENGTH",
    "UNATTESTED",
    "Credentials",
    "Identity",
    "PrivateKey",
    "self_signed",
]

#: A Keep presents its leaf and at most a few intermediates (the Steward CA, perhaps its issuer).
MAX_CHAIN_LENGTH = 5
#: How log lines describe a Keep that has no attestation behind its certificate.
UNATTESTED = "UNATTESTED (self-signed certificate, no Steward; do not trust it with secrets)"

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _spki(key: object) -> bytes:
    public_bytes = getattr(key, "public_bytes", None)
    if public_bytes is None:
        raise TLSConfigError("identity", "the leaf certificate's key type is not supported")
    data: bytes = public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data


@dataclass(frozen=True)
class Credentials:
    """A certificate chain (leaf first) with the leaf's private key, and what vouches for it."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey = field(repr=False)
    #: True only when a Steward issued the leaf after verifying attestation evidence.
    attested: bool
    #: For log lines: who issued this identity and on what grounds.
    description: str

    def __post_init__(self) -> None:
        if not self.chain:
            raise TLSConfigError("identity", "empty certificate chain")
        if len(self.chain) > MAX_CHAIN_LENGTH:
            raise TLSConfigError("identity", f"chain of {len(self.chain)} exceeds {MAX_CHAIN_LENGTH}")
        if _spki(self.chain[0].public_key()) != _spki(self.key.public_key()):
            raise TLSConfigError("identity", "the private key does not match the leaf certificate")

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


class Identity:
    """The current :class:`Credentials` of a Keep, replaceable while connections run.

    Thread-safe: :meth:`replace` may run on a renewal thread while the WASI host accepts.
    """

    def __init__(self, credentials: Credentials) -> None:
        self._lock = threading.Lock()
        self._credentials = credentials
        self._generation = 0

    def current(self) -> tuple[int, Credentials]:
        """The generation number and the credentials new connections should present."""
        with self._lock:
            return self._generation, self._credentials

    @property
    def credentials(self) -> Credentials:
        return self.current()[1]

    def replace(self, credentials: Credentials) -> None:
        """Swap in new credentials (renewal). Connections already open keep the old ones."""
        with self._lock:
            self._credentials = credentials
            self._generation += 1


def self_signed(
    *,
    dns_names: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1", "::1"),
    spiffe_id: SpiffeId | None = None,
    lifetime: datetime.timedelta = datetime.timedelta(days=1),
    now: datetime.datetime | None = None,
) -> Credentials:
    """An unattested identity: a new EC P-256 key (memory only) and a self-signed certificate.

    The certificate follows the shape a Steward issues (EKU serverAuth and clientAuth, not a
    CA) so that clients can be tested against it, and names ``dns_names``/``ip_addresses``
    (for curl and browsers) and ``spiffe_id`` if given.
    """
    if now is None:
        now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    try:
        names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    except ValueError as e:
        raise TLSConfigError("identity", f"bad IP address for the certificate: {e}") from e
    if spiffe_id is not None:
        names.append(x509.UniformResourceIdentifier(str(spiffe_id)))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Donjon unattested Keep")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Allow for clock skew between the Keep and its clients.
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return Credentials(chain=(cert,), key=key, attested=False, description=UNATTESTED)
