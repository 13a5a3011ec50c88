"""The Steward's certificate authority: create or load it, and issue X.509-SVIDs.

Issued certificates follow the SPIFFE X.509-SVID profile (SPIFFE X509-SVID
sections 4 and 5): empty subject, exactly one URI SAN ``spiffe://<trust
domain><path>`` (plus the DNS names the policy allows), the SAN extension
critical because the subject is empty (RFC 5280 section 4.2.1.6), KeyUsage
digitalSignature (critical), EKU serverAuth + clientAuth, BasicConstraints
CA=false, the subject key taken from the CSR; DNS and IP address SANs only as
the policy decided. The claims go, by default, into the TCG DICE
``MultiTcbInfo`` extension (:mod:`donjon.dice`: the TEE and its measurement,
the workload digest); as canonical JSON they also go into a non-critical
extension under the OID the operator configures, whose arcs must all be below
2**31 (:func:`donjon.oids.require_certificate_safe`).

The CA key is either in memory (``ca-key.pem``) or an :class:`ExternalSigner` — a key in a
PKCS#11 token (:mod:`donjon.hsm`) that only signs digests; :func:`sign_certificate` is the one
place that tells them apart.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import char, namedtype, univ

from donjon.dice import MULTI_TCB_INFO_OID, TcbInfo, encode_multi_tcb_info
from donjon.oids import require_certificate_safe
from donjon.steward.errors import ConfigError
from donjon.steward.files import write_secret

__all__ = [
    "CaKey",
    "CertificateAuthority",
    "ExternalSigner",
    "create_ca",
    "create_ca_certificate",
    "key_usage",
    "sign_certificate",
    "write_private",
]

#: How far back notBefore is set, for relying parties whose clocks lag a little.
BACKDATE = timedelta(minutes=5)

_CURVES: dict[str, ec.EllipticCurve] = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` with mode 0600 (never readable by others, even briefly), replacing any file
    there atomically and never writing through a symlink (:func:`donjon.steward.files.write_secret`)."""
    write_secret(path, data, replace=True)


