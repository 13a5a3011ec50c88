"""Whether a client certificate may be released a secret: pure checks, each named.

The release endpoint (``GET /secrets/NAME``, :mod:`donjon.steward.app`) serves only
over mutual TLS. The TLS layer checks that the client's certificate chains to this
Steward's CA; :func:`client_identity` checks it again (signature by the CA
certificate's key, validity at the request's time) and reads what it says, then
:func:`decide_release` holds it against the policy's ``[[secret]]`` rules. Every
refusal is a :class:`~donjon.steward.errors.Refused` naming its check:

- ``client.certificate`` (401): no client certificate (plain HTTP, or none presented);
- ``client.issuer``: not issued by this Steward's CA;
- ``client.expired`` / ``client.not_yet_valid``: outside its validity period;
- ``client.spiffe_id``: no SPIFFE ID of this trust domain; ``client.claims``: unreadable claims
  (including package entries a Steward never writes);
- ``secret.policy``: no ``[[secret]]`` rule names the secret;
- ``secret.spiffe_id``, ``secret.digest``, ``secret.signer``, ``secret.package``,
  ``secret.platforms``: what no rule for it accepts (the first rule's failure is reported;
  every rule is tried).

Every field a rule names must match (AND); rules are alternatives (OR). The package signer and
name come only from the certificate, from the DICE entries this Steward wrote when a
``[[workload]]`` signer rule admitted the Keep (:func:`donjon.dice.package_of`): the Steward
signed that certificate, so what it says is what the Steward verified at issuance. Nothing the
client sends with the request is read.

Pure: certificate bytes, the CA certificate, the policy and the time in; an identity or a
refusal out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from donjon.dice import MULTI_TCB_INFO_OID, DiceError, PackageClaim, decode_multi_tcb_info, package_of
from donjon.peer.claims import dice_claims
from donjon.peer.errors import PeerRefused
from donjon.steward.errors import Refused
from donjon.steward.policy import Policy, SecretRule
from donjon.tls.errors import TLSError
from donjon.tls.spiffe import SIMULATED_PREFIX, UNATTESTED_PREFIX, spiffe_id_of

__all__ = ["MAX_CLIENT_CERT_BYTES", "ClientIdentity", "client_identity", "decide_release"]

#: A Steward-issued certificate is ~1 KiB.
MAX_CLIENT_CERT_BYTES = 16 * 1024


@dataclass(frozen=True)
class ClientIdentity:
    """What a verified client certificate says: serial, SPIFFE ID and the workload behind it."""

    serial: str
    spiffe_id: str
    #: The SPIFFE path without its ``/sim`` or ``/unattested`` marker (as the policy names it).
    path: str
    simulated: bool
    unattested: bool
    tee: str | None
    workload_digest: str | None
    #: The signed package the certificate names (admitted by a signer rule), else ``None``.
    package: PackageClaim | None = None

    def record(self) -> dict[str, object]:
        """The log fields of this identity (never anything secret)."""
        out: dict[str, object] = {
            "certificate_serial": self.serial,
            "spiffe_id": self.spiffe_id,
            "workload_digest": self.workload_digest,
            "tee": self.tee,
            "simulated": self.simulated,
            "unattested": self.unattested,
        }
        if self.package is not None:
            out["package"] = {
                "digest": self.package.digest,
                "signer": self.package.signer,
                "name": self.package.name,
            }
        return out


def _package(cert: x509.Certificate) -> PackageClaim | None:
    """The package and signer the certificate's DICE extension names (docs/deploy.md)."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(MULTI_TCB_INFO_OID))
    except x509.ExtensionNotFound:
        return None
    except ValueError as e:  # cryptography parses extensions lazily
        raise Refused("client.claims", f"the client certificate's extensions do not parse: {e}") from e
    if not isinstance(ext.value, x509.UnrecognizedExtension):
        return None
    try:
        return package_of(decode_multi_tcb_info(ext.value.value))
    except DiceError as e:
        raise Refused("client.claims", f"the client certificate's package entries do not parse: {e}") from e


