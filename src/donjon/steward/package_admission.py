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
from donjon.dice import WORKLOAD_VENDOR, Fwid, TcbInfo
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


def package_entries(package: object, decision: Decision) -> tuple[TcbInfo, ...]:
    """DICE entries naming the package and its signer, when a signer rule admitted the workload.

    Layer 2, vendor ``Donjon``: model ``package`` with the manifest digest as its FWID, model
    ``package-signer`` with the SHA-256 of the signer's SubjectPublicKeyInfo as its FWID.
    """
    if not isinstance(package, dict) or not decision.rule.startswith("signer "):
        return ()
    not_secure = decision.simulated or decision.unattested
    return tuple(
        TcbInfo(
            vendor=WORKLOAD_VENDOR,
            model=model,
            layer=2,
            fwids=(Fwid("sha256", bytes.fromhex(str(package[field]).removeprefix("sha256:"))),),
            not_secure=not_secure,
        )
        for model, field in (("package", "digest"), ("package-signer", "signer"))
    )
