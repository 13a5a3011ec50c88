"""The Keep's attestation with the ``azure-snp`` backend, end to end to a real Steward over HTTPS:
a software TPM laid out like Azure's vTPM (swtpm), the paravisor's SNP report from the simulated AMD."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.keep import AttestationRefused, attest

PARAVISOR = b"\x42" * 48
PCR7_EVENT = hashlib.sha256(b"secure boot policy").digest()
PCR7 = hashlib.sha256(bytes(32) + PCR7_EVENT).digest()  # extended once from zero


@pytest.fixture
def vtpm(tmp_path: Path, steward_env: Any) -> Iterator[Any]:
    """An ``azure-snp`` backend on swtpm, its VCEK served as Azure's IMDS would (here: in-process)."""
    from donjon.backends.azure import AzureVtpmBackend
    from donjon.backends.azure_sim import SoftwareTpm, provision

    if importlib.util.find_spec("tpm2_pytss") is None:
        pytest.fail(
            "tpm2-pytss is not installed (pip install -e '.[test]' after apt-get install libtss2-dev)"
        )
    if shutil.which("swtpm") is None:
        pytest.fail("swtpm is not installed (scripts/test installs Debian's swtpm)")
    vendor = steward_env.vendor
    certs: list[bytes] = []

    def snp_report(report_data: bytes) -> bytes:
        ev = vendor.evidence(report_data, measurement=PARAVISOR)
        certs.extend(ev.certs)
        return ev.report

    def imds(method: str, url: str, body: Any) -> bytes:
        assert (method, url) == ("GET", "http://imds.invalid/metadata/THIM/amd/certification")
        pem = [x509.load_der_x509_certificate(c).public_bytes(serialization.Encoding.PEM) for c in certs]
        return json.dumps(
            {"vcekCert": pem[0].decode(), "certificateChain": b"".join(pem[1:]).decode()}
        ).encode()

    with SoftwareTpm(tmp_path / "tpm") as tpm:
        provision(tpm.tcti, snp_report, extend={7: PCR7_EVENT})
        yield AzureVtpmBackend("azure-snp", tcti=tpm.tcti, imds="http://imds.invalid", fetch=imds)


def vtpm_policy(h: Any, pcr7: bytes = PCR7) -> str:
    table = f"""
[platform.sev-snp.vtpm]
allowed_measurements = ["{PARAVISOR.hex()}"]
pcrs = {{ 7 = ["{pcr7.hex()}"] }}

"""
    text: str = h.policy_text()
    return text.replace("[[workload]]", table + "[[workload]]", 1)


def test_an_azure_keep_gets_its_identity_from_the_steward(
    steward: Any, steward_env: Any, vtpm: Any, h: Any
) -> None:
    steward.reload_policy(vtpm_policy(h))
    assert vtpm.probe().usable
    result = attest(vtpm, h.DIGEST, steward.url, steward_env.ca_pem)
    assert result.evidence_kind == "azure-snp-vtpm" and result.backend == "azure-snp"
    assert str(result.spiffe_id) == h.SIM_SPIFFE_ID and result.simulated
    assert result.claims is not None and result.claims["tee"] == "sev-snp"
    assert result.claims["measurement"] == PARAVISOR.hex()
    assert result.claims["vtpm"] is True  # in the certificate: not bare SEV-SNP
    # The DICE extension says it too, with the quote's PCR digest as the vTPM entry's FWID.
    from donjon.peer.claims import dice_claims

    dice = dice_claims(result.leaf)
    assert dice is not None and dice.values["vtpm"] is True and dice.values["tee"] == "sev-snp"
    # The same log as every issuance, with the vTPM's PCRs among the verified claims.
    entry = steward.steward.log.find_serial(result.serial)
    assert entry is not None and entry.record["evidence_kind"] == "azure-snp-vtpm"
    assert entry.record["claims"]["raw"]["vtpm"]["pcrs"]["7"] == PCR7.hex()
    assert entry.record["fresh"] is True


def test_a_pcr_the_policy_does_not_allow_is_refused(
    steward: Any, steward_env: Any, vtpm: Any, h: Any
) -> None:
    steward.reload_policy(vtpm_policy(h, pcr7=bytes(32)))
    with pytest.raises(AttestationRefused) as e:
        attest(vtpm, h.DIGEST, steward.url, steward_env.ca_pem)
    assert e.value.check == "policy.pcr"
