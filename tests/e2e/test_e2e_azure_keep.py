"""``donjon run --backend azure-snp`` end to end: a software TPM laid out like Azure's vTPM (swtpm), a
loopback IMDS serving the VCEK, the real Steward (trusting the simulated AMD), a client over TLS.

The Keep is the real command line in a child process, pointed at the software TPM and the loopback
IMDS by $DONJON_TPM_TCTI and $DONJON_AZURE_IMDS; everything between is what runs on Azure.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.peer import PeerExpectation, fetch_peer_chain, verify_peer

SPIFFE_PATH = "/e2e/azure"
PARAVISOR = b"\x42" * 48
PCR7_EVENT = hashlib.sha256(b"secure boot policy").digest()
PCR7 = hashlib.sha256(bytes(32) + PCR7_EVENT).digest()


@pytest.fixture
def azure_vm(tmp_path: Path, sim_vendor_dir: Path) -> Iterator[dict[str, str]]:
    """swtpm provisioned like an Azure SEV-SNP CVM's vTPM, and its IMDS on loopback: the Keep's env."""
    from donjon.backends.azure_sim import SoftwareTpm, provision
    from donjon.backends.sim import load_or_create_sim_vendor

    if importlib.util.find_spec("tpm2_pytss") is None:
        pytest.fail(
            "tpm2-pytss is not installed (pip install -e '.[test]' after apt-get install libtss2-dev)"
        )
    if shutil.which("swtpm") is None:
        pytest.fail("swtpm is not installed (scripts/test installs Debian's swtpm)")
    vendor = load_or_create_sim_vendor("sim-snp", sim_vendor_dir)
    certs: list[bytes] = []

    def snp_report(report_data: bytes) -> bytes:
        ev = vendor.evidence(report_data, measurement=PARAVISOR)
        certs.extend(ev.certs)
        return bytes(ev.report)

    class Imds(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metadata/THIM/amd/certification" or self.headers.get("Metadata") != "true":
                self.send_response(404)
                self.end_headers()
                return
            pem = [x509.load_der_x509_certificate(c).public_bytes(serialization.Encoding.PEM) for c in certs]
            body = json.dumps({"vcekCert": pem[0].decode(), "certificateChain": b"".join(pem[1:]).decode()})
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with SoftwareTpm(tmp_path / "tpm") as tpm:
            provision(tpm.tcti, snp_report, extend={7: PCR7_EVENT})
            yield {
                "DONJON_TPM_TCTI": tpm.tcti,
                "DONJON_AZURE_IMDS": f"http://127.0.0.1:{server.server_address[1]}",
            }
    finally:
        server.shutdown()
        server.server_close()


def test_donjon_run_on_azure_snp_attests_and_serves(e2e: Any, azure_vm: dict[str, str]) -> None:
    steward = e2e.steward()
    w = e2e.workload(
        "http", steward_url=steward.url, steward_ca=steward.ca_path, name="web", backends=("azure-snp",)
    )
    policy = e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)])
    policy = policy.replace(
        "\n[platform.tdx]",
        f'\n[platform.sev-snp.vtpm]\nallowed_measurements = ["{PARAVISOR.hex()}"]\n'
        f'pcrs = {{ 7 = ["{PCR7.hex()}"] }}\n\n[platform.tdx]',
        1,
    )
    steward.set_policy(policy)
    keep = e2e.keep(["--backend", "azure-snp", "--config", str(w.config), str(w.wasm)], env=azure_vm)
    keep.wait_for("listening on")
    expected = f"spiffe://{steward.trust_domain}/sim{SPIFFE_PATH}"
    assert f"attested by the Steward at {steward.url}: {expected} [SIMULATED TEE]" in keep.err
    # A client that trusts only the Steward's CA sees the identity and the workload.
    session = fetch_peer_chain("127.0.0.1", w.port, timeout=10)
    ca = tuple(x509.load_pem_x509_certificates(steward.ca_pem))
    expect = PeerExpectation.of([expected], workload_digest=w.digest)
    identity = verify_peer(session.chain, ca, expect, at=datetime.now(UTC))
    assert identity.claims is not None and identity.claims.values.get("vtpm") is True


def test_donjon_run_on_azure_snp_with_another_pcr_is_refused(e2e: Any, azure_vm: dict[str, str]) -> None:
    steward = e2e.steward()
    w = e2e.workload(
        "http", steward_url=steward.url, steward_ca=steward.ca_path, name="web", backends=("azure-snp",)
    )
    policy = e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]).replace(
        "\n[platform.tdx]",
        f'\n[platform.sev-snp.vtpm]\nallowed_measurements = ["*"]\npcrs = {{ 7 = ["{"00" * 32}"] }}\n\n'
        "[platform.tdx]",
        1,
    )
    steward.set_policy(policy)
    keep = e2e.keep(["--backend", "azure-snp", "--config", str(w.config), str(w.wasm)], env=azure_vm)
    assert keep.wait() != 0
    assert "policy.pcr" in keep.err
