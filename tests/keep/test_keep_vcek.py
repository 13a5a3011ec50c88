"""SEV-SNP reports that arrive without certificates (an empty auxblob), and VLEK-signed ones.

The backend here is the real sim-snp backend behind a wrapper that drops the certificates
the platform would have returned, as a host without a certificate table does.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from donjon.backends import Availability, Evidence, SimBackend
from donjon.collateral import CollateralCache, CollateralStore, HttpFetcher, KdsClient
from donjon.collateral.http import FetchConfig
from donjon.keep import AttestationRefused, EvidenceUnavailable, KdsVcekSource, attest


class WithoutCerts:
    """A :class:`~donjon.backends.Backend` whose platform returns the report but no certificates."""

    def __init__(self, inner: SimBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.attested = True
        self.simulated = True

    def probe(self) -> Availability:
        return self.inner.probe()

    def evidence(self, binding: bytes) -> Evidence:
        return dataclasses.replace(self.inner.evidence(binding), certs=())


class FakeKds:
    """AMD KDS's VCEK endpoint for the simulated chip, on loopback (or 404 when ``broken``)."""

    def __init__(self, vcek_der: bytes, *, broken: bool = False) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                if broken or not self.path.startswith("/vcek/v1/Milan/"):
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-cert")
                self.send_header("Content-Length", str(len(vcek_der)))
                self.end_headers()
                self.wfile.write(vcek_der)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_certs(sim_snp: SimBackend) -> WithoutCerts:
    return WithoutCerts(sim_snp)


def _kds_source(tmp_path: Path, kds: FakeKds) -> tuple[KdsVcekSource, HttpFetcher]:
    fetcher = HttpFetcher(FetchConfig(timeout=5, attempts=1, trust_env=False))
    store = CollateralStore(CollateralCache(tmp_path / "kds-cache"), fetcher)
    return KdsVcekSource(KdsClient(store, base_url=kds.url)), fetcher


@pytest.fixture
def vcek_der(sim_vendor) -> bytes:
    return sim_vendor.endorsement_key()[1].public_bytes(serialization.Encoding.DER)


@pytest.fixture
def kds(vcek_der: bytes) -> Iterator[FakeKds]:
    server = FakeKds(vcek_der)
    yield server
    server.close()


def test_report_alone_is_completed_by_the_stewards_own_vcek(steward_env, no_certs, h):
    steward_env.add_snp_vcek_to_collateral()
    with h.StewardServer(steward_env) as server:
        result = attest(no_certs, h.DIGEST, server.url, steward_env.ca_pem)
    assert str(result.spiffe_id) == h.SIM_SPIFFE_ID


def test_report_alone_without_any_vcek_is_refused_by_the_steward(steward, steward_env, no_certs, h):
    with pytest.raises(AttestationRefused) as info:
        attest(no_certs, h.DIGEST, steward.url, steward_env.ca_pem)
    assert info.value.check == "collateral.snp.vcek.missing"


def test_the_keep_fetches_its_vcek_from_kds(steward, steward_env, no_certs, kds, tmp_path, h):
    source, fetcher = _kds_source(tmp_path, kds)
    with fetcher:
        result = attest(no_certs, h.DIGEST, steward.url, steward_env.ca_pem, vcek_source=source)
    assert str(result.spiffe_id) == h.SIM_SPIFFE_ID
    assert len(kds.paths) == 1
    chip = steward_env.vendor.default_chip_id().hex()
    assert kds.paths[0].startswith(f"/vcek/v1/Milan/{chip}?")


def test_a_failed_vcek_fetch_falls_back_to_the_report_alone(steward_env, no_certs, vcek_der, tmp_path, h):
    broken = FakeKds(vcek_der, broken=True)
    steward_env.add_snp_vcek_to_collateral()
    try:
        source, fetcher = _kds_source(tmp_path, broken)
        with fetcher, h.StewardServer(steward_env) as server:
            result = attest(no_certs, h.DIGEST, server.url, steward_env.ca_pem, vcek_source=source)
    finally:
        broken.close()
    assert len(broken.paths) == 1
    assert str(result.spiffe_id) == h.SIM_SPIFFE_ID


def test_a_vlek_report_without_its_vlek_is_refused_with_a_clear_message(steward, steward_env, sim_vendor, h):
    vlek = SimBackend(
        "sim-snp", vendor=sim_vendor, report_options={"measurement": h.MEASUREMENT, "signing_key": "vlek"}
    )
    with pytest.raises(EvidenceUnavailable) as info:
        attest(WithoutCerts(vlek), h.DIGEST, steward.url, steward_env.ca_pem)
    message = str(info.value)
    assert "VLEK" in message and "cannot be fetched" in message
    assert info.value.fix is not None and "auxblob" in info.value.fix
