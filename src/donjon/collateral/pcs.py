"""Intel Provisioning Certification Service (PCS) client, API v4: CRLs, TCB info, QE identity.

Interface: Intel "Provisioning Certification Service for ECDSA Attestation",
API version 4 (``/sgx/certification/v4/`` and ``/tdx/certification/v4/``):

* ``GET /sgx/certification/v4/pckcrl?ca=platform|processor&encoding=der`` - the
  PCK CRL; its issuer chain (PCK CA, Root CA) is in the ``SGX-PCK-CRL-Issuer-Chain``
  header, PEM URL-encoded.
* ``GET /{sgx|tdx}/certification/v4/tcb?fmspc=<hex>`` - TCB info JSON; issuer
  chain (TCB Signing, Root CA) in ``TCB-Info-Issuer-Chain`` (v4; v3 and some
  caches say ``SGX-TCB-Info-Issuer-Chain``).
* ``GET /{sgx|tdx}/certification/v4/qe/identity`` - QE (SGX) or TD_QE (TDX)
  identity JSON; issuer chain in ``SGX-Enclave-Identity-Issuer-Chain``.
* The Root CA CRL is published at the CRL distribution point of the Intel SGX
  Root CA certificate (``root_crl_url``), DER.

Optional ``update=early|standard`` selects the TCB recovery track. This module
only fetches and parses; the attestation library checks the signatures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509

from donjon.attestation.pki import load_certificates, load_crl
from donjon.collateral.cache import CacheEntry
from donjon.collateral.store import ISSUER_CHAIN, CollateralStore
from donjon.collateral.validity import DocKind, parse_intel_json

__all__ = [
    "DEFAULT_PCS_URL",
    "DEFAULT_ROOT_CRL_URL",
    "PcsClient",
    "PcsDocument",
    "pck_crl_key",
    "qe_identity_key",
    "root_ca_crl_key",
    "tcb_info_key",
]

#: Intel's production PCS and the Root CA's CRL distribution point.
DEFAULT_PCS_URL = "https://api.trustedservices.intel.com"
DEFAULT_ROOT_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

PCK_CRL_CHAIN_HEADERS = ("SGX-PCK-CRL-Issuer-Chain",)
TCB_INFO_CHAIN_HEADERS = ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
QE_IDENTITY_CHAIN_HEADERS = ("SGX-Enclave-Identity-Issuer-Chain", "Enclave-Identity-Issuer-Chain")

_FMSPC = re.compile(r"^[0-9a-fA-F]{12}$")
_TEES = ("sgx", "tdx")
_CAS = ("platform", "processor")
_UPDATES = (None, "early", "standard")


def _tee(tee: str) -> str:
    if tee not in _TEES:
        raise ValueError("tee must be 'sgx' or 'tdx'")
    return tee


def _update(update: str | None) -> str | None:
    if update not in _UPDATES:
        raise ValueError("update must be None, 'early' or 'standard'")
    return update


def pck_crl_key(ca: str) -> str:
    if ca not in _CAS:
        raise ValueError("ca must be 'platform' or 'processor'")
    return f"intel-pcs/sgx/certification/v4/pckcrl?ca={ca}"


def tcb_info_key(fmspc: str, tee: str = "sgx", update: str | None = None) -> str:
    if not _FMSPC.match(fmspc):
        raise ValueError("fmspc is 6 bytes in hex (12 hex digits)")
    suffix = f"&update={update}" if _update(update) else ""
    return f"intel-pcs/{_tee(tee)}/certification/v4/tcb?fmspc={fmspc.lower()}{suffix}"


def qe_identity_key(tee: str = "sgx", update: str | None = None) -> str:
    suffix = f"?update={update}" if _update(update) else ""
    return f"intel-pcs/{_tee(tee)}/certification/v4/qe/identity{suffix}"


def root_ca_crl_key() -> str:
    return "intel-pcs/root-ca-crl"


@dataclass(frozen=True)
class PcsDocument:
    """A PCS answer: the document's exact bytes and its issuer chain (signer first, root last).

    ``body`` is kept byte for byte: a TCB info or QE identity signature covers
    the raw text of the inner JSON object, which re-serialising would break.
    """

    body: bytes
    issuer_chain: tuple[x509.Certificate, ...]
    issuer_chain_pem: bytes
    fetched_at: datetime
    valid_until: datetime | None
    source: str

    @classmethod
    def _from_entry(cls, entry: CacheEntry) -> PcsDocument:
        pem = entry.headers.get(ISSUER_CHAIN, "").encode()
        chain = tuple(load_certificates(pem, what="issuer chain")) if pem else ()
        return cls(
            body=entry.body,
            issuer_chain=chain,
            issuer_chain_pem=pem,
            fetched_at=entry.fetched_at,
            valid_until=entry.valid_until,
            source=entry.source,
        )

    def crl(self) -> x509.CertificateRevocationList:
        return load_crl(self.body)

    def json(self, kind: DocKind) -> dict[str, Any]:
        return parse_intel_json(self.body, kind)


class PcsClient:
    """Fetches (through a :class:`CollateralStore`'s cache) what Intel PCS serves."""

    def __init__(
        self,
        store: CollateralStore,
        *,
        base_url: str = DEFAULT_PCS_URL,
        root_crl_url: str = DEFAULT_ROOT_CRL_URL,
    ) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.root_crl_url = root_crl_url

    def pck_crl(self, ca: str = "processor", *, at: datetime | None = None) -> PcsDocument:
        """The CRL of the Intel SGX PCK Platform or Processor CA, with its issuer chain."""
        entry = self.store.get(
            key=pck_crl_key(ca),
            url=f"{self.base_url}/sgx/certification/v4/pckcrl",
            params={"ca": ca, "encoding": "der"},
            kind=DocKind.CRL,
            at=at,
            chain_headers=PCK_CRL_CHAIN_HEADERS,
            what=f"PCK {ca} CA CRL",
        )
        return PcsDocument._from_entry(entry)

    def tcb_info(
        self, fmspc: str, *, tee: str = "sgx", update: str | None = None, at: datetime | None = None
    ) -> PcsDocument:
        """TCB info for an FMSPC (``tee="tdx"`` for TDX TCB info), with the TCB Signing chain."""
        params = {"fmspc": fmspc.lower()}
        if update:
            params["update"] = update
        entry = self.store.get(
            key=tcb_info_key(fmspc, tee, update),
            url=f"{self.base_url}/{tee}/certification/v4/tcb",
            params=params,
            kind=DocKind.TCB_INFO,
            at=at,
            chain_headers=TCB_INFO_CHAIN_HEADERS,
            what=f"{tee.upper()} TCB info for FMSPC {fmspc.lower()}",
        )
        return PcsDocument._from_entry(entry)

    def qe_identity(
        self, *, tee: str = "sgx", update: str | None = None, at: datetime | None = None
    ) -> PcsDocument:
        """The QE identity (``tee="sgx"``) or TD_QE identity (``"tdx"``), with the TCB Signing chain."""
        entry = self.store.get(
            key=qe_identity_key(tee, update),
            url=f"{self.base_url}/{tee}/certification/v4/qe/identity",
            params={"update": update} if update else None,
            kind=DocKind.QE_IDENTITY,
            at=at,
            chain_headers=QE_IDENTITY_CHAIN_HEADERS,
            what=f"{tee.upper()} QE identity",
        )
        return PcsDocument._from_entry(entry)

    def root_ca_crl(self, *, at: datetime | None = None) -> x509.CertificateRevocationList:
        """The Intel SGX Root CA's CRL (revoked PCK CAs and TCB Signing certificates)."""
        entry = self.store.get(
            key=root_ca_crl_key(),
            url=self.root_crl_url,
            kind=DocKind.CRL,
            at=at,
            what="Intel SGX Root CA CRL",
        )
        return load_crl(entry.body)
