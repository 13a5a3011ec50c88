"""AMD Key Distribution Service (KDS) client: VCEKs, ASK/ASVK + ARK chains, CRLs.

Interface: AMD pub. 57230 "Versioned Chip Endorsement Key (VCEK) Certificate
and KDS Interface Specification":

* ``GET /vcek/v1/{product_name}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..``
  returns the DER VCEK of one chip at one TCB. ``hwid`` is CHIP_ID in lowercase
  hex (64 bytes; on Turin the first 8 bytes only), the SPLs are the components of
  the report's REPORTED_TCB in decimal; Turin adds ``fmcSPL``.
* ``GET /vcek/v1/{product_name}/cert_chain`` returns PEM ASK then ARK;
  ``/vlek/v1/{product_name}/cert_chain`` PEM ASVK then ARK.
* ``GET /vcek/v1/{product_name}/crl`` (and ``/vlek/...``) returns the ARK's DER CRL.

A VLEK cannot be fetched: AMD issues it to the cloud provider, who installs it
in the firmware; it reaches a verifier only with the evidence (the extended
report's certificate table). :meth:`KdsClient.vlek` says so.

This module only fetches and parses; the attestation library verifies.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from cryptography import x509

from donjon.attestation.amd import product_from_cpuid
from donjon.attestation.errors import CollateralError, MalformedEvidence
from donjon.attestation.pki import load_certificates, load_crl
from donjon.collateral.errors import NotFetchable
from donjon.collateral.store import CollateralStore
from donjon.collateral.validity import DocKind

__all__ = [
    "DEFAULT_KDS_URL",
    "PRODUCTS",
    "KdsClient",
    "VcekRequest",
    "VcekTcb",
    "cert_chain_key",
    "crl_key",
]

#: AMD's production KDS. Tests and air-gapped mirrors pass another ``base_url``.
DEFAULT_KDS_URL = "https://kdsintf.amd.com"
#: KDS ``{product_name}`` values with an SEV-SNP ARK.
PRODUCTS = ("Milan", "Genoa", "Turin")
_KEY_TYPES = ("vcek", "vlek")

# SEV-SNP ABI specification (pub. 56860), "ATTESTATION_REPORT Structure".
_REPORT_SIZE = 0x4A0
_OFF_VERSION = 0x00
_OFF_KEY_INFO = 0x48  # bits 4:2 SIGNING_KEY: 0 VCEK, 1 VLEK, 7 none
_OFF_REPORTED_TCB = 0x180
_OFF_CPUID_FAM = 0x188  # version 3 and later
_OFF_CPUID_MOD = 0x189
_OFF_CHIP_ID = 0x1A0
_CHIP_ID_LEN = 64


def _product(product: str) -> str:
    if str(product) not in PRODUCTS:
        raise ValueError(f"unknown AMD product line {product!r}; expected one of {', '.join(PRODUCTS)}")
    return str(product)


def _key_type(key_type: str) -> str:
    if key_type not in _KEY_TYPES:
        raise ValueError("key_type must be 'vcek' or 'vlek'")
    return key_type


@dataclass(frozen=True)
class VcekTcb:
    """The security patch levels a VCEK is issued for (the report's REPORTED_TCB)."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    def __post_init__(self) -> None:
        for name in ("bootloader", "tee", "snp", "microcode", "fmc"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or not 0 <= value <= 0xFF):
                raise ValueError(f"TCB component {name} must be an integer 0..255, got {value!r}")

    @classmethod
    def decode(cls, raw: bytes, product: str) -> VcekTcb:
        """Decode a TCB_VERSION (SEV-SNP ABI "TCB_VERSION Structure"; Turin has its own layout)."""
        if len(raw) != 8:
            raise ValueError("TCB_VERSION is 8 bytes")
        if _product(product) == "Turin":
            # Turin: FMC, BOOT_LOADER, TEE, SNP at bytes 0-3, MICROCODE at byte 7.
            return cls(bootloader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7], fmc=raw[0])
        # Milan/Genoa: BOOT_LOADER, TEE at bytes 0-1, SNP at byte 6, MICROCODE at byte 7.
        return cls(bootloader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])


