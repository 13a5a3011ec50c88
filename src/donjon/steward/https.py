"""The Steward's own HTTPS certificate, issued by its CA: what ``init`` and ``tls-cert`` write.

A Keep pins one certificate, the Steward CA, for both the connection to its Steward and the
certificates it is issued (docs/keep.md), so the serving certificate is signed by that CA. It
is a plain TLS server certificate (RFC 5280 profile; CA/Browser Forum shape, so curl and
browsers accept it too): the DNS names and IP addresses the Steward is reached by as
subjectAltName, KeyUsage digitalSignature (critical), EKU serverAuth, BasicConstraints CA=false.
It carries no SPIFFE ID, so no Keep or relying party can take it for a Keep's identity.

It lives ``days`` (default a year, never past the CA), and :func:`write_serving_certificate`
replaces the files atomically; ``donjon steward tls-cert`` renews it (the server reads it at
start: restart ``serve`` after renewing).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from donjon.steward.ca import BACKDATE, CaKey, key_usage, sign_certificate
from donjon.steward.files import write_public, write_secret

__all__ = [
    "DEFAULT_HOSTS",
    "DEFAULT_IPS",
    "DEFAULT_VALIDITY_DAYS",
    "IPAddress",
    "issue_serving_certificate",
    "parse_host",
    "parse_ip",
    "write_serving_certificate",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_HOSTS = ("localhost",)
DEFAULT_IPS: tuple[IPAddress, ...] = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
DEFAULT_VALIDITY_DAYS = 365
# RFC 1123 host names: labels of letters, digits and hyphens, not starting or ending with one.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def parse_host(text: str) -> str:
    """A DNS name for the certificate (lowercased), or :class:`ValueError` saying why not."""
    name = text.strip().lower().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"{text!r} is not a DNS host name (letters, digits, '-', '.')")
    return name


def parse_ip(text: str) -> IPAddress:
    """One IPv4 or IPv6 address (no prefix), or :class:`ValueError`."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if address.is_unspecified or address.is_multicast:
        raise ValueError(f"{text!r} cannot name a server (unspecified or multicast)")
    return address


def issue_serving_certificate(
    ca_key: CaKey,
    ca: x509.Certificate,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    ips: Sequence[IPAddress] = DEFAULT_IPS,
    now: datetime,
    days: int = DEFAULT_VALIDITY_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new P-256 key and its serving certificate for ``hosts`` and ``ips``, signed by the CA (a key
    in memory, or in a PKCS#11 token: :func:`donjon.steward.ca.sign_certificate`)."""
    if not hosts and not ips:
        raise ValueError("a serving certificate needs at least one host name or IP address")
    if not 1 <= days <= 3650:
        raise ValueError("a serving certificate lives 1 to 3650 days")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names += [x509.IPAddress(ip) for ip in ips]
    common_name = hosts[0] if hosts else str(ips[0])
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    algorithm = hashes.SHA384() if ca_key.public_key().curve.key_size >= 384 else hashes.SHA256()
    return key, sign_certificate(builder, ca_key, algorithm)


def write_serving_certificate(
    cert_path: Path,
    key_path: Path,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    *,
    replace: bool = False,
) -> None:
    """The key (0600) first, then the certificate (0644); ``replace`` renames each over the old."""
    write_secret(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        replace=replace,
    )
    write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM), replace=replace)
