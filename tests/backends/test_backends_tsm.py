"""snp/tdx/cca over configfs-tsm, run unchanged against an emulation of the kernel's report.c."""

from __future__ import annotations

import errno
from datetime import UTC, datetime

import pytest

from donjon.backends import (
    BackendUnavailable,
    EvidenceError,
    EvidenceKind,
    GenerationRace,
    InvalidBinding,
    MalformedPlatformOutput,
    TsmBackend,
)
from donjon.backends.base import Availability
from donjon.backends.certtable import ARK_GUID, ASK_GUID, VCEK_GUID, build_cert_table

GOSEV_BINDING = bytes.fromhex("0102030405") + bytes(59)
OTHER_BINDING = bytes(range(64))


def _backend(kernel, name="snp", **kwargs):
    return TsmBackend(name, fs=kernel, **kwargs)


# --- decode path: real recorded evidence ------------------------------------------------------------------


def test_real_snp_report_and_certificate_table(vectors, tsm_kernel, platforms):
    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    vcek, ask, ark = platforms.milan_chain_der(vectors)
    table = build_cert_table([(VCEK_GUID, vcek), (ASK_GUID, ask), (ARK_GUID, ark)])
    kernel = tsm_kernel("sev_guest", platforms.recorded(report, table))

    ev = _backend(kernel).evidence(GOSEV_BINDING)

    assert ev.kind is EvidenceKind.SNP_REPORT
    assert ev.data == report
    assert ev.certs == (vcek, ask, ark)
    assert ev.provider == "sev_guest"
    assert ev.backend == "snp"
    assert ev.generation == 1
    assert ev.binding == GOSEV_BINDING
    assert not ev.simulated
    assert kernel.entries == {}
    assert kernel.removed == kernel.made and len(kernel.made) == 1


def test_padded_and_pem_certificates_in_the_table_come_out_as_der(vectors, tsm_kernel, platforms):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    vcek, ask, ark = platforms.milan_chain_der(vectors)
    ark_pem = x509.load_der_x509_certificate(ark).public_bytes(serialization.Encoding.PEM)
    table = build_cert_table([(VCEK_GUID, vcek + bytes(200)), (ASK_GUID, ask), (ARK_GUID, ark_pem)])
    kernel = tsm_kernel("sev_guest", platforms.recorded(report, table))
    assert _backend(kernel).evidence(GOSEV_BINDING).certs == (vcek, ask, ark)


def test_garbage_in_the_certificate_table_is_malformed(vectors, tsm_kernel, platforms):
    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    table = build_cert_table([(VCEK_GUID, b"\x30\x03abc-not-a-cert")])
    kernel = tsm_kernel("sev_guest", platforms.recorded(report, table))
    with pytest.raises(MalformedPlatformOutput, match=r"not X\.509"):
        _backend(kernel).evidence(GOSEV_BINDING)
    assert kernel.entries == {}


def test_snp_without_auxblob_certificates_has_no_certs(vectors, tsm_kernel, platforms):
    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    kernel = tsm_kernel("sev_guest", platforms.recorded(report, b""))
    assert _backend(kernel).evidence(GOSEV_BINDING).certs == ()


def test_real_tdx_v5_quote(vectors, tsm_kernel, platforms):
    from cryptography import x509

    quote = (vectors / "tdx/gotdxguest/quote_v5_sample.dat").read_bytes()
    binding = quote[48 + 6 + 520 : 48 + 6 + 584]
    kernel = tsm_kernel("tdx_guest", platforms.recorded(quote))

    ev = _backend(kernel, "tdx").evidence(binding)

    assert ev.kind is EvidenceKind.TDX_QUOTE
    assert ev.data == quote
    assert ev.provider == "tdx_guest"
    assert len(ev.certs) == 3
    leaf = x509.load_der_x509_certificate(ev.certs[0])
    assert "Intel SGX PCK Certificate" in leaf.subject.rfc4514_string()
    assert kernel.entries == {}


def test_real_cca_token(vectors, tsm_kernel, platforms):
    token = (vectors / "cca/ccatoken/cca_token.cbor").read_bytes()
    kernel = tsm_kernel("arm_cca_guest", platforms.recorded(token))
    ev = _backend(kernel, "cca").evidence(OTHER_BINDING)
    assert ev.kind is EvidenceKind.CCA_TOKEN
    assert ev.data == token
    assert ev.certs == ()
    assert ev.provider == "arm_cca_guest"


