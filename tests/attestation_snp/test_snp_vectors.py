"""Real SEV-SNP evidence (../shared/vectors) verifies to AMD's real roots, with the recorded values.

Each bundle is a row of VERIFY_TIMES.tsv (plus the Azure reports MANIFEST.tsv
marks "VERIFY PASS"); each expected value is copied from the evidence file's
MANIFEST.tsv row, abbreviations ("d49554ec717f...541eb6") included, and a test
checks that it still is there, so the expectations cannot drift from their
recorded source.
"""

# ruff: noqa: E501  (recorded hex values are kept whole, as MANIFEST.tsv writes them)

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from donjon.attestation.amd import Product, parse_endorsement_key
from donjon.attestation.claims import TcbStatus, TeeType
from donjon.attestation.errors import VerificationFailed
from donjon.attestation.pki import load_certificates
from donjon.attestation.snp import SnpOptions, decode_tcb, parse_report
from donjon.attestation.verify import TrustRoots, verify_evidence

#: The "now" of bundles whose source says "now" (fixed, so the tests are reproducible).
TODAY = datetime(2026, 11, 29, tzinfo=UTC)


@dataclass(frozen=True)
class Bundle:
    name: str  # VERIFY_TIMES.tsv bundle name (or the evidence file for extra MANIFEST rows)
    evidence: str
    certs: tuple[str, ...]
    at: datetime
    product: Product
    options: SnpOptions = field(default_factory=SnpOptions)
    expect: dict[str, str] = field(default_factory=dict)  # field -> value as written in MANIFEST.tsv
    tcb: dict[str, str] = field(default_factory=dict)  # reported/current/committed/launch -> raw hex
    manifest_row: str | None = None  # the MANIFEST.tsv row holding the values, if not the evidence's


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


BUNDLES = [
    Bundle(
        "snp-gosev-milan",
        "snp/gosevguest/attestation.bin",
        ("snp/gosevguest/vcek_milan.der",),
        _t("2022-09-24T01:00:00Z"),
        Product.MILAN,
        SnpOptions(allow_debug=True),  # MANIFEST: "policy has debug+smt"
        {
            "chip_id": "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d",
            "measurement": "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
            "report_data": "0102030405",
            "report_id": "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a",
            "vmpl": "0",
        },
        {"reported": "4405000000000002", "current": "4405000000000002", "launch": "4405000000000002"},
    ),
    Bundle(
        "snp-virtee-milan",
        "snp/virtee_sev/report_milan.hex",
        ("snp/virtee_sev/vcek_milan.der",),
        TODAY,
        Product.MILAN,
        SnpOptions(),
        {
            "chip_id": "d49554ec717f...541eb6",
            "measurement": "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
            "report_data": "d447b55d...93ebfd",
            "policy": "0x30000",
        },
        {"reported": "7308000000000003"},
    ),
    Bundle(
        "snp-trustee-milan",
        "snp/trustee/test-report.bin",
        ("snp/trustee/test-vcek.der",),
        TODAY,
        Product.MILAN,
        SnpOptions(),
        {
            "chip_id": "c38427a30d4c...77524e",
            "measurement": "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
            "report_data": "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e2",
            "policy": "0x3001f",
            "vmpl": "0",
        },
        {
            "reported": "7308000000000003",
            "committed": "7308000000000003",
            "launch": "7308000000000003",
            "current": "ce08000000000003",
        },
    ),
    Bundle(
        "snp-trustee-vlek",
        "snp/trustee/test-vlek-report.bin",
        ("snp/trustee/test-vlek.der",),
        _t("2025-06-01T00:00:00Z"),
        Product.MILAN,
        SnpOptions(max_vmpl=1),  # MANIFEST: vmpl=1
        {
            "chip_id": "masked",
            "measurement": "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
            "report_data": "819770b7...a7bc27ca",
            "policy": "0x30000",
            "vmpl": "1",
            "signing_key": "vlek",
        },
        {"reported": "d918000000000004"},
    ),
    Bundle(
        "snp-trustee-genoa-e2e",
        "snp/trustee/e2e-evidence.report.bin",
        ("snp/trustee/e2e-evidence.vcek.der",),
        TODAY,
        Product.GENOA,
        SnpOptions(),
        {
            "measurement": "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e",
            "report_data": "7e7320889600c7ac...0cf9b0",
            "policy": "0x30000",
        },
        manifest_row="snp/trustee/e2e-evidence.json",
    ),
    Bundle(
        "snp-azure-milan",
        "snp/trustee_azure/hcl-report.snp-report.bin",
        ("snp/trustee_azure/vcek.pem",),
        TODAY,
        Product.MILAN,
        SnpOptions(),
        {
            "measurement": "9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315",
            "report_data": "b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac",
            "policy": "0x3001f",
            "vmpl": "0",
        },
        {"reported": "7308000000000003"},
    ),
    Bundle(
        "snp-azure-genoa",
        "snp/trustee_azure/evidence-genoa.snp-report.bin",
        ("snp/trustee_azure/evidence-genoa.vcek.der",),
        TODAY,
        Product.GENOA,
        SnpOptions(),
        {"policy": "0x3001f", "vmpl": "0"},
        {"reported": "541700000000000a"},
    ),
    *[
        Bundle(
            f"snp/trustee_azure/evidence-{v}.snp-report.bin",
            f"snp/trustee_azure/evidence-{v}.snp-report.bin",
            (f"snp/trustee_azure/evidence-{v}.vcek.der",),
            TODAY,
            Product.MILAN,
            SnpOptions(),
            {"policy": "0x3001f", "vmpl": "0"},
            {"reported": "db18000000000004"},
        )
        for v in ("v0", "v1", "v2")
    ],
]
IDS = [b.name.rsplit("/", 1)[-1] for b in BUNDLES]


