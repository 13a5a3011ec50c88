"""Fixtures for the SEV-SNP tests: AMD's real roots from the vectors, simulated vendors.

Simulated vendors cost three RSA-4096 key generations each, so they are made
once per session and kept in pytest's cache directory between runs
(``SimulatedAmd.dump``/``load``); delete ``.pytest_cache`` to regenerate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.attestation.simsnp import SimulatedAmd
from donjon.attestation.verify import TrustRoots


def _vendor(config: pytest.Config, product: str) -> SimulatedAmd:
    cache_dir = (
        Path(cache.mkdir("donjon-simsnp")) if (cache := getattr(config, "cache", None)) is not None else None
    )
    path = cache_dir / f"{product}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            return SimulatedAmd.load(path.read_bytes())
        except (ValueError, KeyError):
            pass
    vendor = SimulatedAmd.generate(product)
    if path is not None:
        path.write_bytes(vendor.dump())
    return vendor


@pytest.fixture(scope="session")
def sim_milan(pytestconfig: pytest.Config) -> SimulatedAmd:
    return _vendor(pytestconfig, "Milan")


@pytest.fixture(scope="session")
def sim_turin(pytestconfig: pytest.Config) -> SimulatedAmd:
    return _vendor(pytestconfig, "Turin")


@pytest.fixture
def amd_roots(vectors: Path) -> TrustRoots:
    """Every AMD root/intermediate certificate in the vectors (trusted only through the pins)."""
    return TrustRoots.from_bytes(*[p.read_bytes() for p in sorted((vectors / "roots" / "amd").glob("*.pem"))])


def pytest_configure(config: pytest.Config) -> None:
    # AMD's VCEKs have serial number 0; donjon.attestation.amd silences cryptography's
    # warning about it at import, but pytest resets warning filters per test.
    config.addinivalue_line("filterwarnings", "ignore:Parsed a serial number which wasn't positive")


#: Real positives (VERIFY_TIMES.tsv SNP bundles): evidence, certificates, a time when they verify,
#: and the options their recorded facts need (gosev's policy has DEBUG; the VLEK report is VMPL 1).
POSITIVES = [
    (
        "gosev-milan",
        "snp/gosevguest/attestation.bin",
        "snp/gosevguest/vcek_milan.der",
        "2022-09-24T01:00:00Z",
        {"allow_debug": True},
    ),
    (
        "virtee-milan",
        "snp/virtee_sev/report_milan.hex",
        "snp/virtee_sev/vcek_milan.der",
        "2026-11-29T00:00:00Z",
        {},
    ),
    ("trustee-milan", "snp/trustee/test-report.bin", "snp/trustee/test-vcek.der", "2026-11-29T00:00:00Z", {}),
    (
        "trustee-vlek",
        "snp/trustee/test-vlek-report.bin",
        "snp/trustee/test-vlek.der",
        "2025-06-01T00:00:00Z",
        {"max_vmpl": 1},
    ),
    (
        "trustee-genoa",
        "snp/trustee/e2e-evidence.report.bin",
        "snp/trustee/e2e-evidence.vcek.der",
        "2026-11-29T00:00:00Z",
        {},
    ),
    (
        "azure-milan",
        "snp/trustee_azure/hcl-report.snp-report.bin",
        "snp/trustee_azure/vcek.pem",
        "2026-11-29T00:00:00Z",
        {},
    ),
    (
        "azure-genoa",
        "snp/trustee_azure/evidence-genoa.snp-report.bin",
        "snp/trustee_azure/evidence-genoa.vcek.der",
        "2026-11-29T00:00:00Z",
        {},
    ),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "positive" in metafunc.fixturenames:
        metafunc.parametrize("positive", POSITIVES, ids=[p[0] for p in POSITIVES])
