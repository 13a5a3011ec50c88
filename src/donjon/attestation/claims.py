"""Normalised claims shared by every TEE, and the only way to hold verified ones.

The Steward's policy is written once against :class:`Claims`. A
:class:`VerifiedEvidence` can only be made by a verifier in this library
(``_create``), never by calling the class, so nothing can issue a certificate
from evidence that was not checked (STYLE.md 6, after trio's NoPublicConstructor).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

__all__ = [
    "Claims",
    "TcbStatus",
    "TeeType",
    "VerifiedEvidence",
]


class TeeType(enum.StrEnum):
    SNP = "sev-snp"
    TDX = "tdx"
    SGX = "sgx"
    CCA = "cca"


class TcbStatus(enum.StrEnum):
    """TCB status, in Intel's vocabulary (TCB info ``tcbStatus``); SNP maps onto it.

    For SEV-SNP there is no status document: a report whose TCB meets the
    caller's minimum and matches its VCEK is ``UpToDate``.
    """

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, kw_only=True)
class Claims:
    """What verified evidence says, in one shape for every TEE.

    ``measurement`` is the launch measurement the policy pins first (SNP
    MEASUREMENT, TDX MRTD, SGX MRENCLAVE, CCA realm initial measurement);
    ``measurements`` holds every named register (``rtmr0``..``rtmr3``,
    ``mrconfigid``, ``mrowner``, ``host_data``...). ``raw`` carries the decoded
    fields the policy may want beyond these (VMPL, policy bits, SVNs...).
    """

    tee: TeeType
    platform: str
    measurement: bytes
    report_data: bytes
    debug: bool
    tcb_status: TcbStatus
    advisory_ids: tuple[str, ...] = ()
    signer: bytes | None = None
    id_key_digest: bytes | None = None
    measurements: Mapping[str, bytes] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)
    simulated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "measurements", _frozen(self.measurements))
        object.__setattr__(self, "raw", _frozen(self.raw))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly form (bytes as lowercase hex)."""

        def conv(value: Any) -> Any:
            if isinstance(value, bytes | bytearray):
                return bytes(value).hex()
            if isinstance(value, Mapping):
                return {str(k): conv(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [conv(v) for v in value]
            if isinstance(value, enum.Enum):
                return value.value
            return value

        return {
            "tee": self.tee.value,
            "platform": self.platform,
            "measurement": self.measurement.hex(),
            "report_data": self.report_data.hex(),
            "debug": self.debug,
            "tcb_status": self.tcb_status.value,
            "advisory_ids": list(self.advisory_ids),
            "signer": None if self.signer is None else self.signer.hex(),
            "id_key_digest": None if self.id_key_digest is None else self.id_key_digest.hex(),
            "measurements": conv(self.measurements),
            "raw": conv(self.raw),
            "simulated": self.simulated,
        }


_T = TypeVar("_T")


class _NoPublicConstructor(type):
    """Metaclass: calling the class raises; the library uses ``_create``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor; verify evidence instead"
        )

    def _create(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        return super().__call__(*args, **kwargs)  # type: ignore[misc, no-any-return]


class VerifiedEvidence(metaclass=_NoPublicConstructor):
    """Evidence that passed every check of a verifier, at ``verified_at``.

    Instances are immutable. Only verifiers in ``donjon.attestation`` create them,
    through ``VerifiedEvidence._create(...)``.
    """

    __slots__ = ("_claims", "_evidence_sha256", "_verified_at")

    _claims: Claims
    _evidence_sha256: bytes
    _verified_at: datetime

    def __init__(self, claims: Claims, evidence_sha256: bytes, verified_at: datetime) -> None:
        object.__setattr__(self, "_claims", claims)
        object.__setattr__(self, "_evidence_sha256", evidence_sha256)
        object.__setattr__(self, "_verified_at", verified_at)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("VerifiedEvidence is immutable")

    @property
    def claims(self) -> Claims:
        return self._claims

    @property
    def evidence_sha256(self) -> bytes:
        return self._evidence_sha256

    @property
    def verified_at(self) -> datetime:
        return self._verified_at

    def __repr__(self) -> str:
        return (
            f"VerifiedEvidence(tee={self._claims.tee.value}, platform={self._claims.platform!r}, "
            f"evidence_sha256={self._evidence_sha256.hex()[:16]}..., "
            f"verified_at={self._verified_at.isoformat()})"
        )
