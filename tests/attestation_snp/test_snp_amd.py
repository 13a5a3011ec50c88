"""AMD's pins, endorsement chains of every product line, and the extended-report certificate table."""

from __future__ import annotations

import struct
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import amd
from donjon.attestation.amd import ARK_FINGERPRINTS, ASK_FINGERPRINTS, ASVK_FINGERPRINTS, Product
from donjon.attestation.errors import AttestationError, MalformedEvidence
from donjon.attestation.pki import load_certificates
from donjon.attestation.simsnp import SimulatedAmd
from donjon.attestation.snp import verify_endorsement_chain
from donjon.attestation.verify import TrustRoots

AT = datetime(2026, 11, 29, tzinfo=UTC)


def test_every_pin_is_an_amd_certificate_of_its_product(amd_roots: TrustRoots) -> None:
    by_fp = {amd.fingerprint(c): c for c in amd_roots.certificates}
    for product in Product:
        ark = by_fp[ARK_FINGERPRINTS[product]]
        assert ark.subject.rfc4514_string().startswith(f"CN=ARK-{product.value},O=Advanced Micro Devices")
        amd.signature_verified(ark, ark, "test")
        for pins, cn in (
            (ASK_FINGERPRINTS, f"SEV-{product.value}"),
            (ASVK_FINGERPRINTS, f"SEV-VLEK-{product.value}"),
        ):
            middle = by_fp[pins[product]]
            assert middle.subject.rfc4514_string().startswith(f"CN={cn},")
            amd.signature_verified(middle, ark, "test")
        assert amd.product_of_root(ark) is product


@pytest.mark.parametrize(
    ("vcek", "product"),
    [
        ("snp/virtee_sev/vcek_turin.der", Product.TURIN),  # MANIFEST: chains to Turin ASK/ARK
        ("snp/virtee_sev/vcek_milan.der", Product.MILAN),
        ("snp/trustee/e2e-evidence.vcek.der", Product.GENOA),
        ("snp/trustee/test-vlek.der", Product.MILAN),
    ],
)
def test_real_endorsement_chains(vectors: Path, amd_roots: TrustRoots, vcek: str, product: Product) -> None:
    cert = load_certificates((vectors / vcek).read_bytes())[0]
    at = datetime(2025, 6, 1, tzinfo=UTC)
    chain = verify_endorsement_chain(cert, pool=(), roots=amd_roots, at=at)
    assert chain.product is product and chain.simulated is False
    others = TrustRoots(
        certificates=tuple(
            c for c in amd_roots.certificates if product.value not in c.subject.rfc4514_string()
        )
    )
    with pytest.raises(AttestationError):
        verify_endorsement_chain(cert, pool=(), roots=others, at=at)


def test_simulated_chain_is_simulated(sim_turin: SimulatedAmd) -> None:
    _, vcek = sim_turin.endorsement_key()
    chain = verify_endorsement_chain(vcek, pool=(sim_turin.ask,), roots=sim_turin.trust_roots(), at=AT)
    assert chain.product is Product.TURIN and chain.simulated is True
    assert amd.product_of_root(sim_turin.ark) is None
    assert amd.product_of_root(sim_turin.ark, pinned_only=False) is Product.TURIN


def _guid_bytes(text: str) -> bytes:
    return uuid.UUID(text).bytes_le


def test_cert_table(sim_milan: SimulatedAmd) -> None:
    _, vcek = sim_milan.endorsement_key()
    blobs = [
        ("63da758d-e664-4564-adc5-f4b93be8accd", vcek.public_bytes(Encoding.DER)),
        ("4ab7b379-bbac-4fe4-a02f-05aef327c782", sim_milan.ask.public_bytes(Encoding.DER)),
        ("c0b406a4-a803-4952-9743-3fb6014cd0ae", sim_milan.ark.public_bytes(Encoding.DER)),
        ("11111111-2222-3333-4444-555555555555", b"other"),
    ]
    header_len = 24 * (len(blobs) + 1)
    header, body = b"", b""
    for guid, blob in blobs:
        header += _guid_bytes(guid) + struct.pack("<II", header_len + len(body), len(blob))
        body += blob
    table = header + bytes(24) + body
    from donjon.attestation.detect import recognise_collateral

    assert len(recognise_collateral(table).certificates) == 3  # the auxblob as --collateral
    entries = amd.parse_cert_table(table)
    assert [kind for kind, _ in entries] == ["vcek", "ask", "ark", "11111111-2222-3333-4444-555555555555"]
    assert entries[0][1] == vcek.public_bytes(Encoding.DER)
    for broken in (
        table[:24],
        header[:24] + bytes(10),
        _guid_bytes(blobs[0][0]) + struct.pack("<II", 10**6, 5) + bytes(24),
    ):
        with pytest.raises(MalformedEvidence):
            amd.parse_cert_table(broken)


def test_cpuid_products() -> None:
    assert amd.product_from_cpuid(0x19, 0x01) is Product.MILAN
    assert amd.product_from_cpuid(0x19, 0x11) is Product.GENOA
    assert amd.product_from_cpuid(0x19, 0xA0) is Product.GENOA
    assert amd.product_from_cpuid(0x1A, 0x02) is Product.TURIN
    assert amd.product_from_cpuid(0x1A, 0x11) is Product.TURIN
    assert amd.product_from_cpuid(0x17, 0x31) is None  # Rome: no SEV-SNP
