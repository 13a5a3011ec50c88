"""The Steward's own collateral: where it comes from, and how current it is.

DESIGN.md "What the Steward checks": revocation and TCB collateral come from the
Steward's OWN current collateral (CRLs, TCB info, QE identity, fetched and cached
by the Steward). A :class:`CollateralSource` answers "what do I hold for this
evidence kind, now"; :class:`DirectoryCollateral` reads a local directory (an
offline bundle, or the cache a fetcher keeps up to date). Collateral a Keep
sends is used only if it is at least as new as the Steward's and verifies
(the verifier checks every piece's signature).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from donjon.attestation.detect import recognise_collateral
from donjon.attestation.errors import AttestationError
from donjon.attestation.pki import load_certificates
from donjon.attestation.verify import Collateral

__all__ = [
    "MAX_COLLATERAL_FILE",
    "CollateralSet",
    "CollateralSource",
    "DirectoryCollateral",
    "LayeredCollateral",
    "VendorCollateral",
    "collateral_set",
]

MAX_COLLATERAL_FILE = 1 << 20


@dataclass(frozen=True)
class CollateralSet:
    """Collateral with its age: the oldest piece's issue time and the earliest next update."""

    collateral: Collateral
    issued_at: datetime | None
    next_update: datetime | None

    def current_at(self, at: datetime) -> bool:
        if self.issued_at is not None and at < self.issued_at:
            return False
        return self.next_update is None or at <= self.next_update


class CollateralSource(Protocol):
    def current(self, kind: str, evidence: bytes | None = None) -> CollateralSet | None:
        """What the Steward holds for ``kind`` (``snp-report``, ``tdx-quote``...), or None.

        ``evidence`` is a hint (the product line of an SNP report, the FMSPC in a
        quote's PCK certificate) for sources that fetch per platform; it is not trusted.
        """
        ...


def _json_dates(doc: bytes) -> tuple[datetime | None, datetime | None]:
    # Intel PCS TCB info / QE identity (API v3/v4):
    # {"tcbInfo"|"enclaveIdentity": {"issueDate", "nextUpdate", ...}, "signature"}.
    try:
        parsed = json.loads(doc)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    body = parsed.get("tcbInfo") or parsed.get("enclaveIdentity") or parsed.get("qeIdentity")
    if not isinstance(body, dict):
        return None, None
    out: list[datetime | None] = []
    for key in ("issueDate", "nextUpdate"):
        value = body.get(key)
        try:
            out.append(
                datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None
            )
        except ValueError:
            out.append(None)
    return out[0], out[1]


def collateral_set(collateral: Collateral) -> CollateralSet:
    """Compute the age of a bundle: latest-issued oldest piece and earliest expiry."""
    issued: list[datetime] = []
    nexts: list[datetime] = []
    for crl in collateral.crls:
        issued.append(crl.last_update_utc)
        if crl.next_update_utc is not None:
            nexts.append(crl.next_update_utc)
    for doc in (*collateral.tcb_info, *collateral.qe_identity):
        i, n = _json_dates(doc)
        if i is not None:
            issued.append(i)
        if n is not None:
            nexts.append(n)
    return CollateralSet(
        collateral=collateral,
        issued_at=min(issued) if issued else None,
        next_update=min(nexts) if nexts else None,
    )


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read(MAX_COLLATERAL_FILE + 1)
    if len(data) > MAX_COLLATERAL_FILE:
        raise ValueError(f"{path}: larger than {MAX_COLLATERAL_FILE} bytes")
    return data


def _load_dir(directory: Path) -> Collateral | None:
    if not directory.is_dir():
        return None
    collateral = Collateral()
    for entry in sorted(os.listdir(directory)):
        path = directory / entry
        if path.is_file():
            collateral += recognise_collateral(_read(path), source=str(path))
    return collateral


class DirectoryCollateral:
    """Collateral read from ``<root>/<kind>/`` (e.g. ``collateral/snp-report/milan.crl``).

    Files are classified by content, by the attestation library's
    :func:`~donjon.attestation.detect.recognise_collateral` (TCB info / QE identity
    JSON, CRLs and certificates in PEM or DER); a file it does not recognise is a
    :class:`CollateralError`. The directory is re-read when any file's modification
    time changes (looked at no more than once per ``recheck`` seconds), so a
    fetcher or an operator can refresh it under a running Steward.
    """

    def __init__(self, root: str | Path, *, recheck: float = 1.0) -> None:
        self.root = Path(root)
        self.recheck = recheck
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[tuple[str, float], ...], CollateralSet | None]] = {}

    def _stamp(self, directory: Path) -> tuple[tuple[str, float], ...]:
        try:
            return tuple(sorted((e.name, e.stat().st_mtime) for e in os.scandir(directory) if e.is_file()))
        except OSError:
            return ()

    def current(self, kind: str, evidence: bytes | None = None) -> CollateralSet | None:
        directory = self.root / kind
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(kind)
            # Look at the directory at most once per ``recheck`` seconds, not on every request.
            if cached is not None and now - self._checked.get(kind, 0.0) < self.recheck:
                return cached[1]
        stamp = self._stamp(directory)
        with self._lock:
            self._checked[kind] = now
            if cached is not None and cached[0] == stamp:
                return cached[1]
        loaded = _load_dir(directory)
        result = collateral_set(loaded) if loaded is not None and stamp else None
        with self._lock:
            self._cache[kind] = (stamp, result)
        return result