@dataclass(frozen=True)
class VcekRequest:
    """Which VCEK to ask KDS for: a chip of a product line at a TCB."""

    product: str
    hwid: bytes
    tcb: VcekTcb

    def __post_init__(self) -> None:
        product = _product(self.product)
        object.__setattr__(self, "product", product)
        hwid = bytes(self.hwid)
        if product == "Turin":
            # KDS names a Turin chip by the first 8 bytes of CHIP_ID; the
            # report's 64-byte CHIP_ID is accepted when the rest is zero.
            if len(hwid) == _CHIP_ID_LEN and not any(hwid[8:]):
                hwid = hwid[:8]
            if len(hwid) != 8:
                raise ValueError(
                    "a Turin hwid is 8 bytes (or a 64-byte CHIP_ID whose last 56 bytes are zero)"
                )
            if self.tcb.fmc is None:
                raise ValueError("a Turin VCEK request needs the FMC SPL (VcekTcb.fmc)")
        else:
            if len(hwid) != _CHIP_ID_LEN:
                raise ValueError(f"a {product} hwid is the 64-byte CHIP_ID")
            if self.tcb.fmc is not None:
                raise ValueError(f"{product} has no FMC SPL")
        if not any(hwid):
            raise NotFetchable(
                "kds.vcek.masked_chip_id",
                "the chip ID is all zero (MASK_CHIP_ID set, or a VLEK-signed report): "
                "no VCEK can be fetched for it",
            )
        object.__setattr__(self, "hwid", hwid)

    @property
    def path(self) -> str:
        return f"/vcek/v1/{self.product}/{self.hwid.hex()}"

    @property
    def params(self) -> dict[str, str]:
        # KDS reads the SPLs as decimal numbers; two digits as AMD's examples and virtee/sev write them.
        t = self.tcb
        params = {}
        if t.fmc is not None:
            params["fmcSPL"] = f"{t.fmc:02d}"
        params.update(
            blSPL=f"{t.bootloader:02d}",
            teeSPL=f"{t.tee:02d}",
            snpSPL=f"{t.snp:02d}",
            ucodeSPL=f"{t.microcode:02d}",
        )
        return params

    @property
    def key(self) -> str:
        """The cache key (independent of the KDS host, so bundles and mirrors share it)."""
        return "amd-kds" + self.path + "?" + urllib.parse.urlencode(self.params)

    @classmethod
    def from_report(cls, report: bytes, *, product: str | None = None) -> VcekRequest:
        """The VCEK request for an SEV-SNP attestation report (CHIP_ID, REPORTED_TCB).

        The product line comes from the report's CPUID fields (version 3 and
        later) or from ``product``; when both exist they must agree. A
        VLEK-signed report raises :class:`NotFetchable`.
        """
        if len(report) != _REPORT_SIZE:
            raise MalformedEvidence(
                "kds.report.size", "not an SEV-SNP attestation report", expected=_REPORT_SIZE, got=len(report)
            )
        version = int.from_bytes(report[_OFF_VERSION : _OFF_VERSION + 4], "little")
        if not 2 <= version <= 5:
            raise MalformedEvidence(
                "kds.report.version", "unsupported report version", expected="2..5", got=version
            )
        signing_key = (int.from_bytes(report[_OFF_KEY_INFO : _OFF_KEY_INFO + 4], "little") >> 2) & 0x7
        if signing_key == 1:
            raise NotFetchable(
                "kds.vlek",
                "the report is signed by a VLEK, which AMD issues to the cloud provider "
                "and KDS does not serve; it must arrive with the evidence",
            )
        if signing_key != 0:
            raise MalformedEvidence("kds.report.signing_key", "report is not VCEK-signed", got=signing_key)
        from_cpuid = None
        if version >= 3:
            from_cpuid = product_from_cpuid(report[_OFF_CPUID_FAM], report[_OFF_CPUID_MOD])
        if product is not None and from_cpuid is not None and _product(product) != from_cpuid:
            raise MalformedEvidence(
                "kds.report.product",
                "report CPUID names another product line",
                expected=product,
                got=from_cpuid,
            )
        chosen = product or from_cpuid
        if chosen is None:
            raise MalformedEvidence(
                "kds.report.product",
                "cannot tell the product line from this report (version 2, or unknown CPUID): pass product=",
            )
        chosen = _product(chosen)
        tcb = VcekTcb.decode(report[_OFF_REPORTED_TCB : _OFF_REPORTED_TCB + 8], chosen)
        try:
            return cls(product=chosen, hwid=report[_OFF_CHIP_ID : _OFF_CHIP_ID + _CHIP_ID_LEN], tcb=tcb)
        except ValueError as e:
            raise MalformedEvidence("kds.report.chip_id", str(e)) from e