def key_usage(*, ca: bool) -> x509.KeyUsage:
    """digitalSignature for every certificate; keyCertSign and cRLSign for the CA only
    (RFC 5280 4.2.1.3)."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


class ExternalSigner(Protocol):
    """A CA key held elsewhere (a PKCS#11 token, :mod:`donjon.hsm`): it shows its public key and
    signs digests (DER ECDSA), and nothing else."""

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def sign_digest(self, digest: bytes) -> bytes: ...


#: The CA key: in memory (a file), or behind an :class:`ExternalSigner`.
CaKey = ec.EllipticCurvePrivateKey | ExternalSigner


class _Certificate(univ.Sequence):  # type: ignore[misc]
    """RFC 5280 section 4.1 ``Certificate``, the TBS and algorithm kept as their DER bytes."""

    componentType = namedtype.NamedTypes(
        namedtype.NamedType("tbsCertificate", univ.Any()),
        namedtype.NamedType("signatureAlgorithm", univ.Any()),
        namedtype.NamedType("signatureValue", univ.BitString()),
    )


def _hash_for(public_key: ec.EllipticCurvePublicKey) -> hashes.SHA256 | hashes.SHA384:
    return hashes.SHA384() if public_key.curve.key_size >= 384 else hashes.SHA256()


def sign_certificate(
    builder: x509.CertificateBuilder, key: CaKey, algorithm: hashes.SHA256 | hashes.SHA384
) -> x509.Certificate:
    """``builder`` signed by ``key``, wherever the key is.

    ``cryptography`` signs only with its own key objects. For an external key the certificate is
    built and signed with a throwaway key of the same curve: the TBSCertificate it encodes
    depends on the key only through the signature AlgorithmIdentifier (ecdsa-with-SHA256/384,
    RFC 5758 section 3.2), the same for both. The external key signs the hash of those TBS
    bytes; its signature replaces the throwaway one (RFC 5280 section 4.1.1.3), and the result is
    parsed and verified against the external key's public key before it is returned.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return builder.sign(key, algorithm)
    public = key.public_key()
    draft = builder.sign(ec.generate_private_key(public.curve), algorithm)
    tbs = draft.tbs_certificate_bytes
    digest = hashes.Hash(algorithm)
    digest.update(tbs)
    signature = key.sign_digest(digest.finalize())
    parsed, _ = der_decoder.decode(draft.public_bytes(serialization.Encoding.DER), asn1Spec=_Certificate())
    parsed["signatureValue"] = univ.BitString.fromOctetString(signature)
    cert = x509.load_der_x509_certificate(bytes(der_encoder.encode(parsed)))
    if cert.tbs_certificate_bytes != tbs:
        raise ValueError("re-encoding the certificate changed its TBSCertificate")
    try:
        public.verify(cert.signature, tbs, ec.ECDSA(algorithm))
    except InvalidSignature as e:
        raise ValueError("the external CA key's signature does not verify") from e
    return cert


def create_ca_certificate(key: CaKey, name: str, *, now: datetime, years: int = 10) -> x509.Certificate:
    """The self-signed certificate of CA key ``key`` (path length 0: it only issues end entities)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
    )
    return sign_certificate(builder, key, _hash_for(key.public_key()))


def create_ca(
    name: str, *, curve: str = "p256", now: datetime, years: int = 10
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new EC CA key and its self-signed certificate (path length 0: it only issues end entities)."""
    if curve not in _CURVES:
        raise ValueError(f"unsupported curve {curve!r} (p256 or p384)")
    key = ec.generate_private_key(_CURVES[curve])
    return key, create_ca_certificate(key, name, now=now, years=years)


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    serial: str  # lowercase hex

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


class CertificateAuthority:
    """Signs X.509-SVIDs with the Steward's CA key (in memory, or an :class:`ExternalSigner`)."""

    def __init__(
        self,
        key: CaKey,
        cert: x509.Certificate,
        *,
        trust_domain: str,
        claims_oid: str | None = None,
    ) -> None:
        if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
            raise ValueError("the CA key does not match the CA certificate")
        self.key = key
        self.cert = cert
        self.trust_domain = trust_domain
        self.claims_oid = require_certificate_safe(claims_oid) if claims_oid else None
        self._hash = _hash_for(key.public_key())
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
        # Encoded once: every answer carries the CA certificate.
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self._cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load(
        cls, cert_path: str, key_path: str, *, trust_domain: str, claims_oid: str | None = None
    ) -> CertificateAuthority:
        try:
            cert_data = Path(cert_path).read_bytes()
            key_data = Path(key_path).read_bytes()
        except OSError as e:
            raise ConfigError(str(e.filename or cert_path), f"cannot read CA file: {e.strerror}") from e
        try:
            cert = x509.load_pem_x509_certificate(cert_data)
        except ValueError as e:
            raise ConfigError(cert_path, f"not a PEM certificate: {e}") from e
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (ValueError, TypeError) as e:
            raise ConfigError(key_path, f"not an unencrypted PEM private key: {e}") from e
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(key_path, "the CA key must be an EC key (P-256 or P-384)")
        try:
            return cls(key, cert, trust_domain=trust_domain, claims_oid=claims_oid)
        except ValueError as e:
            raise ConfigError(key_path, str(e)) from e

    @classmethod
    def load_external(
        cls, cert_path: str, key: ExternalSigner, *, trust_domain: str, claims_oid: str | None = None
    ) -> CertificateAuthority:
        """The CA certificate at ``cert_path`` with its key in a token; ConfigError if they differ."""
        try:
            cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        except OSError as e:
            raise ConfigError(cert_path, f"cannot read CA file: {e.strerror}") from e
        except ValueError as e:
            raise ConfigError(cert_path, f"not a PEM certificate: {e}") from e
        try:
            return cls(key, cert, trust_domain=trust_domain, claims_oid=claims_oid)
        except ValueError as e:
            raise ConfigError(cert_path, f"{e} (the token holds another key)") from e

    def close(self) -> None:
        """Close the key's session when it is in a token; closing twice is harmless."""
        closer = getattr(self.key, "close", None)
        if callable(closer):
            closer()

    @property
    def cert_der(self) -> bytes:
        return self._cert_der

    @property
    def cert_pem(self) -> bytes:
        return self._cert_pem

    def spiffe_id(self, path: str) -> str:
        return f"spiffe://{self.trust_domain}{path}"

    def issue(
        self,
        spki_der: bytes,
        *,
        spiffe_path: str,
        dns_names: Sequence[str],
        lifetime: int,
        now: datetime,
        claims: Mapping[str, Any] | None = None,
        ip_addresses: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address] = (),
        dice: Sequence[TcbInfo] = (),
    ) -> Issued:
        """Sign an X.509-SVID for the CSR's key. The serial is 159 random bits (RFC 5280 4.1.2.2).

        ``dice``: the ``MultiTcbInfo`` entries (none: no DICE extension); ``claims``: the JSON
        claims, written only when the CA has a ``claims_oid``.
        """
        public_key = serialization.load_der_public_key(spki_der)
        serial = secrets.randbits(159) | (1 << 158)
        not_after = min(now + timedelta(seconds=lifetime), self.cert.not_valid_after_utc)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(self.spiffe_id(spiffe_path))]
        sans += [x509.DNSName(name) for name in dns_names]
        sans += [x509.IPAddress(address) for address in ip_addresses]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(serial)
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(ca=False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(self._aki, critical=False)
        )
        if dice:
            # TCG DICE Attestation Architecture 1.1 section 6.1.2: non-critical, so a relying
            # party that does not know it still accepts the certificate.
            builder = builder.add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(MULTI_TCB_INFO_OID), encode_multi_tcb_info(dice)
                ),
                critical=False,
            )
        if self.claims_oid is not None and claims is not None:
            # The claims as canonical JSON in a UTF8String: readable by any ASN.1 tool.
            text = json.dumps(claims, sort_keys=True, separators=(",", ":"))
            value = bytes(der_encoder.encode(char.UTF8String(text)))
            builder = builder.add_extension(
                x509.UnrecognizedExtension(self.claims_oid, value), critical=False
            )
        cert = sign_certificate(builder, self.key, self._hash)
        return Issued(certificate=cert, serial=format(serial, "x"))
