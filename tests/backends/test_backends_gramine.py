"""sgx through Gramine's /dev/attestation: an emulation, and a static directory of real files."""

from __future__ import annotations

import errno

import pytest

from donjon.backends import (
    BackendUnavailable,
    EvidenceError,
    EvidenceKind,
    GramineBackend,
    MalformedPlatformOutput,
)

# REPORTDATA of an SGX quote v3: header (48) + offset 320 in the enclave report body.
RD = slice(368, 432)


@pytest.fixture
def occlum(vectors):
    return (vectors / "sgx/trustee/occlum_quote.dat").read_bytes()


def test_real_quote_decodes(occlum, gramine_fs):
    fs = gramine_fs(lambda user_data: occlum)
    binding = occlum[RD]
    ev = GramineBackend(fs=fs).evidence(binding)
    assert ev.kind is EvidenceKind.SGX_QUOTE
    assert ev.data == occlum
    assert ev.provider == "gramine-dcap"
    assert ev.backend == "sgx"
    assert len(ev.certs) == 3
    assert fs.user_report_data == binding
    assert fs.quotes_made == 1


def test_quote_binding_something_else_is_refused(occlum, gramine_fs):
    fs = gramine_fs(lambda user_data: occlum)
    with pytest.raises(MalformedPlatformOutput, match="binds 74657374"):
        GramineBackend(fs=fs).evidence(bytes(range(64)))


def test_probe_usable_with_dcap(gramine_fs, occlum):
    availability = GramineBackend(fs=gramine_fs(lambda d: occlum)).probe()
    assert availability.usable
    assert "DCAP" in availability.reason


@pytest.mark.parametrize(
    ("kind", "text"),
    [("none", "without remote attestation"), ("epid", "end of life"), ("weird", "unknown")],
)
def test_other_attestation_types_are_not_usable(gramine_fs, occlum, kind, text):
    fs = gramine_fs(lambda d: occlum, attestation_type=kind)
    backend = GramineBackend(fs=fs)
    availability = backend.probe()
    assert not availability.usable
    assert text in availability.reason
    assert 'sgx.remote_attestation = "dcap"' in (availability.fix or "")
    with pytest.raises(BackendUnavailable, match=text):
        backend.evidence(occlum[RD])
    assert fs.quotes_made == 0


def test_not_under_gramine(gramine_fs, occlum):
    backend = GramineBackend(fs=gramine_fs(lambda d: occlum, present=False))
    availability = backend.probe()
    assert not availability.usable
    assert "not running under Gramine SGX" in availability.reason
    with pytest.raises(BackendUnavailable, match="not running under Gramine SGX"):
        backend.evidence(occlum[RD])


def test_quote_failure_points_at_aesm(gramine_fs, occlum):
    fs = gramine_fs(lambda d: occlum)
    fs.faults["read:quote"] = errno.EIO
    with pytest.raises(EvidenceError, match="reading quote") as info:
        GramineBackend(fs=fs).evidence(occlum[RD])
    assert "AESM" in (info.value.fix or "")
    assert info.value.errno == errno.EIO


def test_oversized_quote_is_refused(gramine_fs):
    fs = gramine_fs(lambda d: bytes(100_000))
    with pytest.raises(EvidenceError) as info:
        GramineBackend(fs=fs).evidence(bytes(64))
    assert info.value.errno == errno.EFBIG


def test_empty_quote_is_malformed(gramine_fs):
    with pytest.raises(MalformedPlatformOutput, match="empty"):
        GramineBackend(fs=gramine_fs(lambda d: b"")).evidence(bytes(64))


def test_real_files_in_a_directory(tmp_path, occlum):
    # The os-backed path over real files: a static quote stands in for Gramine's.
    (tmp_path / "attestation_type").write_text("dcap\n")
    (tmp_path / "user_report_data").write_bytes(bytes(64))
    (tmp_path / "quote").write_bytes(occlum)
    backend = GramineBackend(root=tmp_path)
    assert backend.probe().usable
    ev = backend.evidence(occlum[RD])
    assert ev.data == occlum
    assert (tmp_path / "user_report_data").read_bytes() == occlum[RD]


def test_missing_directory_on_disk(tmp_path):
    assert "not running under Gramine SGX" in GramineBackend(root=tmp_path / "attestation").probe().reason
