"""sim-tdx: a simulated TD quote, verified by the real Steward with the simulated Intel's collateral."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from donjon.attestation.simtdx import SimulatedTdx
from donjon.backends import SimBackend
from donjon.keep import attest

MRTD = hashlib.sha384(b"donjon keep test TD").digest()


@pytest.fixture(scope="module")
def tdx_vendor() -> SimulatedTdx:
    return SimulatedTdx(issued_at=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))


def test_sim_tdx_attestation_issues_the_expected_identity(steward_env, tdx_vendor, h):
    steward_env.add_tdx(tdx_vendor)
    steward_env.set_policy(h.policy_text(tdx_mrtd=MRTD))
    backend = SimBackend("sim-tdx", vendor=tdx_vendor, report_options={"mrtd": MRTD})
    with h.StewardServer(steward_env) as server:
        result = attest(backend, h.DIGEST, server.url, steward_env.ca_pem)
    assert str(result.spiffe_id) == h.SIM_SPIFFE_ID
    assert result.evidence_kind == "tdx-quote"
    assert result.claims is not None and result.claims["tee"] == "tdx"
    assert result.claims["measurement"] == MRTD.hex()
    assert result.claims["workload_digest"] == h.DIGEST.hex()
