"""Verify a Keep's certificate: the chain to the Steward CA, then the workload's identity.

What a relying party checks (docs/keep.md "What a relying party checks"), in order,
fail closed, each failure a :class:`PeerRefused` naming its check:

1. ``chain`` — the presented chain reaches one of the trust anchors (the Steward's CA
   certificate) at the given time: signatures, validity dates of every certificate,
   CA constraints, key usage and the extended key usage ``clientAuth``, which every
   certificate a Steward issues carries (RFC 5280 path validation, done by
   ``cryptography.x509.verification``, the web PKI profile of the Rust ``x509``
   verifier). A peer acting as a TLS server must also carry ``serverAuth``.
2. ``spiffe_id`` — the leaf is an X.509-SVID (exactly one URI SAN, a valid SPIFFE ID;
   SPIFFE X509-SVID section 2) and, when the caller names IDs, it is one of them. The
   SPIFFE ID is what identifies a workload; host names are not checked here.
3. ``unattested`` / ``simulated`` — the Steward marks identities it issued without
   evidence (path ``/unattested/...``) or on simulated evidence (path ``/sim/...``, claim
   ``simulated``). They are refused unless the caller opts in or names that exact ID.
4. ``workload_digest`` — when the caller gives a digest, the certificate's claims
   (:mod:`donjon.peer.claims`: the TCG DICE extension every Steward writes, or its JSON
   claims) must carry exactly it. The SPIFFE ID does not carry the digest (the policy maps
   digests to paths), so without claims this check cannot pass and is refused rather than
   skipped.

Pure: certificates, anchors, the expectation and the time in; :class:`PeerIdentity` out.
:func:`check_identity` is steps 2-4 alone, for a TLS verify callback whose chain OpenSSL
has already checked (``donjon.tls.context``), so Keep-to-Keep connections and this module
apply the same identity rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from donjon.peer.claims import CertificateClaims, find_claims
from donjon.peer.errors import PeerRefused
from donjon.tls.errors import InvalidSpiffeId, PeerIdentityMismatch
from donjon.tls.spiffe import (
    SIMULATED_PREFIX,
    UNATTESTED_PREFIX,
    SpiffeId,
    parse_spiffe_id,
    spiffe_id_of,
)

__all__ = [
    "MAX_PEER_CHAIN",
    "SIMULATED_PREFIX",
    "UNATTESTED_PREFIX",
    "PeerExpectation",
    "PeerIdentity",
    "check_identity",
    "verify_chain",
    "verify_peer",
]

#: A Keep presents its leaf and the Steward CA, perhaps an intermediate or two.
MAX_PEER_CHAIN = 5

Role = Literal["server", "client"]


@dataclass(frozen=True)
class PeerExpectation:
    """Who the peer must be.

    ``spiffe_ids``: the accepted SPIFFE IDs (empty: any SVID the anchors issued).
    ``workload_digest``: 32 bytes the claims must carry. ``claims_oid``: the Steward's
    configured claims arc (``None``: recognise the claims extension by content).
    ``role``: ``"server"`` also requires the ``serverAuth`` EKU. ``allow_simulated`` and
    ``allow_unattested`` accept identities the Steward marked so; naming such an ID in
    ``spiffe_ids`` accepts that one.
    """

    spiffe_ids: frozenset[SpiffeId] = frozenset()
    workload_digest: bytes | None = None
    claims_oid: str | None = None
    role: Role = "server"
    allow_simulated: bool = False
    allow_unattested: bool = False

    def __post_init__(self) -> None:
        if self.workload_digest is not None and len(self.workload_digest) != 32:
            raise ValueError(f"a workload digest is 32 bytes, not {len(self.workload_digest)}")
        if self.role not in ("server", "client"):
            raise ValueError("role must be 'server' or 'client'")

    @classmethod
    def of(cls, spiffe_ids: Iterable[str | SpiffeId] = (), **kwargs: Any) -> PeerExpectation:
        """Like the constructor, parsing SPIFFE IDs given as strings (``InvalidSpiffeId`` if bad)."""
        ids = frozenset(s if isinstance(s, SpiffeId) else parse_spiffe_id(s) for s in spiffe_ids)
        return cls(spiffe_ids=ids, **kwargs)


@dataclass(frozen=True)
class PeerIdentity:
    """A verified peer: its SPIFFE ID, what its certificate says, and the chain that vouched."""

    spiffe_id: SpiffeId
    dns_names: tuple[str, ...]
    serial: str
    not_before: datetime
    not_after: datetime
    issuer: str
    claims: CertificateClaims | None
    simulated: bool
    unattested: bool
    chain: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    ip_addresses: tuple[str, ...] = ()

    @property
    def workload_digest(self) -> bytes | None:
        return self.claims.workload_digest if self.claims is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "spiffe_id": str(self.spiffe_id),
            "dns_names": list(self.dns_names),
            "ip_addresses": list(self.ip_addresses),
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "issuer": self.issuer,
            "simulated": self.simulated,
            "unattested": self.unattested,
            "claims_oid": self.claims.oid if self.claims is not None else None,
            "claims": dict(self.claims.values) if self.claims is not None else None,
            "chain_length": len(self.chain),
        }


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _foreign(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]) -> bool:
    """True when nothing the peer presented was signed by an anchor: another CA issued it.

    Path building then fails for whatever reason it met last (for a chain that carries its own
    CA, "path length constraint violated"), which says nothing useful; this says what is wrong.
    """
    return not any(_signed_by(cert, anchor) for cert in chain for anchor in anchors)


def verify_chain(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    at: datetime,
    anchors_source: str | None = None,
) -> tuple[x509.Certificate, ...]:
    """The validated path from ``chain[0]`` to an anchor at time ``at``, or :class:`PeerRefused`.

    ``chain`` is what the peer presented, leaf first; certificates after the leaf are only
    candidates for intermediates (a copy of the anchor among them is harmless). The anchors
    are the only roots; ``anchors_source`` names where they came from (a file) for the
    message when another CA issued the chain: "not issued by the CA in FILE".
    """
    if not chain:
        raise PeerRefused("chain", "the peer presented no certificate")
    if len(chain) > MAX_PEER_CHAIN:
        raise PeerRefused(
            "chain", f"the peer presented {len(chain)} certificates, more than {MAX_PEER_CHAIN}"
        )
    if not anchors:
        raise PeerRefused("chain", "no trust anchor to verify against")
    if at.tzinfo is None:
        raise ValueError("the verification time must be timezone-aware")
    try:
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(anchors)))
            .time(at)
            .max_chain_depth(MAX_PEER_CHAIN)
            .build_client_verifier()
        )
        result = verifier.verify(chain[0], list(chain[1:]))
    except verification.VerificationError as e:
        if _foreign(chain, anchors):
            where = f"the CA in {anchors_source}" if anchors_source else "the trusted Steward CA"
            raise PeerRefused(
                "chain",
                f"the certificate was not issued by {where} (issuer: "
                f"{chain[0].issuer.rfc4514_string() or 'empty name'})",
            ) from e
        raise PeerRefused("chain", f"the certificate chain does not verify to the Steward CA: {e}") from e
    except ValueError as e:  # a certificate whose extensions do not parse
        raise PeerRefused("chain", f"a certificate in the chain is malformed: {e}") from e
    return tuple(result.chain)


def _eku(leaf: x509.Certificate) -> frozenset[x509.ObjectIdentifier]:
    try:
        return frozenset(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return frozenset()
    except ValueError as e:
        raise PeerRefused("key_usage", f"extended key usage does not parse: {e}") from e


def _names(leaf: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The DNS names and IP addresses among the leaf's subject alternative names."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return (), ()
    addresses = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
    return tuple(san.get_values_for_type(x509.DNSName)), addresses


def check_identity(leaf: x509.Certificate, expectation: PeerExpectation) -> PeerIdentity:
    """Steps 2-4 of the module docstring on a leaf whose chain has been verified already."""
    if expectation.role == "server" and ExtendedKeyUsageOID.SERVER_AUTH not in _eku(leaf):
        raise PeerRefused("key_usage", "the certificate is not for TLS servers (no serverAuth EKU)")
    try:
        spiffe_id = spiffe_id_of(leaf)
    except (PeerIdentityMismatch, InvalidSpiffeId) as e:
        raise PeerRefused("spiffe_id", f"the certificate is not an X.509-SVID: {e}") from e
    named = spiffe_id in expectation.spiffe_ids
    if expectation.spiffe_ids and not named:
        raise PeerRefused(
            "spiffe_id",
            "the peer's SPIFFE ID is not an expected one",
            expected=" or ".join(str(s) for s in sorted(expectation.spiffe_ids)),
            got=str(spiffe_id),
        )
    claims = find_claims(leaf, expectation.claims_oid)
    unattested = spiffe_id.path.startswith(UNATTESTED_PREFIX)
    simulated = spiffe_id.path.startswith(SIMULATED_PREFIX) or (claims is not None and claims.simulated)
    if unattested and not (named or expectation.allow_unattested):
        raise PeerRefused(
            "unattested",
            "the Steward issued this identity WITHOUT attestation evidence (allow_unattested policy)",
            got=str(spiffe_id),
        )
    if simulated and not (named or expectation.allow_simulated):
        raise PeerRefused(
            "simulated",
            "the Steward issued this identity on SIMULATED evidence (not a TEE)",
            got=str(spiffe_id),
        )
    if expectation.workload_digest is not None:
        if claims is None:
            raise PeerRefused(
                "workload_digest",
                "the certificate carries no claims (neither the TCG DICE MultiTcbInfo extension nor "
                "JSON claims), so its workload digest cannot be checked (check the SPIFFE ID instead)",
            )
        got = claims.workload_digest
        if got != expectation.workload_digest:
            raise PeerRefused(
                "workload_digest",
                "the peer runs another workload",
                expected=expectation.workload_digest.hex(),
                got=got.hex() if got is not None else None,
            )
    dns_names, ip_addresses = _names(leaf)
    return PeerIdentity(
        spiffe_id=spiffe_id,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        serial=format(leaf.serial_number, "x"),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        issuer=leaf.issuer.rfc4514_string(),
        claims=claims,
        simulated=simulated,
        unattested=unattested,
        chain=(leaf,),
    )


def verify_peer(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    expectation: PeerExpectation,
    *,
    at: datetime,
    anchors_source: str | None = None,
) -> PeerIdentity:
    """Every check of the module docstring: the chain at ``at``, then the identity."""
    path = verify_chain(chain, anchors, at=at, anchors_source=anchors_source)
    identity = check_identity(path[0], expectation)
    return dataclasses.replace(identity, chain=path)
