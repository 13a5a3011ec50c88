"""The seam itself: bindings, Evidence, names shared with the config and the verifier."""

from __future__ import annotations

import dataclasses

import pytest

from donjon.backends import (
    BACKEND_NAMES,
    BINDING_SIZE,
    Backend,
    Evidence,
    EvidenceKind,
    InvalidBinding,
    NilBackend,
    UnattestedBackend,
    check_binding,
    create_backend,
)
from donjon.backends.platform import PlatformRoots


@pytest.mark.parametrize("size", [0, 1, 32, 63, 65, 128])
def test_binding_of_wrong_size_is_refused(size):
    with pytest.raises(InvalidBinding, match=f"exactly 64 bytes, got {size}"):
        check_binding(bytes(size), backend="x")


@pytest.mark.parametrize("value", ["a" * 64, None, 64, list(range(64))])
def test_binding_that_is_not_bytes_is_refused(value):
    with pytest.raises(InvalidBinding, match="must be bytes"):
        check_binding(value, backend="x")


def test_binding_is_a_value_error_too():
    with pytest.raises(ValueError):
        check_binding(b"short", backend="x")


def test_binding_of_64_bytes_is_returned_as_bytes():
    assert BINDING_SIZE == 64
    assert check_binding(bytearray(range(64)), backend="x") == bytes(range(64))


def _evidence(**changes):
    fields = dict(
        kind=EvidenceKind.SNP_REPORT, data=b"r", binding=bytes(64), backend="snp", provider="sev_guest"
    )
    fields.update(changes)
    return Evidence(**fields)


def test_evidence_is_frozen():
    ev = _evidence()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.data = b"other"  # type: ignore[misc]


def test_evidence_refuses_a_bad_binding_and_empty_data():
    with pytest.raises(InvalidBinding):
        _evidence(binding=bytes(63))
    with pytest.raises(ValueError, match="empty"):
        _evidence(data=b"")


def test_evidence_summary_describes_without_the_bytes():
    summary = _evidence(data=b"\x01" * 1184, certs=(b"a", b"b")).summary()
    assert summary["size"] == 1184
    assert summary["certs"] == 2
    assert summary["kind"] == "snp-report"
    assert len(summary["sha256"]) == 64


def test_evidence_kinds_match_the_attestation_library():
    verify = pytest.importorskip("donjon.attestation.verify")
    assert {k.value for k in EvidenceKind} == {k.value for k in verify.EvidenceKind}


def test_backend_names_match_the_config_allow_list():
    from donjon.config.model import BACKEND_NAMES as CONFIG_NAMES

    assert set(BACKEND_NAMES) == set(CONFIG_NAMES)


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_every_backend_implements_the_protocol(name, tmp_path):
    backend = create_backend(name, roots=PlatformRoots.under(tmp_path))
    assert isinstance(backend, Backend)
    assert backend.name == name
    assert backend.attested is (name != "nil")
    assert backend.simulated is name.startswith("sim-")


def test_nil_is_usable_and_unattested():
    nil = NilBackend()
    availability = nil.probe()
    assert availability.usable
    assert not nil.attested
    with pytest.raises(UnattestedBackend, match="nil is unattested") as info:
        nil.evidence(bytes(64))
    assert info.value.fix and "sim-snp" in info.value.fix


def test_nil_checks_the_binding_before_refusing():
    with pytest.raises(InvalidBinding):
        NilBackend().evidence(bytes(10))


def test_every_evidence_kind_has_a_csr_statement_type():
    oids = pytest.importorskip("donjon.oids")
    assert {k.value for k in EvidenceKind} <= set(oids.EVIDENCE_OID_BY_KIND)
