"""Does a server certificate name the host we meant to reach? (RFC 6125, as RFC 9525 updates it.)

Pure. Only the subjectAltName counts: DNS names for a host name, IP addresses for an
address literal; the subject's common name is never consulted (RFC 9525 section 6.3).
A wildcard is accepted only as the whole leftmost label (``*.example.com``), matches
exactly one label, and never matches an IP address (RFC 9525 section 6.3, RFC 6125 6.4.3).
Names are compared case-insensitively, without a trailing dot, in their ASCII (A-label)
form; a non-ASCII host name must be given as its A-label.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509

from donjon.tls.errors import PeerIdentityMismatch, TLSConfigError

__all__ = ["MAX_HOST_NAME", "check_host_name", "normalise_host"]

#: RFC 1035 section 2.3.4: a domain name is at most 255 octets.
MAX_HOST_NAME = 253


def normalise_host(host: str) -> str | ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address literal as an address object, otherwise a lowercase ASCII name without trailing dot."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    name = text.rstrip(".").lower()
    if not name or len(name) > MAX_HOST_NAME or not name.isascii():
        raise TLSConfigError(
            "host name", f"{host[:100]!r} is not an ASCII host name of 1..{MAX_HOST_NAME} bytes"
        )
    labels = name.split(".")
    if any(not label or len(label) > 63 for label in labels):
        raise TLSConfigError("host name", f"{host[:100]!r} has an empty or over-long label")
    return name


def _dns_matches(pattern: str, name: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if not pattern.isascii():
        return False
    if pattern == name:
        return True
    head, _, tail = pattern.partition(".")
    # Only a whole-label leftmost wildcard over at least two further labels (no "*.com").
    if head != "*" or "*" in tail or tail.count(".") < 1:
        return False
    name_head, _, name_tail = name.partition(".")
    return bool(name_head) and name_tail == tail


def check_host_name(cert: x509.Certificate, host: str) -> None:
    """Raise :class:`PeerIdentityMismatch` unless ``cert``'s SAN names ``host``."""
    target = normalise_host(host)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as e:
        raise PeerIdentityMismatch("certificate has no subjectAltName", expected=host, got="none") from e
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise PeerIdentityMismatch(f"certificate subjectAltName does not parse: {e}") from e
    if isinstance(target, str):
        names = san.get_values_for_type(x509.DNSName)
        if any(_dns_matches(pattern, target) for pattern in names):
            return
        got = ", ".join(names[:10]) or "no DNS names"
    else:
        addresses = san.get_values_for_type(x509.IPAddress)
        if target in addresses:
            return
        got = ", ".join(str(a) for a in addresses[:10]) or "no IP addresses"
    raise PeerIdentityMismatch("certificate does not name the host", expected=host, got=got)
