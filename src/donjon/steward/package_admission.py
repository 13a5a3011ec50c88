"""Admission by package signer: the Steward's side of docs/deploy.md "Admit by signer".

A Keep running a signed package puts the package evidence in its CSR (``oids.CSR_ATTR_PACKAGE``,
:mod:`donjon.oci.admission`). :func:`check_package` verifies it against the CSR's workload digest
(the one the hardware evidence binds) and records the package digest, signer and name in the log
entry; the policy may then admit by signer. :func:`package_entries` names the package and signer
in the certificate's DICE claims. Kept apart from issuance.py so its checks stay in one place.
"""

from __future__ import annotations

from typing import Any

from donjon.csr import NativeCsr
from donjon.dice import (
    MAX_PACKAGE_NAME_BYTES,
    PACKAGE_MODEL,
    PACKAGE_SIGNER_MODEL,
    WORKLOAD_VENDOR,
    Fwid,
    TcbInfo,
)
from donjon.oci.admission import AdmittedPackage
from donjon.steward.errors import Refused
from donjon.steward.policy import Decision

__all__ = ["check_package", "package_entries"]


def check_package(csr: NativeCsr, record: dict[str, Any]) -> AdmittedPackage | None:
    """The CSR's package evidence, verified against its workload digest (docs/deploy.md "By signer").

    Checked after the binding, so the workload digest it is compared with is the one the
    hardware evidence vouches for; recorded (digest, signer, name) whether or not a rule uses it.
    """
    if csr.package is None or csr.workload_digest is None:
        return None
    from donjon.oci.admission import verify_package_evidence
    from donjon.oci.errors import OciError

    try:
        admitted = verify_package_evidence(csr.package, csr.workload_digest)
    except OciError as e:
        raise Refused("package.signature", str(e), status=403) from e
    record["package"] = {"digest": admitted.digest, "signer": admitted.signer, "name": admitted.reference}
    return admitted


def _name_bytes(name: object) -> bytes | None:
    """The package name as ``vendorInfo`` bytes; ``None`` when it cannot be one (too long, or a
    string JSON allows but UTF-8 does not: a lone surrogate)."""
    if not isinstance(name, str):
        return None
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return raw if len(raw) <= MAX_PACKAGE_NAME_BYTES else None


def package_entries(package: object, decision: Decision) -> tuple[TcbInfo, ...]:
    """DICE entries naming the package and its signer, when a signer rule admitted the workload.

    Layer 2, vendor ``Donjon``: model ``package`` with the manifest digest as its FWID and the
    package name (``REGISTRY/REPO``, as signed) as its ``vendorInfo``, model ``package-signer``
    with the SHA-256 of the signer's SubjectPublicKeyInfo as its FWID. The Steward reads them
    back from the client certificate when a ``[[secret]]`` rule names ``signers`` or ``packages``
    (:mod:`donjon.steward.secrets.release`). A name longer than
    :data:`~donjon.dice.MAX_PACKAGE_NAME_BYTES` is left out: such a certificate matches no
    ``packages`` list.
    """
    if not isinstance(package, dict) or not decision.rule.startswith("signer "):
        return ()
    not_secure = decision.simulated or decision.unattested
    info = _name_bytes(package.get("name"))
    return tuple(
        TcbInfo(
            vendor=WORKLOAD_VENDOR,
            model=model,
            layer=2,
            fwids=(Fwid("sha256", bytes.fromhex(str(package[field]).removeprefix("sha256:"))),),
            not_secure=not_secure,
            vendor_info=info if model == PACKAGE_MODEL else None,
        )
        for model, field in ((PACKAGE_MODEL, "digest"), (PACKAGE_SIGNER_MODEL, "signer"))
    )
