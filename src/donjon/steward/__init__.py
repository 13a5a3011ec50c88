"""The Steward: Donjon's attestation service that issues workload certificates.

It hands out stateless challenges, takes PKCS#10 CSRs carrying TEE evidence,
verifies them with :mod:`donjon.attestation` against its own collateral and a
policy, issues short-lived SPIFFE X.509-SVIDs, and records every decision in an
append-only transparency log (RFC 9162 Merkle tree, signed checkpoints). See docs/steward.md.
"""

from donjon.steward.ca import CertificateAuthority, create_ca
from donjon.steward.collateral import CollateralSet, CollateralSource, DirectoryCollateral
from donjon.steward.config import StewardConfig, load_config
from donjon.steward.errors import ConfigError, Refused, StewardError
from donjon.steward.issuance import EvidenceVerifier, Outcome, PolicyHolder, Steward
from donjon.steward.log import LogCorrupt, LogEntry, LogStore, verify_log
from donjon.steward.nonce import NonceAuthority
from donjon.steward.policy import Decision, Policy, load_policy, parse_policy

__all__ = [
    "CertificateAuthority",
    "CollateralSet",
    "CollateralSource",
    "ConfigError",
    "Decision",
    "DirectoryCollateral",
    "EvidenceVerifier",
    "LogCorrupt",
    "LogEntry",
    "LogStore",
    "NonceAuthority",
    "Outcome",
    "Policy",
    "PolicyHolder",
    "Refused",
    "Steward",
    "StewardConfig",
    "StewardError",
    "create_ca",
    "load_config",
    "load_policy",
    "parse_policy",
    "verify_log",
]