def test_evidence_that_binds_something_else_is_refused(vectors, tsm_kernel, platforms):
    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    kernel = tsm_kernel("sev_guest", platforms.recorded(report))
    with pytest.raises(MalformedPlatformOutput, match="binds 0102030405"):
        _backend(kernel).evidence(OTHER_BINDING)
    assert kernel.entries == {}


# --- the kernel's protocol ----------------------------------------------------------------------------------


def test_privlevel_is_written_before_inblob_and_counted(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)
    ev = _backend(kernel, privlevel=2).evidence(OTHER_BINDING)
    assert ev.generation == 2
    assert int.from_bytes(ev.data[0x30:0x34], "little") == 2
    assert kernel.reports_generated == 1


def test_privlevel_below_the_floor_is_explained(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp, privlevel_floor=2)
    with pytest.raises(EvidenceError, match="privlevel_floor") as info:
        _backend(kernel, privlevel=1).evidence(OTHER_BINDING)
    assert info.value.errno == errno.EINVAL
    assert kernel.entries == {}


def test_a_concurrent_writer_causes_a_retry_in_a_fresh_entry(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)
    interfered = []

    def other_writer(k, entry, attribute):
        if attribute == "inblob" and not interfered:
            interfered.append(entry)
            k.after_write = None
            k.write_file(f"{entry}/inblob", b"\xee" * 64)
            k.after_write = other_writer

    kernel.after_write = other_writer
    ev = _backend(kernel).evidence(OTHER_BINDING)
    assert ev.data[0x50:0x90] == OTHER_BINDING
    assert len(kernel.made) == 2 and kernel.made[0] == interfered[0]
    assert kernel.entries == {}


def test_a_writer_that_never_stops_is_a_generation_race(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)

    def other_writer(k, entry, attribute):
        if attribute == "inblob":
            k.entries[entry].write_generation += 1

    kernel.after_write = other_writer
    with pytest.raises(GenerationRace, match="each of 4 attempts"):
        _backend(kernel, max_attempts=4).evidence(OTHER_BINDING)
    assert len(kernel.made) == 4
    assert kernel.entries == {}


def test_provider_of_another_tee_is_refused_with_the_right_backend_named(tsm_kernel, platforms):
    kernel = tsm_kernel("tdx_guest", platforms.synthetic_snp)
    backend = _backend(kernel, "snp")
    availability = backend.probe()
    assert not availability.usable
    assert "tdx_guest" in availability.reason
    assert availability.fix == "use backend tdx"
    with pytest.raises(BackendUnavailable, match="tdx_guest"):
        backend.evidence(OTHER_BINDING)
    assert kernel.entries == {}


def test_unknown_provider_is_refused(tsm_kernel, platforms):
    kernel = tsm_kernel("riscv_cove_guest", platforms.synthetic_snp)
    assert "unknown configfs-tsm provider" in _backend(kernel).probe().reason


@pytest.mark.parametrize(
    ("fault", "code", "error", "text", "fix"),
    [
        ("mkdir", errno.ENXIO, BackendUnavailable, "no TSM provider", "modprobe sev-guest"),
        ("mkdir", errno.EACCES, BackendUnavailable, "permission denied", "run as root"),
        ("read:outblob", errno.EIO, EvidenceError, "failed to produce", "sev-guest"),
        ("read:outblob", errno.EBUSY, EvidenceError, "busy", "retry"),
        ("write:inblob", errno.EBUSY, EvidenceError, "busy", "retry"),
        ("read:outblob", errno.ETIMEDOUT, EvidenceError, "did not answer", "retry"),
        ("read:auxblob", errno.EFBIG, MalformedPlatformOutput, "maximum", None),
        ("read:generation", errno.ENOMEM, EvidenceError, "reading generation", None),
    ],
)
def test_kernel_errors_become_clear_errors(tsm_kernel, platforms, fault, code, error, text, fix):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)
    kernel.faults[fault] = code
    with pytest.raises(error, match=text) as info:
        _backend(kernel).evidence(OTHER_BINDING)
    assert info.value.errno == code
    if fix is not None:
        assert fix in (info.value.fix or "")
    assert kernel.entries == {}


