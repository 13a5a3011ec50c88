"""``nil``: no TEE, no evidence (DESIGN.md "One run, as data").

A Keep on ``nil`` runs with a self-signed certificate and says so loudly; a
Steward issues to it only when its policy explicitly allows unattested
workloads. Asking ``nil`` for evidence is therefore an error, never an empty
success: nothing downstream can mistake "no evidence" for "evidence".
"""

from __future__ import annotations

from donjon.backends.base import Availability, Evidence, check_binding
from donjon.backends.errors import UnattestedBackend

__all__ = ["NilBackend"]


class NilBackend:
    """The unattested backend: always usable, never produces evidence."""

    name = "nil"
    attested = False
    simulated = False

    def probe(self) -> Availability:
        return Availability(
            usable=True,
            reason="always available; runs without a TEE and without attestation evidence",
        )

    def evidence(self, binding: bytes) -> Evidence:
        check_binding(binding, backend=self.name)
        raise UnattestedBackend(
            self.name,
            "nil is unattested: it has no TEE and produces no evidence",
            fix="choose an attested backend (snp, tdx, sgx, cca), or a simulator (sim-snp, sim-tdx) to test",
        )

    def __repr__(self) -> str:
        return "NilBackend()"