def client_identity(
    der: bytes | None, ca: x509.Certificate, trust_domain: str, now: datetime
) -> ClientIdentity:
    """Check a client certificate (DER) against this Steward's CA at ``now``; read its identity."""
    if der is None:
        raise Refused(
            "client.certificate",
            "the release endpoint needs mutual TLS: present the certificate this Steward issued",
            status=401,
        )
    if len(der) > MAX_CLIENT_CERT_BYTES:
        raise Refused("client.certificate", f"a client certificate larger than {MAX_CLIENT_CERT_BYTES} bytes")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise Refused("client.certificate", f"the client certificate does not parse: {e}") from e
    try:
        # Checks the issuer name and the signature with the CA certificate's public key (the CA
        # key itself may live in a PKCS#11 token).
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise Refused("client.issuer", "the client certificate was not issued by this Steward's CA") from e
    if now < cert.not_valid_before_utc:
        raise Refused(
            "client.not_yet_valid", f"the client certificate is valid from {cert.not_valid_before_utc}"
        )
    if now > cert.not_valid_after_utc:
        raise Refused(
            "client.expired",
            f"the client certificate expired at {cert.not_valid_after_utc.isoformat()}; renew it first",
        )
    try:
        spiffe = spiffe_id_of(cert)
    except TLSError as e:
        raise Refused("client.spiffe_id", f"the client certificate has no SPIFFE ID: {e}") from e
    if spiffe.trust_domain != trust_domain:
        raise Refused("client.spiffe_id", f"{spiffe} is not in this Steward's trust domain {trust_domain}")
    try:
        claims = dice_claims(cert)
    except PeerRefused as e:
        raise Refused("client.claims", f"the client certificate's claims do not parse: {e}") from e
    path = spiffe.path
    simulated = path.startswith(SIMULATED_PREFIX)
    unattested = path.startswith(UNATTESTED_PREFIX)
    if simulated:
        path = path[len(SIMULATED_PREFIX) - 1 :]
    elif unattested:
        path = path[len(UNATTESTED_PREFIX) - 1 :]
    digest = claims.workload_digest if claims is not None else None
    return ClientIdentity(
        serial=format(cert.serial_number, "x"),
        spiffe_id=str(spiffe),
        path=path,
        # The path's marker and the DICE model's marker come from one Steward decision; either
        # one marks the certificate.
        simulated=simulated or (claims is not None and claims.simulated),
        unattested=unattested,
        tee=claims.tee if claims is not None else None,
        workload_digest=digest.hex() if digest is not None else None,
        package=_package(cert),
    )


def _refusal(rule: SecretRule, client: ClientIdentity) -> Refused | None:
    if rule.spiffe_paths is not None and client.path not in rule.spiffe_paths:
        return Refused("secret.spiffe_id", f"{client.spiffe_id} is not bound to secret {rule.name}")
    if rule.digests is not None and client.workload_digest not in rule.digests:
        return Refused(
            "secret.digest", f"workload digest {client.workload_digest} is not bound to secret {rule.name}"
        )
    if rule.signers is not None:
        if client.package is None:
            return Refused(
                "secret.signer",
                f"secret {rule.name} is bound to package signers, and the certificate of "
                f"{client.spiffe_id} names none (its Keep was not admitted by a [[workload]] signer rule)",
            )
        if client.package.signer not in rule.signers:
            return Refused(
                "secret.signer", f"package signer {client.package.signer} is not bound to secret {rule.name}"
            )
    if rule.packages is not None:
        # The policy allows packages only with signers, so a certificate without a package was
        # refused above; refuse it here too rather than trust that.
        name = client.package.name if client.package is not None else None
        if name not in rule.packages:
            shown = "no package name" if name is None else f"package {name}"
            return Refused("secret.package", f"{shown} is not bound to secret {rule.name}")
    if not rule.admits(client.tee, simulated=client.simulated, unattested=client.unattested):
        if client.unattested:
            what = 'an unattested Keep (platforms does not list "unattested")'
        elif client.simulated:
            what = f'a simulated {client.tee} (platforms does not list "simulated")'
        else:
            what = f"{client.tee}"
        return Refused("secret.platforms", f"secret {rule.name} is not released to {what}")
    return None


def decide_release(policy: Policy, name: str, client: ClientIdentity) -> SecretRule:
    """The ``[[secret]]`` rule that releases ``name`` to ``client``, or the first rule's refusal."""
    rules = policy.secret_rules(name)
    if not rules:
        raise Refused("secret.policy", f"the policy releases no secret named {name}")
    first: Refused | None = None
    for rule in rules:
        refused = _refusal(rule, client)
        if refused is None:
            return rule
        first = first or refused
    assert first is not None
    raise first
