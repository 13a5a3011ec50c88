"""Fixtures for the Azure vTPM tests: the recorded Azure evidence, AMD's real roots, a simulated Intel."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from donjon.attestation.verify import TrustRoots


@pytest.fixture
def amd_roots(vectors: Path) -> TrustRoots:
    """Every AMD root/intermediate certificate in the vectors (trusted only through the pins)."""
    return TrustRoots.from_bytes(*[p.read_bytes() for p in sorted((vectors / "roots" / "amd").glob("*.pem"))])


@pytest.fixture
def snp_dir(vectors: Path) -> Path:
    return vectors / "snp" / "trustee_azure"


@pytest.fixture
def tdx_dir(vectors: Path) -> Path:
    return vectors / "tdx" / "trustee_azure"


@pytest.fixture
def edit_json() -> Callable[[bytes, Callable[[dict[str, Any]], None]], bytes]:
    """Apply ``change`` to a decoded evidence document and encode it again."""

    def edit(data: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
        doc = json.loads(data)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def pytest_configure(config: pytest.Config) -> None:
    # AMD's VCEKs have serial number 0 (see tests/attestation_snp/conftest.py).
    config.addinivalue_line("filterwarnings", "ignore:Parsed a serial number which wasn't positive")
