"""Platform detection over fake host trees: why each backend does not work, and how to fix it."""

from __future__ import annotations

import pytest

from donjon.backends import PlatformRoots, create_backend
from donjon.backends.platform import cpu_flags, explain_tsm_absence, platform_hints


@pytest.fixture
def roots(tmp_path):
    return PlatformRoots.under(tmp_path)


def _write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_under_lays_out_every_root(tmp_path):
    r = PlatformRoots.under(tmp_path)
    assert r.tsm_report == tmp_path / "sys/kernel/config/tsm/report"
    assert r.gramine == tmp_path / "dev/attestation"
    assert r.proc == tmp_path / "proc"


def test_configfs_not_mounted(roots):
    availability = create_backend("snp", roots=roots).probe()
    assert not availability.usable
    assert availability.reason == f"configfs is not mounted at {roots.configfs}"
    assert availability.fix == f"mount -t configfs none {roots.configfs}"


def test_configfs_mounted_per_proc_mounts_but_no_tsm(roots):
    roots.configfs.mkdir(parents=True)
    _write(roots.proc / "mounts", f"configfs {roots.configfs} configfs rw,nosuid,nodev,noexec 0 0\n")
    availability = create_backend("tdx", roots=roots).probe()
    assert "kernel older than 6.7" in availability.reason
    assert "modprobe tdx-guest" in (availability.fix or "")


def test_configfs_with_other_subsystems_counts_as_mounted(roots):
    (roots.configfs / "usb_gadget").mkdir(parents=True)
    availability = create_backend("snp", roots=roots).probe()
    assert "kernel older than 6.7" in availability.reason
    assert "no TSM provider loaded" in availability.reason


def test_tsm_without_report_directory(roots):
    (roots.configfs / "tsm").mkdir(parents=True)
    availability = create_backend("cca", roots=roots).probe()
    assert "does not exist although" in availability.reason
    assert availability.fix == "modprobe arm-cca-guest (inside an Arm CCA realm)"


def test_hints_name_the_guest_devices_and_cpu_flags(roots):
    _write(roots.dev / "sev-guest")
    _write(
        roots.proc / "cpuinfo", "processor\t: 0\nflags\t\t: fpu sse2 hypervisor sev_snp\n\nprocessor\t: 1\n"
    )
    hints = platform_hints(roots)
    assert any("sev-guest exists: this is an AMD SEV-SNP guest" in h for h in hints)
    assert any("sev_snp" in h for h in hints)
    assert any("virtual machine" in h for h in hints)
    availability = create_backend("snp", roots=roots).probe()
    assert availability.hints == hints


def test_tdx_guest_hints(roots):
    _write(roots.dev / "tdx_guest")
    _write(roots.proc / "cpuinfo", "flags\t: fpu tdx_guest hypervisor\n")
    hints = platform_hints(roots)
    assert any("tdx_guest exists" in h for h in hints)
    assert any("CPU flag tdx_guest" in h for h in hints)


def test_bare_metal_hint(roots):
    _write(roots.proc / "cpuinfo", "flags\t: fpu sse2 sgx\n")
    assert any("bare metal" in h for h in platform_hints(roots))


def test_arm64_features_line_is_read(roots):
    _write(roots.proc / "cpuinfo", "processor\t: 0\nFeatures\t: fp asimd rme\n")
    assert cpu_flags(roots) == frozenset({"fp", "asimd", "rme"})


def test_no_cpuinfo_means_no_flags_and_no_crash(roots):
    assert cpu_flags(roots) == frozenset()
    assert platform_hints(roots) == ()


def test_explanation_is_direct_too(roots):
    availability = explain_tsm_absence(roots, "sev-guest", "AMD SEV-SNP guest")
    assert not availability.usable


def test_gramine_missing(roots):
    availability = create_backend("sgx", roots=roots).probe()
    assert "not running under Gramine SGX" in availability.reason


def test_report_directory_present_but_not_configfs(roots):
    # A plain directory where configfs-tsm should be: the probe's entry has no provider.
    roots.tsm_report.mkdir(parents=True)
    availability = create_backend("snp", roots=roots).probe()
    assert not availability.usable
    assert list(roots.tsm_report.iterdir()) == []