def read_evidence(vectors: Path, name: str) -> bytes:
    data = (vectors / name).read_bytes()
    return bytes.fromhex(data.decode()) if name.endswith(".hex") else data


def certs_of(vectors: Path, bundle: Bundle) -> list[bytes]:
    return [(vectors / c).read_bytes() for c in bundle.certs]


def manifest(vectors: Path) -> dict[str, str]:
    with (vectors / "MANIFEST.tsv").open(newline="") as f:
        return {row["local_path"]: row["expected"] for row in csv.DictReader(f, delimiter="\t")}


def matches(recorded: str, actual: str) -> bool:
    """``recorded`` as MANIFEST writes it: full hex, a prefix, or ``prefix...suffix``."""
    if "..." in recorded:
        head, tail = recorded.split("...")
        return actual.startswith(head) and actual.endswith(tail)
    return actual.startswith(recorded)


def verify(
    vectors: Path, bundle: Bundle, roots: TrustRoots, *, at: datetime | None = None, **changes: object
):
    options = bundle.options if not changes else SnpOptions(**{**bundle.options.__dict__, **changes})
    return verify_evidence(
        "snp-report",
        read_evidence(vectors, bundle.evidence),
        certs=certs_of(vectors, bundle),
        roots=roots,
        at=at or bundle.at,
        options=options,
    )


def test_every_snp_bundle_of_verify_times_is_covered(vectors: Path) -> None:
    with (vectors / "VERIFY_TIMES.tsv").open(newline="") as f:
        rows = {
            row["bundle"]: row
            for row in csv.DictReader(f, delimiter="\t")
            if row["bundle"].startswith("snp-")
        }
    assert set(rows) <= {b.name for b in BUNDLES}
    for bundle in BUNDLES:
        if bundle.name in rows:
            assert rows[bundle.name]["evidence"].split(" ")[0] == bundle.evidence
            suggested = rows[bundle.name]["suggested_time_utc"]
            if bundle.at is not TODAY:
                assert bundle.at.isoformat().replace("+00:00", "Z") in suggested


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_expectations_are_the_recorded_ones(vectors: Path, bundle: Bundle) -> None:
    recorded = manifest(vectors)[bundle.manifest_row or bundle.evidence]
    for value in bundle.expect.values():
        if value not in ("masked", "vcek", "vlek") and not value.isdigit():
            assert value in recorded, value
    for value in bundle.tcb.values():
        assert f"0x{value}" in recorded, value


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_real_report_verifies_with_recorded_values(
    vectors: Path, amd_roots: TrustRoots, bundle: Bundle
) -> None:
    verified = verify(vectors, bundle, amd_roots)
    claims = verified.claims
    assert claims.tee is TeeType.SNP
    assert claims.platform == bundle.product.value
    assert claims.tcb_status is TcbStatus.UP_TO_DATE
    assert claims.simulated is False
    assert verified.verified_at == bundle.at
    raw = claims.raw
    for name, value in bundle.expect.items():
        if name == "chip_id":
            assert (raw["chip_id"] == "masked") if value == "masked" else matches(value, raw["chip_id"].hex())
        elif name in ("measurement", "report_data"):
            assert matches(value, getattr(claims, name).hex()), name
        elif name == "report_id":
            assert raw["report_id"].hex() == value
        elif name == "policy":
            assert raw["policy"] == int(value, 16)
        elif name == "vmpl":
            assert raw["vmpl"] == int(value)
        elif name == "signing_key":
            assert raw["signing_key"] == value
    for name, value in bundle.tcb.items():
        assert raw[f"{name}_tcb_raw"] == value
    assert raw["signing_key"] == bundle.expect.get("signing_key", "vcek")


