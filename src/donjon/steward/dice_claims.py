"""What a Steward-issued certificate says about its evidence: the TCG DICE ``MultiTcbInfo`` entries.

DESIGN.md "Certificates the Steward issues": one entry for the TEE (layer 0: vendor and model,
the launch measurement as an FWID with its hash, the TCB as ``version``/``svn``), behind a
paravisor's vTPM one more (layer 0: ``Donjon`` ``paravisor vTPM``, the quote's PCR digest as a
SHA-256 FWID), and one for
the workload (layer 1: vendor ``Donjon``, model ``workload``, the workload digest as a SHA-256
FWID). The format is :mod:`donjon.dice`'s; this module only maps verified claims onto it.
Pure: claims in, entries out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from donjon.attestation.claims import Claims
from donjon.dice import (
    SIMULATED_SUFFIX,
    TEE_NAMES,
    VTPM_MODEL,
    VTPM_VENDOR,
    WORKLOAD_MODEL,
    WORKLOAD_VENDOR,
    DiceError,
    Fwid,
    TcbInfo,
)

__all__ = ["dice_entries"]


def _tcb_version(claims: Claims) -> tuple[str | None, int | None]:
    """The TCB of the evidence as DICE ``version`` (text) and ``svn`` (one integer, where one exists)."""
    raw = claims.raw
    tee = claims.tee.value
    if tee == "sev-snp":
        # AMD SEV-SNP ABI "TCB_VERSION": one 64-bit value (bootloader, tee, snp, microcode SVNs).
        parts = raw.get("reported_tcb")
        text = None
        if isinstance(parts, Mapping):
            text = " ".join(f"{k}={v}" for k, v in parts.items())
        value = raw.get("reported_tcb_raw")
        return text, int(value, 16) if isinstance(value, str) else None
    if tee == "tdx":
        svn = raw.get("tee_tcb_svn")
        return (f"tee_tcb_svn={svn.hex() if isinstance(svn, bytes) else svn}" if svn else None), None
    if tee == "sgx":
        svn = raw.get("isv_svn")
        return None, svn if isinstance(svn, int) and not isinstance(svn, bool) else None
    return None, None


def _vtpm_pcr_digest(claims: Claims) -> bytes | None:
    """SHA-256 of the quoted PCR values in index order (the quote's pcrDigest), behind a vTPM."""
    vtpm = claims.raw.get("vtpm")
    if not isinstance(vtpm, Mapping):
        return None
    pcrs = vtpm.get("pcrs")
    if not isinstance(pcrs, Mapping) or not all(isinstance(v, bytes) for v in pcrs.values()):
        return None
    return hashlib.sha256(b"".join(pcrs[k] for k in sorted(pcrs, key=int))).digest()


def dice_entries(
    claims: Claims | None, workload_digest: bytes | None, simulated: bool
) -> tuple[TcbInfo, ...]:
    """The ``MultiTcbInfo`` of a certificate: the TEE (layer 0), then the workload (layer 1).

    ``notSecure`` marks both when no genuine TEE stands behind them (simulated or no evidence).
    """
    not_secure = claims is None or simulated
    entries: list[TcbInfo] = []
    if claims is not None:
        vendor, model = TEE_NAMES.get(claims.tee.value, (claims.platform, claims.tee.value))
        version, svn = _tcb_version(claims)
        try:
            fwids: tuple[Fwid, ...] = (Fwid.of(claims.measurement),)
        except DiceError:
            fwids = ()  # a measurement of no SHA-2 size: the entry still names the TEE
        entries.append(
            TcbInfo(
                vendor=vendor,
                model=model + (SIMULATED_SUFFIX if simulated else ""),
                version=version,
                svn=svn,
                layer=0,
                fwids=fwids,
                not_secure=not_secure,
            )
        )
        pcr_digest = _vtpm_pcr_digest(claims)
        if pcr_digest is not None:
            entries.append(
                TcbInfo(
                    vendor=VTPM_VENDOR,
                    model=VTPM_MODEL,
                    layer=0,
                    fwids=(Fwid("sha256", pcr_digest),),
                    not_secure=not_secure,
                )
            )
    if workload_digest is not None:
        entries.append(
            TcbInfo(
                vendor=WORKLOAD_VENDOR,
                model=WORKLOAD_MODEL,
                layer=1,
                fwids=(Fwid("sha256", workload_digest),),
                not_secure=not_secure,
            )
        )
    return tuple(entries)