def test_tdx_io_error_points_at_the_quote_generation_service(tsm_kernel, platforms, vectors):
    quote = (vectors / "tdx/gotdxguest/quote_v5_sample.dat").read_bytes()
    kernel = tsm_kernel("tdx_guest", platforms.recorded(quote))
    kernel.faults["read:outblob"] = errno.EIO
    with pytest.raises(EvidenceError) as info:
        _backend(kernel, "tdx").evidence(OTHER_BINDING)
    assert "QGS" in (info.value.fix or "")


def test_an_outblob_larger_than_the_limit_is_refused(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)
    with pytest.raises(MalformedPlatformOutput) as info:
        _backend(kernel, max_blob=1000).evidence(OTHER_BINDING)
    assert info.value.errno == errno.EFBIG


def test_an_empty_outblob_is_malformed(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.recorded(b""))
    with pytest.raises(MalformedPlatformOutput, match="outblob is empty"):
        _backend(kernel).evidence(OTHER_BINDING)


def test_a_failed_rmdir_does_not_hide_the_evidence(tsm_kernel, platforms, caplog):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)
    kernel.faults["rmdir"] = errno.EBUSY
    ev = _backend(kernel).evidence(OTHER_BINDING)
    assert ev.data[0x50:0x90] == OTHER_BINDING
    assert "could not remove" in caplog.text


def test_bad_binding_is_refused_before_touching_the_kernel(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)
    with pytest.raises(InvalidBinding):
        _backend(kernel).evidence(bytes(32))
    assert kernel.made == []


def test_the_emulated_kernel_refuses_outblob_before_inblob(tsm_kernel, platforms):
    # The emulation itself follows report.c: read_cached_report returns -EINVAL without an inblob.
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)
    kernel.mkdir("e")
    with pytest.raises(OSError) as info:
        kernel.read_file("e/outblob", 1 << 20)
    assert info.value.errno == errno.EINVAL


def test_reading_auxblob_after_outblob_does_not_regenerate(tsm_kernel, vectors, platforms):
    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    kernel = tsm_kernel("sev_guest", platforms.recorded(report, b""))
    _backend(kernel).evidence(GOSEV_BINDING)
    assert kernel.reports_generated == 1


# --- probe ------------------------------------------------------------------------------------------------


def test_probe_of_a_working_kernel_generates_no_report(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp)
    availability = _backend(kernel).probe()
    assert availability.usable
    assert "sev_guest" in availability.reason
    assert kernel.reports_generated == 0
    assert len(kernel.made) == 1 and kernel.entries == {}


def test_probe_without_provider_explains(tsm_kernel, platforms):
    kernel = tsm_kernel(None, platforms.synthetic_snp)
    availability = _backend(kernel, "tdx").probe()
    assert not availability.usable
    assert "tdx-guest" in availability.reason
    assert availability.fix == "modprobe tdx-guest (inside an Intel TDX guest)"


def test_missing_report_directory_uses_the_explanation(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp, present=False)
    explained = Availability(usable=False, reason="configfs is not mounted", fix="mount it")
    backend = _backend(kernel, explain_absence=lambda: explained)
    assert backend.probe() == explained
    with pytest.raises(BackendUnavailable, match="configfs is not mounted"):
        backend.evidence(OTHER_BINDING)


def test_missing_report_directory_without_explanation_still_says_why(tsm_kernel, platforms):
    kernel = tsm_kernel("sev_guest", platforms.synthetic_snp, present=False)
    availability = _backend(kernel).probe()
    assert not availability.usable
    assert "6.7" in availability.reason
    assert "mount -t configfs none /sys/kernel/config" in (availability.fix or "")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("bogus", {}), ("tdx", {"privlevel": 0}), ("snp", {"privlevel": 4}), ("snp", {"max_attempts": 0})],
)
def test_constructor_refuses_nonsense(name, kwargs):
    with pytest.raises(ValueError):
        TsmBackend(name, **kwargs)


# --- the whole path: simulator behind the fake kernel, then the real verifier ---------------------------


def test_simulated_snp_through_configfs_verifies_with_the_real_verifier(tsm_kernel, platforms, sim_amd):
    verify = pytest.importorskip("donjon.attestation.verify")
    kernel = tsm_kernel("sev_guest", platforms.sim_snp(sim_amd))
    ev = _backend(kernel, privlevel=0).evidence(OTHER_BINDING)
    assert len(ev.certs) == 3
    verified = verify.verify_evidence(
        ev.kind.value,
        ev.data,
        certs=ev.certs,
        roots=sim_amd.trust_roots(),
        at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert verified.claims.report_data == OTHER_BINDING
    assert verified.claims.simulated
