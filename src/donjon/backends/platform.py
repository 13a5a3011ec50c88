"""What this machine offers: which backends work here, and why the others do not.

Every path the detection reads is in :class:`PlatformRoots`, so the tests run
it over fake trees. The detection only looks (``stat``, small reads of
``/proc``); the one thing it *does* is what :meth:`TsmBackend.probe` does,
creating and removing an empty configfs-tsm entry to learn the provider.

Reasons, most specific first, when ``/sys/kernel/config/tsm/report`` is missing:

1. configfs is not mounted (no ``/sys/kernel/config`` or nothing in it, and no
   ``configfs`` line in ``/proc/mounts``): ``mount -t configfs none /sys/kernel/config``;
2. configfs is mounted but has no ``tsm``: the kernel is older than 6.7, lacks
   ``CONFIG_TSM_REPORTS``, or no TSM provider module (sev-guest, tdx-guest,
   arm-cca-guest) is loaded;
3. hints that say whether this is a confidential VM at all: ``/dev/sev-guest``,
   ``/dev/tdx_guest``, the CPU flags ``sev_snp`` / ``tdx_guest`` / ``hypervisor``
   in ``/proc/cpuinfo``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from donjon.backends.base import Availability

__all__ = [
    "PlatformRoots",
    "cpu_flags",
    "explain_tsm_absence",
    "platform_hints",
]

#: /proc/cpuinfo is a few KiB per CPU; reading its first MiB finds the flags line.
_MAX_PROC = 1 << 20


TPM_TCTI_ENV = "DONJON_TPM_TCTI"
AZURE_IMDS_ENV = "DONJON_AZURE_IMDS"


@dataclass(frozen=True)
class PlatformRoots:
    """Every host path the backends and their detection read; tests point them at a temp tree."""

    configfs: Path = Path("/sys/kernel/config")
    dev: Path = Path("/dev")
    proc: Path = Path("/proc")
    gramine: Path = Path("/dev/attestation")
    tsm_report: Path = field(default=Path("/sys/kernel/config/tsm/report"))
    #: the TPM (TSS2 TCTI string) and Azure's instance metadata service, for azure-snp/azure-tdx;
    #: $DONJON_TPM_TCTI / $DONJON_AZURE_IMDS override them (a software TPM and a local IMDS in tests)
    tpm_tcti: str = field(default_factory=lambda: os.environ.get(TPM_TCTI_ENV) or "device:/dev/tpmrm0")
    azure_imds: str = field(
        default_factory=lambda: os.environ.get(AZURE_IMDS_ENV) or "http://169.254.169.254"
    )

    @classmethod
    def under(cls, base: str | os.PathLike[str]) -> PlatformRoots:
        """The same layout below ``base`` (``base/sys/kernel/config``, ``base/dev``...)."""
        b = Path(base)
        configfs = b / "sys/kernel/config"
        return cls(
            configfs=configfs,
            dev=b / "dev",
            proc=b / "proc",
            gramine=b / "dev/attestation",
            tsm_report=configfs / "tsm/report",
            tpm_tcti=f"device:{b / 'dev/tpmrm0'}",
        )


def _read_small(path: Path) -> str:
    try:
        with path.open("rb") as f:
            return f.read(_MAX_PROC).decode("utf-8", "replace")
    except OSError:
        return ""


def cpu_flags(roots: PlatformRoots) -> frozenset[str]:
    """The CPU flags of the first processor in ``/proc/cpuinfo`` (x86 ``flags``, arm64 ``Features``)."""
    for line in _read_small(roots.proc / "cpuinfo").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def _configfs_mounted(roots: PlatformRoots) -> bool:
    mounts = _read_small(roots.proc / "mounts")
    target = str(roots.configfs)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "configfs" and fields[1] == target:
            return True
    # Without /proc/mounts (a fake tree, a container), a non-empty directory is the best evidence.
    try:
        return roots.configfs.is_dir() and any(roots.configfs.iterdir())
    except OSError:
        return False


def platform_hints(roots: PlatformRoots) -> tuple[str, ...]:
    """Observations that say what kind of machine this is (for ``platform info`` and the reasons)."""
    hints = []
    flags = cpu_flags(roots)
    if (roots.dev / "sev-guest").exists():
        hints.append(f"{roots.dev / 'sev-guest'} exists: this is an AMD SEV-SNP guest")
    if (roots.dev / "tdx_guest").exists():
        hints.append(f"{roots.dev / 'tdx_guest'} exists: this is an Intel TDX guest")
    if "tdx_guest" in flags:
        hints.append("CPU flag tdx_guest: this is an Intel TDX guest")
    if "sev_snp" in flags:
        hints.append("CPU flag sev_snp: the CPU supports AMD SEV-SNP")
    if "hypervisor" in flags:
        hints.append("CPU flag hypervisor: running in a virtual machine")
    elif flags:
        hints.append("no hypervisor CPU flag: running on bare metal, not in a confidential VM")
    if (roots.dev / "sgx_enclave").exists():
        hints.append(f"{roots.dev / 'sgx_enclave'} exists: this host can run SGX enclaves (use Gramine)")
    return tuple(hints)


def explain_tsm_absence(roots: PlatformRoots, module: str, what: str) -> Availability:
    """Why the configfs-tsm report directory is missing, and what to do, for a backend needing ``module``."""
    hints = platform_hints(roots)
    if not _configfs_mounted(roots):
        return Availability(
            usable=False,
            reason=f"configfs is not mounted at {roots.configfs}",
            fix=f"mount -t configfs none {roots.configfs}",
            hints=hints,
        )
    if not (roots.configfs / "tsm").is_dir():
        return Availability(
            usable=False,
            reason=f"no {roots.configfs / 'tsm'}: kernel older than 6.7 (or without CONFIG_TSM_REPORTS), "
            f"or no TSM provider loaded (sev-guest/tdx-guest/arm-cca-guest)",
            fix=f"inside an {what}, run a 6.7+ kernel and modprobe {module}",
            hints=hints,
        )
    return Availability(
        usable=False,
        reason=f"{roots.tsm_report} does not exist although {roots.configfs / 'tsm'} does",
        fix=f"modprobe {module} (inside an {what})",
        hints=hints,
    )
