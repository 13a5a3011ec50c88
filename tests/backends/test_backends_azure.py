"""``azure-snp`` / ``azure-tdx`` against a software TPM (swtpm) provisioned like Azure's vTPM, and a fake
IMDS on loopback: the backend's evidence verifies with the attestation library, end to end."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import serialization

from donjon import binding as _binding
from donjon.attestation.azure import AzureOptions
from donjon.attestation.detect import recognise_collateral
from donjon.attestation.simsnp import default_vendor
from donjon.attestation.verify import Collateral, EvidenceKind, TrustRoots, verify_evidence
from donjon.backends.azure import AzureVtpmBackend
from donjon.backends.azure_sim import SoftwareTpm, provision
from donjon.backends.platform import PlatformRoots
from donjon.backends.registry import create_backend

BINDING = hashlib.sha512(b"a Keep's binding").digest()
PCR7 = hashlib.sha256(b"secure boot policy").digest()


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[str]:
    """A fresh swtpm on loopback; yields its TCTI string."""
    if importlib.util.find_spec("tpm2_pytss") is None:
        pytest.fail(
            "tpm2-pytss is not installed (pip install -e '.[test]' after apt-get install libtss2-dev)"
        )
    if shutil.which("swtpm") is None:
        pytest.fail("swtpm is not installed (scripts/test installs Debian's swtpm)")
    with SoftwareTpm(tmp_path / "tpm") as tpm:
        yield tpm.tcti


class _Imds(BaseHTTPRequestHandler):
    # set per test on a subclass (the imds fixture): (method, path) -> answer, and the requests seen
    answers: ClassVar[dict[tuple[str, str], bytes]] = {}
    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            {"method": method, "path": self.path, "metadata": self.headers.get("Metadata"), "body": body}
        )
        answer = self.answers.get((method, self.path))
        if answer is None or self.headers.get("Metadata") != "true":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[tuple[str, type[_Imds]]]:
    handler = type("Imds", (_Imds,), {"answers": {}, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_azure_snp_evidence_from_a_software_vtpm_verifies(swtpm: str, imds: tuple[str, Any]) -> None:
    url, handler = imds
    vendor = default_vendor("Milan")
    evidence = {}

    def snp_report(report_data: bytes) -> bytes:
        ev = vendor.evidence(report_data, measurement=b"\x42" * 48)
        evidence["certs"] = ev.certs
        return ev.report

    provision(swtpm, snp_report, extend={7: PCR7})
    pem = serialization.Encoding.PEM
    from cryptography import x509

    certs = [x509.load_der_x509_certificate(c) for c in evidence["certs"]]
    handler.answers[("GET", "/metadata/THIM/amd/certification")] = json.dumps(
        {
            "vcekCert": certs[0].public_bytes(pem).decode(),
            "certificateChain": b"".join(c.public_bytes(pem) for c in certs[1:]).decode(),
        }
    ).encode()
    backend = AzureVtpmBackend("azure-snp", tcti=swtpm, imds=url)
    assert backend.probe().usable
    assert not AzureVtpmBackend("azure-tdx", tcti=swtpm, imds=url).probe().usable  # wraps an SNP report
    got = backend.evidence(BINDING)
    assert got.kind is EvidenceKind.AZURE_SNP_VTPM and handler.seen[-1]["metadata"] == "true"
    verified = verify_evidence(
        EvidenceKind.AZURE_SNP_VTPM,
        got.data,
        roots=TrustRoots(
            certificates=(vendor.ask,), extra_trusted=(vendor.ark,)
        ),  # the ASK: as a Steward holds it
        at=datetime.now(UTC),
        options=AzureOptions(qualifying_data=_binding.vtpm_qualifying_data(BINDING)),
    )
    claims = verified.claims
    assert claims.simulated and claims.measurement == b"\x42" * 48
    # PCR 7 as extended in the software TPM (from zero): the quote covers the TPM's real PCRs.
    assert claims.raw["vtpm"]["pcrs"]["7"] == hashlib.sha256(bytes(32) + PCR7).digest()


def test_azure_tdx_evidence_asks_imds_for_the_td_quote(swtpm: str, imds: tuple[str, Any]) -> None:
    simtdx = pytest.importorskip("donjon.attestation.simtdx")
    url, handler = imds
    issued = datetime.now(UTC) - timedelta(hours=1)
    sim = simtdx.SimulatedTdx(issued_at=issued)
    td = {}

    def td_report(report_data: bytes) -> bytes:
        report = bytearray(1024)
        report[0] = 0x81  # REPORTMACSTRUCT.REPORTTYPE: TDX
        report[0x80:0xC0] = report_data
        td["quote"] = sim.quote(bytes(report[0x80:0xC0]))
        return bytes(report)

    provision(swtpm, td_report, tdx=True)
    handler.answers[("POST", "/acc/tdquote")] = json.dumps(
        {"quote": base64.urlsafe_b64encode(td["quote"]).decode()}
    ).encode()
    got = AzureVtpmBackend("azure-tdx", tcti=swtpm, imds=url).evidence(BINDING)
    # The TD report went to IMDS as base64url JSON.
    sent = json.loads(handler.seen[-1]["body"])
    assert base64.urlsafe_b64decode(sent["report"] + "==")[0] == 0x81
    c = sim.collateral()
    collateral = Collateral()
    for blob in (c.tcb_info, c.tcb_info_issuer_chain, c.qe_identity, c.pck_crl, c.root_crl):
        collateral = collateral + recognise_collateral(blob)
    claims = verify_evidence(
        EvidenceKind.AZURE_TDX_VTPM,
        got.data,
        collateral=collateral,
        roots=TrustRoots(extra_trusted=(sim.root,)),
        at=datetime.now(UTC),
        options=AzureOptions(qualifying_data=_binding.vtpm_qualifying_data(BINDING)),
    ).claims
    assert claims.tee.value == "tdx" and claims.simulated


def test_probe_without_a_tpm_or_without_an_hcl_report(tmp_path: Path, swtpm: str) -> None:
    missing = create_backend("azure-snp", roots=PlatformRoots.under(tmp_path)).probe()
    assert not missing.usable and "no TPM device" in missing.reason
    # A TPM, but not Azure's: no HCL report in NV.
    bare = AzureVtpmBackend("azure-snp", tcti=swtpm).probe()
    assert not bare.usable and "HCL report" in bare.reason


def test_an_imds_that_cannot_answer_is_an_evidence_error(swtpm: str, imds: tuple[str, Any]) -> None:
    from donjon.backends.errors import EvidenceError

    url, handler = imds
    vendor = default_vendor("Milan")
    provision(swtpm, lambda report_data: vendor.evidence(report_data).report)
    # Nothing at that path (404), then an answer that is not the VCEK document.
    with pytest.raises(EvidenceError) as e:
        AzureVtpmBackend("azure-snp", tcti=swtpm, imds=url).evidence(BINDING)
    assert "unreachable" in e.value.reason and "404" in e.value.reason
    handler.answers[("GET", "/metadata/THIM/amd/certification")] = b'{"vcekCert": 1}'
    with pytest.raises(EvidenceError) as e:
        AzureVtpmBackend("azure-snp", tcti=swtpm, imds=url).evidence(BINDING)
    assert "no usable endorsement" in e.value.reason
