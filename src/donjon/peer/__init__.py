"""The relying-party side: verify a Keep's certificate chain and the workload it names.

A client that trusts the Steward's CA needs no TEE knowledge: the Steward verified the
evidence; the client verifies the Steward's certificate (chain, SPIFFE ID, claims). See
docs/keep.md "What a relying party checks" and ``donjon peer verify``.
"""

from donjon.peer.claims import CertificateClaims, find_claims, parse_claims_value
from donjon.peer.connect import TlsSession, fetch_peer_chain
from donjon.peer.errors import PeerError, PeerRefused, PeerUnreachable
from donjon.peer.verify import (
    MAX_PEER_CHAIN,
    PeerExpectation,
    PeerIdentity,
    check_identity,
    verify_chain,
    verify_peer,
)

__all__ = [
    "MAX_PEER_CHAIN",
    "CertificateClaims",
    "PeerError",
    "PeerExpectation",
    "PeerIdentity",
    "PeerRefused",
    "PeerUnreachable",
    "TlsSession",
    "check_identity",
    "fetch_peer_chain",
    "find_claims",
    "parse_claims_value",
    "verify_chain",
    "verify_peer",
]
