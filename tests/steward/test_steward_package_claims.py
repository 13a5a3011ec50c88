"""The package a certificate names: written by issuance (``package_entries``) only for a Keep a
signer rule admitted, with the package name as the ``package`` entry's ``vendorInfo``; read back
(``package_of``) strictly, so a ``[[secret]]`` signers rule sees exactly what the Steward wrote."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.dice import (
    MAX_PACKAGE_NAME_BYTES,
    WORKLOAD_VENDOR,
    DiceError,
    Fwid,
    PackageClaim,
    TcbInfo,
    decode_multi_tcb_info,
    encode_multi_tcb_info,
    package_of,
)
from donjon.steward.ca import CertificateAuthority, create_ca
from donjon.steward.errors import Refused
from donjon.steward.package_admission import package_entries
from donjon.steward.policy import Decision
from donjon.steward.secrets.release import client_identity

SIGNER = "sha256:" + "c1" * 32
MANIFEST = "sha256:" + "4d" * 32
RECORD = {"digest": MANIFEST, "signer": SIGNER, "name": "registry.example/team/app"}


def _decision(rule: str) -> Decision:
    return Decision(spiffe_path="/app", dns_names=(), lifetime=3600, simulated=False, fresh=True, rule=rule)


BY_SIGNER = _decision(f"signer {SIGNER} (workload {'ab' * 32})")


def test_issuance_names_package_signer_and_name_only_for_a_signer_admission() -> None:
    entries = package_entries(RECORD, BY_SIGNER)
    assert package_of(decode_multi_tcb_info(encode_multi_tcb_info(entries))) == PackageClaim(
        MANIFEST, SIGNER, "registry.example/team/app"
    )
    assert package_entries(RECORD, _decision(f"workload {'ab' * 32}")) == ()


@pytest.mark.parametrize("name", ["r.example/" + "a" * MAX_PACKAGE_NAME_BYTES, "r.example/\ud800", None])
def test_a_name_that_cannot_be_written_is_left_out_and_the_signer_stays(name: str | None) -> None:
    entries = package_entries({**RECORD, "name": name}, BY_SIGNER)  # type: ignore[dict-item]
    assert package_of(entries) == PackageClaim(MANIFEST, SIGNER, None)


def _entry(model: str, digest: bytes = b"\x01" * 32, *, vendor_info: bytes | None = None) -> TcbInfo:
    fwid = Fwid.of(digest)
    return TcbInfo(vendor=WORKLOAD_VENDOR, model=model, layer=2, fwids=(fwid,), vendor_info=vendor_info)


@pytest.mark.parametrize(
    "entries",
    [
        [_entry("package")],
        [_entry("package-signer")],
        [_entry("package"), _entry("package"), _entry("package-signer")],
        [_entry("package"), _entry("package-signer", bytes(48))],
        [_entry("package", vendor_info=b"\xff\xfe"), _entry("package-signer")],
        [_entry("package", vendor_info=b"r/" * MAX_PACKAGE_NAME_BYTES), _entry("package-signer")],
    ],
    ids=["no signer", "no package", "two packages", "sha384 signer", "name not UTF-8", "name too long"],
)
def test_entries_a_steward_never_writes_are_refused(entries: list[TcbInfo]) -> None:
    with pytest.raises(DiceError):
        package_of(entries)


def test_the_release_check_refuses_a_certificate_with_such_entries_as_unreadable_claims() -> None:
    key, cert = create_ca("test CA", now=datetime.now(UTC))
    ca = CertificateAuthority(key, cert, trust_domain="example.org")
    keep = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = keep.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = datetime.now(UTC)
    half = ca.issue(spki, spiffe_path="/app", dns_names=(), lifetime=600, now=now, dice=(_entry("package"),))
    with pytest.raises(Refused) as e:
        client_identity(half.der, cert, "example.org", now)
    assert e.value.check == "client.claims"
    whole = ca.issue(
        spki, spiffe_path="/app", dns_names=(), lifetime=600, now=now, dice=package_entries(RECORD, BY_SIGNER)
    )
    client = client_identity(whole.der, cert, "example.org", now)
    assert client.package == PackageClaim(MANIFEST, SIGNER, "registry.example/team/app")
    assert client.record()["package"] == RECORD