class VendorCollateral:
    """Collateral fetched from AMD KDS / Intel PCS through :mod:`donjon.collateral` (cache first).

    SNP: the ARK's CRL and the ASK/ARK chain for the report's product line.
    Intel: TCB info for the FMSPC of the quote's PCK certificate, the QE
    identity, the CRL of the PCK CA that issued it and the Root CA's CRL.
    Nothing fetchable (offline without a cached copy, vendor down, a VLEK
    report) -> None, and the Steward refuses (``collateral.missing``).
    """

    def __init__(self, kds: object | None, pcs: object | None, *, fetcher: object | None = None) -> None:
        self.kds = kds
        self.pcs = pcs
        self._fetcher = fetcher

    def close(self) -> None:
        """Close the HTTP fetcher (its connections); closing twice is harmless."""
        closer = getattr(self._fetcher, "close", None)
        if callable(closer):
            closer()

    def current(self, kind: str, evidence: bytes | None = None) -> CollateralSet | None:
        from donjon.collateral.errors import FetchError

        if evidence is None:
            return None
        try:
            if kind == "snp-report" and self.kds is not None:
                return self._snp(evidence)
            if kind in ("tdx-quote", "sgx-quote") and self.pcs is not None:
                return self._intel(kind, evidence)
        except (FetchError, AttestationError, ValueError):
            return None
        return None

    def _snp(self, report: bytes) -> CollateralSet:
        from donjon.collateral.kds import KdsClient, VcekRequest

        assert isinstance(self.kds, KdsClient)
        product = VcekRequest.from_report(report).product
        chain = self.kds.cert_chain(product)
        crl = self.kds.crl(product)
        return collateral_set(Collateral(certificates=tuple(chain), crls=(crl,), sources=(f"kds:{product}",)))

    def _intel(self, kind: str, quote: bytes) -> CollateralSet:
        from donjon.attestation.dcap import parse_quote
        from donjon.attestation.intel import parse_pck_extensions
        from donjon.collateral.pcs import PcsClient

        assert isinstance(self.pcs, PcsClient)
        parsed = parse_quote(quote)
        chain = load_certificates(parsed.signature.pck_cert_chain.rstrip(b"\x00"), what="PCK chain")
        pck = chain[0]
        fmspc = parse_pck_extensions(pck).fmspc.hex()
        issuer = pck.issuer.rfc4514_string()
        ca = "processor" if "Processor" in issuer else "platform"
        tee = "tdx" if kind == "tdx-quote" else "sgx"
        tcb = self.pcs.tcb_info(fmspc, tee=tee)
        qe = self.pcs.qe_identity(tee=tee)
        pck_crl = self.pcs.pck_crl(ca)
        root_crl = self.pcs.root_ca_crl()
        return collateral_set(
            Collateral(
                certificates=tcb.issuer_chain,
                crls=(pck_crl.crl(), root_crl),
                tcb_info=(tcb.body,),
                qe_identity=(qe.body,),
                sources=(f"pcs:{tee}:{fmspc}",),
            )
        )


class LayeredCollateral:
    """The first source holding current, dated collateral wins (an operator's directory, then the vendors).

    When none is current, the first dated answer is returned (the Steward then
    refuses it as stale, or applies the policy's grace period).
    """

    def __init__(self, *sources: CollateralSource, clock: Callable[[], datetime]) -> None:
        self.sources = sources
        self.clock = clock

    def close(self) -> None:
        for source in self.sources:
            closer = getattr(source, "close", None)
            if callable(closer):
                closer()

    def current(self, kind: str, evidence: bytes | None = None) -> CollateralSet | None:
        fallback: CollateralSet | None = None
        undated: CollateralSet | None = None
        now = self.clock()
        for source in self.sources:
            found = source.current(kind, evidence)
            if found is None:
                continue
            if found.issued_at is None:
                undated = undated or found
                continue
            if found.current_at(now):
                return found
            fallback = fallback or found
        return fallback or undated