def cert_chain_key(product: str, key_type: str = "vcek") -> str:
    return f"amd-kds/{_key_type(key_type)}/v1/{_product(product)}/cert_chain"


def crl_key(product: str, key_type: str = "vcek") -> str:
    return f"amd-kds/{_key_type(key_type)}/v1/{_product(product)}/crl"


class KdsClient:
    """Fetches (through a :class:`CollateralStore`'s cache) what AMD KDS serves."""

    def __init__(self, store: CollateralStore, *, base_url: str = DEFAULT_KDS_URL) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")

    def vcek(self, request: VcekRequest, *, at: datetime | None = None) -> x509.Certificate:
        """The VCEK (DER from KDS) for ``request``."""
        entry = self.store.get(
            key=request.key,
            url=self.base_url + request.path,
            params=request.params,
            kind=DocKind.CERTIFICATES,
            at=at,
            what=f"VCEK for {request.product} chip {request.hwid.hex()[:16]}... at {request.tcb}",
        )
        certs = _certs(entry.body, "VCEK")
        if len(certs) != 1:
            raise CollateralError("kds.vcek", "KDS answered with more than one certificate for a VCEK")
        return certs[0]

    def cert_chain(
        self, product: str, *, key_type: str = "vcek", at: datetime | None = None
    ) -> list[x509.Certificate]:
        """``[ASK, ARK]`` (``key_type="vcek"``) or ``[ASVK, ARK]`` (``"vlek"``) for ``product``."""
        key = cert_chain_key(product, key_type)
        entry = self.store.get(
            key=key,
            url=f"{self.base_url}/{key_type}/v1/{product}/cert_chain",
            kind=DocKind.CERTIFICATES,
            at=at,
            what=f"{product} {key_type.upper()} certificate chain",
        )
        certs = _certs(entry.body, "certificate chain")
        if len(certs) != 2:
            raise CollateralError(
                "kds.cert_chain",
                "KDS cert_chain must hold the signing key and the ARK",
                expected=2,
                got=len(certs),
            )
        return certs

    def crl(
        self, product: str, *, key_type: str = "vcek", at: datetime | None = None
    ) -> x509.CertificateRevocationList:
        """The ARK's CRL for ``product`` (revoked ASKs, or ASVKs for ``key_type="vlek"``)."""
        key = crl_key(product, key_type)
        entry = self.store.get(
            key=key,
            url=f"{self.base_url}/{key_type}/v1/{product}/crl",
            kind=DocKind.CRL,
            at=at,
            what=f"{product} {key_type.upper()} CRL",
        )
        return load_crl(entry.body)

    def vlek(self, *_args: object, **_kwargs: object) -> NoReturn:
        """Always raises: a VLEK cannot be fetched from KDS."""
        raise NotFetchable(
            "kds.vlek",
            "a VLEK cannot be fetched: AMD issues it to the cloud provider, and it must arrive "
            "with the evidence (the extended report's certificate table). KDS serves only its "
            "chain (cert_chain(key_type='vlek')) and CRL",
        )


def _certs(body: bytes, what: str) -> list[x509.Certificate]:
    try:
        return load_certificates(body, what=what)
    except MalformedEvidence as e:
        raise CollateralError("kds.parse", e.reason) from e
