"""The Keep's side of attestation: attest to a Steward, hold and renew the TLS identity.

:func:`attest` (or an :class:`Attestor`) runs the flow of DESIGN.md "One run, as data" from a
backend and a workload digest to an :class:`AttestedIdentity` whose ``credentials()`` go into
a :class:`KeepIdentity` (a ``donjon.tls.Identity``); a :class:`Renewer` attests again before
expiry and swaps them in. See docs/keep.md.
"""

from donjon.keep.attest import (
    AttestedIdentity,
    Attestor,
    KdsVcekSource,
    RetryPolicy,
    VcekSource,
    attest,
    check_issued,
)
from donjon.keep.errors import (
    AttestationRefused,
    EvidenceUnavailable,
    IdentityExpired,
    IssuedCertificateInvalid,
    KeepError,
    StewardProtocolError,
    StewardUnreachable,
    StewardUntrusted,
)
from donjon.keep.renew import KeepIdentity, Renewer
from donjon.keep.steward_client import Challenge, StewardBusy, StewardClient, StewardEndpoint

__all__ = [
    "AttestationRefused",
    "AttestedIdentity",
    "Attestor",
    "Challenge",
    "EvidenceUnavailable",
    "IdentityExpired",
    "IssuedCertificateInvalid",
    "KdsVcekSource",
    "KeepError",
    "KeepIdentity",
    "Renewer",
    "RetryPolicy",
    "StewardBusy",
    "StewardClient",
    "StewardEndpoint",
    "StewardProtocolError",
    "StewardUnreachable",
    "StewardUntrusted",
    "VcekSource",
    "attest",
    "check_issued",
]
