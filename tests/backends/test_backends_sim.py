"""sim-snp and sim-tdx: simulated evidence that the real verifiers accept when told to trust the simulator."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.backends import BackendUnavailable, EvidenceKind, InvalidBinding, SimBackend, create_backend
from donjon.backends.sim import SIM_VENDOR_ENV, load_or_create_sim_vendor, sim_root_path

BINDING = bytes(range(64))


def test_sim_snp_evidence_verifies_against_the_simulated_root(sim_amd):
    verify = pytest.importorskip("donjon.attestation.verify")
    backend = SimBackend("sim-snp", vendor=sim_amd, report_options={"measurement": b"\x42" * 48})
    ev = backend.evidence(BINDING)
    assert ev.kind is EvidenceKind.SNP_REPORT
    assert ev.simulated and ev.provider == "sim-snp"
    assert len(ev.certs) == 3
    verified = verify.verify_evidence(
        ev.kind.value,
        ev.data,
        certs=ev.certs,
        roots=sim_amd.trust_roots(),
        at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert verified.claims.report_data == BINDING
    assert verified.claims.measurement == b"\x42" * 48
    assert verified.claims.simulated


def test_sim_snp_evidence_is_refused_without_trusting_the_simulator(sim_amd):
    verify = pytest.importorskip("donjon.attestation.verify")
    from donjon.attestation.errors import AttestationError

    ev = SimBackend("sim-snp", vendor=sim_amd).evidence(BINDING)
    with pytest.raises(AttestationError):
        verify.verify_evidence(
            ev.kind.value,
            ev.data,
            certs=ev.certs,
            roots=verify.TrustRoots(),
            at=datetime(2030, 1, 1, tzinfo=UTC),
        )


def test_sim_tdx_evidence_verifies_against_the_simulated_root(sim_intel):
    dcap_verify = pytest.importorskip("donjon.attestation.dcap_verify")
    ev = SimBackend("sim-tdx", vendor=sim_intel).evidence(BINDING)
    assert ev.kind is EvidenceKind.TDX_QUOTE
    assert ev.simulated
    assert len(ev.certs) == 3
    verified = dcap_verify.verify_tdx_quote(
        ev.data,
        collateral=sim_intel.collateral(),
        roots=[sim_intel.root],
        at=sim_intel.issued_at + timedelta(days=1),
        report_data=BINDING,
    )
    assert verified.claims.simulated


def test_sim_rejects_a_bad_binding(sim_intel):
    with pytest.raises(InvalidBinding):
        SimBackend("sim-tdx", vendor=sim_intel).evidence(b"x")


def test_simulator_refusal_is_an_evidence_error(sim_intel):
    from donjon.backends import EvidenceError

    backend = SimBackend("sim-tdx", vendor=sim_intel, report_options={"version": 3})
    with pytest.raises(EvidenceError, match="simulator refused"):
        backend.evidence(BINDING)


def test_probe_says_it_is_not_a_tee():
    availability = SimBackend("sim-snp").probe()
    assert availability.usable
    assert "NOT a TEE" in availability.reason
    assert SIM_VENDOR_ENV in availability.reason


def test_vendor_directory_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(SIM_VENDOR_ENV, str(tmp_path))
    assert SimBackend("sim-snp").vendor_dir == tmp_path
    assert create_backend("sim-tdx").vendor_dir == tmp_path  # type: ignore[attr-defined]
    assert str(tmp_path) in SimBackend("sim-snp").probe().reason


def test_sim_tdx_vendor_is_saved_once_and_shared_through_the_directory(tmp_path):
    dcap_verify = pytest.importorskip("donjon.attestation.dcap_verify")
    first = load_or_create_sim_vendor("sim-tdx", tmp_path / "vendor")
    vendor_file = tmp_path / "vendor/sim-tdx-vendor.json"
    root = sim_root_path("sim-tdx", tmp_path / "vendor")
    assert stat.S_IMODE(vendor_file.stat().st_mode) == 0o600
    assert root.read_bytes() == first.root.public_bytes(serialization.Encoding.PEM)
    # The Keep (another process in real life) signs with the vendor it loads from the directory...
    ev = SimBackend("sim-tdx", vendor_dir=tmp_path / "vendor").evidence(BINDING)
    # ...and the Steward verifies with the root and collateral of the vendor it loads from there.
    steward_side = load_or_create_sim_vendor("sim-tdx", tmp_path / "vendor")
    assert steward_side is not first and steward_side.root == first.root
    verified = dcap_verify.verify_tdx_quote(
        ev.data,
        collateral=steward_side.collateral(),
        roots=x509.load_pem_x509_certificates(root.read_bytes()),
        at=datetime.now(UTC),
        report_data=BINDING,
    )
    assert verified.claims.simulated


def test_sim_snp_vendor_is_loaded_from_the_directory(tmp_path, sim_amd, monkeypatch):
    verify = pytest.importorskip("donjon.attestation.verify")
    from donjon.attestation.simsnp import SimulatedAmd

    saved = sim_amd.dump()
    (tmp_path / "sim-snp-vendor.json").write_bytes(saved)
    # SimulatedAmd.load re-validates three RSA-4096 keys (seconds); its round trip is its
    # owner's test. Here: the directory mechanics hand it exactly the saved bytes.
    seen = []

    def fast_load(data):
        seen.append(data)
        return sim_amd

    monkeypatch.setattr(SimulatedAmd, "load", staticmethod(fast_load))
    loaded = load_or_create_sim_vendor("sim-snp", tmp_path)
    assert seen == [saved]
    assert loaded.ark == sim_amd.ark
    root = sim_root_path("sim-snp", tmp_path)
    assert root.exists()  # written on load when missing
    ev = SimBackend("sim-snp", vendor_dir=tmp_path).evidence(BINDING)
    roots = verify.TrustRoots.from_bytes(extra_trusted=[root.read_bytes()])
    verified = verify.verify_evidence(
        ev.kind.value, ev.data, certs=ev.certs, roots=roots, at=datetime(2030, 1, 1, tzinfo=UTC)
    )
    assert verified.claims.report_data == BINDING


def test_a_corrupt_vendor_file_is_refused(tmp_path):
    (tmp_path / "sim-snp-vendor.json").write_text("{}")
    with pytest.raises(BackendUnavailable, match="not a saved simulated vendor"):
        load_or_create_sim_vendor("sim-snp", tmp_path)


def test_per_process_vendor_is_shared():
    assert load_or_create_sim_vendor("sim-tdx") is load_or_create_sim_vendor("sim-tdx")


def test_unknown_simulator_name():
    with pytest.raises(ValueError):
        SimBackend("sim-sgx")
    with pytest.raises(ValueError):
        load_or_create_sim_vendor("sim-sgx")


def test_publishing_a_vendor_file_never_overwrites_and_leaves_no_temporary(tmp_path):
    from donjon.backends.sim import _write_new

    target = tmp_path / "sim-tdx-vendor.json"
    assert _write_new(target, b"first", 0o600)
    assert not _write_new(target, b"second", 0o600)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["sim-tdx-vendor.json"]


def test_a_directory_where_another_process_won_the_race_is_loaded(tmp_path, sim_intel):
    # The other process published its vendor first: this one must use it, not its own.
    (tmp_path / "sim-tdx-vendor.json").write_bytes(sim_intel.dump())
    vendor = load_or_create_sim_vendor("sim-tdx", tmp_path)
    assert vendor.root == sim_intel.root
    assert sim_root_path("sim-tdx", tmp_path).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim-tdx-root.pem", "sim-tdx-vendor.json"]