def test_gosev_decoded_tcb_is_the_recorded_one(vectors: Path) -> None:
    # MANIFEST: TCB=4901323769462652930 (0x4405000000000002: bl=2 tee=0 snp=5 ucode=0x44=68).
    report = parse_report((vectors / "snp/gosevguest/attestation.bin").read_bytes())
    assert report.reported_tcb == 4901323769462652930
    tcb = decode_tcb(report.reported_tcb, Product.MILAN)
    assert (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode) == (2, 0, 5, 68)
    assert report.version == 2 and report.cpuid_fam_id is None and report.launch_mit_vector is None
    assert report.debug


def test_genoa_e2e_cpuid_names_genoa(vectors: Path) -> None:
    # MANIFEST: "cpuid fam=0x19 model=0xA0 step=2 -> KDS product Genoa".
    report = parse_report((vectors / "snp/trustee/e2e-evidence.report.bin").read_bytes())
    assert (report.cpuid_fam_id, report.cpuid_mod_id, report.cpuid_step) == (0x19, 0xA0, 2)
    assert report.cpuid_product is Product.GENOA


def test_vlek_expired_today(vectors: Path, amd_roots: TrustRoots) -> None:
    # MANIFEST: the VLEK is valid 2024-12-10T22:14:21Z..2025-12-10T22:14:21Z only.
    bundle = next(b for b in BUNDLES if b.name == "snp-trustee-vlek")
    with pytest.raises(VerificationFailed) as e:
        verify(vectors, bundle, amd_roots, at=datetime.now(UTC))
    assert e.value.check == "snp.chain.expired"


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_outside_the_endorsement_key_validity_fails(
    vectors: Path, amd_roots: TrustRoots, bundle: Bundle
) -> None:
    leaf = load_certificates(certs_of(vectors, bundle)[0])[0]
    with pytest.raises(VerificationFailed) as before:
        verify(vectors, bundle, amd_roots, at=leaf.not_valid_before_utc - timedelta(seconds=1))
    assert before.value.check == "snp.chain.not_yet_valid"
    with pytest.raises(VerificationFailed) as after:
        verify(vectors, bundle, amd_roots, at=leaf.not_valid_after_utc + timedelta(seconds=1))
    assert after.value.check == "snp.chain.expired"


def test_vcek_hwid_encodings(vectors: Path) -> None:
    # MANIFEST: test-vcek-invalid-legacy has hwID as raw 64 bytes 000102..3f, -new as DER OCTET STRING.
    expected = bytes(range(64))
    for name in ("test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"):
        cert = load_certificates((vectors / "snp/trustee" / name).read_bytes())[0]
        assert parse_endorsement_key(cert).hwid == expected


def test_turin_vcek_has_fmc_and_short_hwid(vectors: Path) -> None:
    key = parse_endorsement_key(
        load_certificates((vectors / "snp/virtee_sev/vcek_turin.der").read_bytes())[0]
    )
    assert key.product is Product.TURIN
    assert key.fmc is not None
    assert key.hwid is not None and len(key.hwid) == 8
