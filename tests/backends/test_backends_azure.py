"""``azure-snp`` / ``azure-tdx`` against a software TPM (swtpm) provisioned like Azure's vTPM, and a fake
IMDS on loopback: the backend's evidence verifies with the attestation library, end to end."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from donjon import binding as _binding
from donjon.attestation.azure import AzureOptions
from donjon.attestation.detect import recognise_collateral
from donjon.attestation.simazure import SimulatedVtpm, runtime_claims
from donjon.attestation.simsnp import default_vendor
from donjon.attestation.verify import Collateral, EvidenceKind, TrustRoots, verify_evidence
from donjon.backends.azure import AK_HANDLE, HCL_NV_INDEX, AzureVtpmBackend
from donjon.backends.platform import PlatformRoots
from donjon.backends.registry import create_backend

tpm2_pytss = pytest.importorskip("tpm2_pytss")
BINDING = hashlib.sha512(b"a Keep's binding").digest()
PCR7 = hashlib.sha256(b"secure boot policy").digest()


def _free_pair() -> int:
    """A free loopback port whose successor is free too (the swtpm TCTI's control port is port + 1)."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture
def swtpm(tmp_path: Path) -> Iterator[str]:
    """A fresh swtpm on loopback; yields its TCTI string."""
    if shutil.which("swtpm") is None:
        pytest.fail("swtpm is not installed (scripts/test installs Debian's swtpm)")
    state = tmp_path / "tpm"
    state.mkdir()
    port = _free_pair()
    ctrl = port + 1
    proc = subprocess.Popen(
        [
            "swtpm",
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state}",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={ctrl},bindaddr=127.0.0.1",
            "--flags",
            "not-need-init,startup-clear",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # wait until it accepts connections (its own readiness signal)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("swtpm did not start")
                time.sleep(0.02)
        yield f"swtpm:host=127.0.0.1,port={port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def provision(tcti: str, hw_for: Any, *, tdx: bool = False) -> rsa.RSAPublicKey:
    """Azure's layout in the TPM: an AK at 0x81000003, the HCL report (binding it) at 0x01400001."""
    from tpm2_pytss import (
        ESAPI,
        ESYS_TR,
        TPM2_ALG,
        TPM2B_NV_PUBLIC,
        TPM2B_PUBLIC,
        TPML_DIGEST_VALUES,
        TPMS_NV_PUBLIC,
        TPMT_HA,
    )
    from tpm2_pytss.constants import TPMA_NV, TPMA_OBJECT

    attrs = (
        TPMA_OBJECT.RESTRICTED
        | TPMA_OBJECT.SIGN_ENCRYPT
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.USERWITHAUTH
    )
    with ESAPI(tcti) as e:
        template = TPM2B_PUBLIC.parse("rsa2048:rsassa-sha256:null", objectAttributes=attrs)
        handle, public, *_ = e.create_primary(None, template, ESYS_TR.ENDORSEMENT)
        e.evict_control(ESYS_TR.OWNER, handle, AK_HANDLE)
        n = int.from_bytes(bytes(public.publicArea.unique.rsa), "big")
        ak = rsa.RSAPublicNumbers(65537, n).public_key()
        claims = runtime_claims(ak, {"secure-boot": True, "tpm-enabled": True, "vmUniqueId": "swtpm"})
        report = SimulatedVtpm.hcl_report(hw_for(claims), claims, tdx=tdx, nv_size=0)
        nv_public = TPM2B_NV_PUBLIC(
            nvPublic=TPMS_NV_PUBLIC(
                nvIndex=HCL_NV_INDEX,
                nameAlg=TPM2_ALG.SHA256,
                attributes=TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.AUTHWRITE,
                dataSize=len(report),
            )
        )
        index = e.nv_define_space(None, nv_public, ESYS_TR.OWNER)
        for offset in range(0, len(report), 1024):
            e.nv_write(index, report[offset : offset + 1024], offset, ESYS_TR.OWNER)
        digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256)
        digest.digest.sha256 = PCR7
        e.pcr_extend(ESYS_TR.PCR7, TPML_DIGEST_VALUES([digest]))
    return ak


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

    def snp_report(claims: bytes) -> bytes:
        ev = vendor.evidence(SimulatedVtpm.report_data(claims), measurement=b"\x42" * 48)
        evidence["certs"] = ev.certs
        return ev.report

    provision(swtpm, snp_report)
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

    def td_report(claims: bytes) -> bytes:
        report = bytearray(1024)
        report[0] = 0x81  # REPORTMACSTRUCT.REPORTTYPE: TDX
        report[0x80:0xC0] = SimulatedVtpm.report_data(claims)
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
