"""Intel TCB Info and QE Identity documents, and Intel's TCB level matching.

Both documents arrive as ``{"tcbInfo": {...}, "signature": "<hex r||s>"}`` /
``{"enclaveIdentity": {...}, "signature": ...}`` ("Intel PCS API", "TCB Info
V3" and "Enclave Identity V2"). The ECDSA P-256 signature of the Intel SGX TCB
Signing key covers the exact bytes of the ``tcbInfo`` / ``enclaveIdentity``
member as Intel served it. :func:`split_signed_document` returns those bytes:
the raw substring when it is compact (as Intel serves it), or, when the member
was pretty-printed on the way, its compact re-serialisation with key order
preserved. Claims are parsed only from the bytes that are then verified.

Matching follows Intel's Quote Verification Library (QVL)
``TcbLevelCheck.cpp`` / ``TdxModuleCheck.cpp`` (section numbers 4.1.2.4.17.x of
Intel's "Quote Verification" appendix):

* SGX level: the first level whose 16 SGX component SVNs are each <= the PCK
  certificate's and whose PCESVN <= the PCK's;
* TDX level: the first such level whose TDX component SVNs are each <= the
  TEE_TCB_SVN bytes, skipping bytes 0 and 1 when TEE_TCB_SVN[1] (the TDX module
  major version) is non-zero, because the module is then judged by the
  ``tdxModuleIdentities`` entry ``TDX_<major, 2 hex digits>`` instead;
* statuses converge: a module or QE status OutOfDate turns UpToDate /
  SWHardeningNeeded into OutOfDate and the Configuration ones into
  OutOfDateConfigurationNeeded; Revoked anywhere is Revoked.

TD 1.5 "relaunch advised" statuses (QVL ``TDRelaunchCheck``) are not computed.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from donjon.attestation.claims import TcbStatus
from donjon.attestation.errors import CollateralError, VerificationFailed
from donjon.attestation.jsondoc import no_duplicate_members

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "EnclaveTcbLevel",
    "QeIdentity",
    "TcbInfo",
    "TcbLevel",
    "TcbMatch",
    "TdxModuleIdentity",
    "converge",
    "match_qe_identity",
    "match_tcb_level",
    "parse_qe_identity",
    "parse_tcb_info",
    "split_signed_document",
]

#: Real TCB Info documents are a few KiB; refuse anything absurd before parsing.
MAX_DOCUMENT_BYTES = 256 * 1024
_MAX_LEVELS = 256


@dataclass(frozen=True)
class TcbLevel:
    sgx_svns: tuple[int, ...]
    pce_svn: int
    tdx_svns: tuple[int, ...] | None
    tcb_date: str
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class EnclaveTcbLevel:
    isv_svn: int
    tcb_date: str
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class TdxModuleIdentity:
    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    levels: tuple[EnclaveTcbLevel, ...]


@dataclass(frozen=True)
class TcbInfo:
    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    evaluation_data_number: int
    tdx_module: TdxModuleIdentity | None
    tdx_module_identities: tuple[TdxModuleIdentity, ...]
    levels: tuple[TcbLevel, ...]


@dataclass(frozen=True)
class QeIdentity:
    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    evaluation_data_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isv_prod_id: int
    levels: tuple[EnclaveTcbLevel, ...]


@dataclass(frozen=True)
class TcbMatch:
    """The outcome of TCB level matching (before converging with the QE identity)."""

    status: TcbStatus
    advisory_ids: tuple[str, ...]
    level: TcbLevel
    module_status: TcbStatus | None


# --- signed document splitting ---------------------------------------------------------------------------


def _bad(what: str, reason: str, field: str | None = None) -> CollateralError:
    return CollateralError(f"{what}.format", reason, field=field)


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=no_duplicate_members, parse_constant=_reject_constant)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def split_signed_document(data: bytes, member: str) -> tuple[bytes, bytes]:
    """``(signed bytes of member, signature)`` from an Intel signed JSON document.

    The signed bytes are the raw text of the member's value when it is compact,
    else its compact re-serialisation (key order kept). Raises CollateralError
    for anything else: not JSON, duplicate keys, missing member or signature.
    """
    what = "tcb_info" if member == "tcbInfo" else "qe_identity"
    if len(data) > MAX_DOCUMENT_BYTES:
        raise CollateralError(
            f"{what}.size", "document is too large", expected=f"<= {MAX_DOCUMENT_BYTES}", got=len(data)
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(what, "document is not UTF-8") from e
    decoder = json.JSONDecoder(object_pairs_hook=no_duplicate_members, parse_constant=_reject_constant)
    spans: dict[str, tuple[int, int, Any]] = {}
    try:
        pos = _skip_ws(text, 0)
        if text[pos : pos + 1] != "{":
            raise _bad(what, "document is not a JSON object")
        pos = _skip_ws(text, pos + 1)
        while True:
            if text[pos : pos + 1] != '"':
                raise _bad(what, "expected a member name")
            key, pos = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
            pos = _skip_ws(text, pos)
            if text[pos : pos + 1] != ":":
                raise _bad(what, "expected ':'")
            pos = _skip_ws(text, pos + 1)
            value, end = decoder.raw_decode(text, pos)
            if key in spans:
                raise _bad(what, "duplicate member", key)
            spans[key] = (pos, end, value)
            pos = _skip_ws(text, end)
            if text[pos : pos + 1] == ",":
                pos = _skip_ws(text, pos + 1)
                continue
            if text[pos : pos + 1] == "}":
                break
            raise _bad(what, "expected ',' or '}'")
        if _skip_ws(text, pos + 1) != len(text):
            raise _bad(what, "trailing data after the document")
    except (ValueError, IndexError, RecursionError) as e:  # RecursionError: hostile nesting depth
        raise _bad(what, f"not valid JSON: {type(e).__name__}: {e}") from e
    if member not in spans or "signature" not in spans:
        raise _bad(what, f"document needs members {member!r} and 'signature'")
    start, end, value = spans[member]
    if not isinstance(value, dict):
        raise _bad(what, f"{member} is not an object", member)
    raw = text[start:end]
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    # Intel serves the member compact; keep its exact bytes then. Only a member that
    # was visibly reformatted (whitespace between tokens) is re-serialised.
    signed = raw if raw == compact or not _has_layout_whitespace(raw) else compact
    sig_value = spans["signature"][2]
    if not isinstance(sig_value, str) or len(sig_value) != 128:
        raise _bad(what, "signature must be 128 hex digits", "signature")
    try:
        signature = bytes.fromhex(sig_value)
    except ValueError as e:
        raise _bad(what, "signature is not hex", "signature") from e
    return signed.encode("utf-8"), signature


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _has_layout_whitespace(raw: str) -> bool:
    """Whitespace outside strings: the mark of pretty-printing."""
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in " \t\r\n":
            return True
    return False


# --- field helpers ---------------------------------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object, every problem a CollateralError naming the field."""

    def __init__(self, obj: Any, what: str, path: str) -> None:
        if not isinstance(obj, dict):
            raise _bad(what, "expected an object", path)
        self.obj = obj
        self.what = what
        self.path = path

    def _get(self, key: str) -> Any:
        if key not in self.obj:
            raise _bad(self.what, "missing field", f"{self.path}.{key}")
        return self.obj[key]

    def has(self, key: str) -> bool:
        return key in self.obj

    def get_int(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 0xFFFFFFFF:
            raise _bad(self.what, "expected a non-negative integer", f"{self.path}.{key}")
        return value

    def get_str(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise _bad(self.what, "expected a string", f"{self.path}.{key}")
        return value

    def get_hex(self, key: str, size: int) -> bytes:
        text = self.get_str(key)
        try:
            out = bytes.fromhex(text)
        except ValueError as e:
            raise _bad(self.what, "expected hex", f"{self.path}.{key}") from e
        if len(out) != size or len(text) != 2 * size:
            raise _bad(self.what, f"expected {size} bytes of hex", f"{self.path}.{key}")
        return out

    def get_time(self, key: str) -> datetime:
        text = self.get_str(key)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as e:
            raise _bad(self.what, "expected an ISO 8601 time", f"{self.path}.{key}") from e
        if value.tzinfo is None:
            raise _bad(self.what, "time without a timezone", f"{self.path}.{key}")
        return value

    def get_list(self, key: str) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list) or len(value) > _MAX_LEVELS:
            raise _bad(self.what, "expected a (bounded) list", f"{self.path}.{key}")
        return value

    def sub(self, key: str) -> _Fields:
        return _Fields(self._get(key), self.what, f"{self.path}.{key}")

    def get_status(self, key: str) -> TcbStatus:
        text = self.get_str(key)
        try:
            return TcbStatus(text)
        except ValueError as e:
            raise _bad(self.what, f"unknown TCB status {text!r}", f"{self.path}.{key}") from e

    def advisories(self) -> tuple[str, ...]:
        if "advisoryIDs" not in self.obj:
            return ()
        values = self.get_list("advisoryIDs")
        if not all(isinstance(v, str) and len(v) < 64 for v in values):
            raise _bad(self.what, "advisory IDs must be strings", f"{self.path}.advisoryIDs")
        return tuple(values)


def _enclave_levels(f: _Fields, key: str) -> tuple[EnclaveTcbLevel, ...]:
    out = []
    for i, item in enumerate(f.get_list(key)):
        lf = _Fields(item, f.what, f"{f.path}.{key}[{i}]")
        out.append(
            EnclaveTcbLevel(
                lf.sub("tcb").get_int("isvsvn"),
                lf.get_str("tcbDate"),
                lf.get_status("tcbStatus"),
                lf.advisories(),
            )
        )
    return tuple(out)


def _module(f: _Fields, with_id: bool) -> TdxModuleIdentity:
    return TdxModuleIdentity(
        id=f.get_str("id") if with_id else "",
        mrsigner=f.get_hex("mrsigner", 48),
        attributes=f.get_hex("attributes", 8),
        attributes_mask=f.get_hex("attributesMask", 8),
        levels=_enclave_levels(f, "tcbLevels") if with_id else (),
    )


def _svn_list(f: _Fields, key: str) -> tuple[int, ...]:
    items = f.get_list(key)
    if len(items) != 16:
        raise _bad(f.what, "expected 16 TCB components", f"{f.path}.{key}")
    svns = []
    for i, item in enumerate(items):
        svn = _Fields(item, f.what, f"{f.path}.{key}[{i}]").get_int("svn")
        if svn > 0xFF:
            raise _bad(f.what, "component SVN out of range", f"{f.path}.{key}[{i}]")
        svns.append(svn)
    return tuple(svns)


def parse_tcb_info(signed: bytes) -> TcbInfo:
    """Decode the (already verified) bytes of a ``tcbInfo`` member (TCB Info v2 or v3)."""
    try:
        obj = _loads(signed.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise _bad("tcb_info", f"not valid JSON: {e}") from e
    f = _Fields(obj, "tcb_info", "tcbInfo")
    version = f.get_int("version")
    if version not in (2, 3):
        raise CollateralError(
            "tcb_info.version", "unsupported TCB Info version", expected="2 or 3", got=version
        )
    tcb_id = f.get_str("id") if version == 3 else "SGX"
    if tcb_id not in ("SGX", "TDX"):
        raise _bad("tcb_info", "unknown TCB Info id", "tcbInfo.id")
    levels = []
    for i, item in enumerate(f.get_list("tcbLevels")):
        lf = _Fields(item, "tcb_info", f"tcbInfo.tcbLevels[{i}]")
        tcb = lf.sub("tcb")
        if version == 3:
            sgx = _svn_list(tcb, "sgxtcbcomponents")
            tdx = _svn_list(tcb, "tdxtcbcomponents") if tcb_id == "TDX" else None
        else:
            sgx = tuple(tcb.get_int(f"sgxtcbcomp{n:02d}svn") for n in range(1, 17))
            tdx = None
        levels.append(
            TcbLevel(
                sgx,
                tcb.get_int("pcesvn"),
                tdx,
                lf.get_str("tcbDate"),
                lf.get_status("tcbStatus"),
                lf.advisories(),
            )
        )
    if not levels:
        raise _bad("tcb_info", "no TCB levels", "tcbInfo.tcbLevels")
    module = _module(f.sub("tdxModule"), with_id=False) if f.has("tdxModule") else None
    identities: list[TdxModuleIdentity] = []
    if f.has("tdxModuleIdentities"):
        for i, item in enumerate(f.get_list("tdxModuleIdentities")):
            identities.append(
                _module(_Fields(item, "tcb_info", f"tcbInfo.tdxModuleIdentities[{i}]"), with_id=True)
            )
    return TcbInfo(
        id=tcb_id,
        version=version,
        issue_date=f.get_time("issueDate"),
        next_update=f.get_time("nextUpdate"),
        fmspc=f.get_hex("fmspc", 6),
        pce_id=f.get_hex("pceId", 2),
        tcb_type=f.get_int("tcbType"),
        evaluation_data_number=f.get_int("tcbEvaluationDataNumber"),
        tdx_module=module,
        tdx_module_identities=tuple(identities),
        levels=tuple(levels),
    )


def parse_qe_identity(signed: bytes) -> QeIdentity:
    """Decode the (already verified) bytes of an ``enclaveIdentity`` member (v2)."""
    try:
        obj = _loads(signed.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise _bad("qe_identity", f"not valid JSON: {e}") from e
    f = _Fields(obj, "qe_identity", "enclaveIdentity")
    version = f.get_int("version")
    if version != 2:
        raise CollateralError(
            "qe_identity.version", "unsupported Enclave Identity version", expected=2, got=version
        )
    levels = _enclave_levels(f, "tcbLevels")
    if not levels:
        raise _bad("qe_identity", "no TCB levels", "enclaveIdentity.tcbLevels")
    return QeIdentity(
        id=f.get_str("id"),
        version=version,
        issue_date=f.get_time("issueDate"),
        next_update=f.get_time("nextUpdate"),
        evaluation_data_number=f.get_int("tcbEvaluationDataNumber"),
        miscselect=int.from_bytes(f.get_hex("miscselect", 4), "big"),
        miscselect_mask=int.from_bytes(f.get_hex("miscselectMask", 4), "big"),
        attributes=f.get_hex("attributes", 16),
        attributes_mask=f.get_hex("attributesMask", 16),
        mrsigner=f.get_hex("mrsigner", 32),
        isv_prod_id=f.get_int("isvprodid"),
        levels=levels,
    )


# --- matching --------------------------------------------------------------------------------------------

_CONFIG = (TcbStatus.CONFIGURATION_NEEDED, TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED)


def converge(status: TcbStatus, other: TcbStatus) -> TcbStatus:
    """Fold a module or QE status into a TCB level status (QVL ``convergeTcbStatusWith*``)."""
    if other == TcbStatus.REVOKED:
        return TcbStatus.REVOKED
    if other in (TcbStatus.OUT_OF_DATE, TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED):
        if status in (TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED):
            return TcbStatus.OUT_OF_DATE
        if status in _CONFIG:
            return TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    return status


def _masked_equal(a: bytes, b: bytes, mask: bytes) -> bool:
    if not len(a) == len(b) == len(mask):
        return False
    m = int.from_bytes(mask, "big")
    return (int.from_bytes(a, "big") & m) == (int.from_bytes(b, "big") & m)


def _dedupe(*groups: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for group in groups:
        for item in group:
            if item not in out:
                out.append(item)
    return tuple(out)


def _no_level(reason: str, **kw: Any) -> VerificationFailed:
    return VerificationFailed("dcap.tcb.no_matching_level", reason, **kw)


def _module_status(
    info: TcbInfo, tee_tcb_svn: bytes, mrsignerseam: bytes, seam_attributes: bytes
) -> tuple[TcbStatus | None, tuple[str, ...]]:
    """TDX module identity check (QVL ``checkTdxModuleTcbStatus`` and the module MRSIGNER/attribute check).

    Module version (TEE_TCB_SVN[1]) 0 is judged by ``tdxModule`` (signer and attributes only);
    any other by its ``tdxModuleIdentities`` entry ``TDX_<version>``, whose levels give a status.
    """
    major, isv_svn = tee_tcb_svn[1], tee_tcb_svn[0]
    module: TdxModuleIdentity | None
    if major == 0:
        # TDX TCB Info v3 must carry tdxModule; without it the module's signer would go unchecked.
        module, name = info.tdx_module, "tdxModule"
        if module is None:
            raise VerificationFailed(
                "dcap.tdx_module.missing",
                "TCB Info has no tdxModule to check the TDX module (MRSIGNERSEAM) against",
                field=name,
            )
    else:
        name = f"TDX_{major:02X}"
        module = next((m for m in info.tdx_module_identities if m.id.upper() == name), None)
        if module is None:
            raise VerificationFailed(
                "dcap.tdx_module.mismatch",
                "no TDX module identity for this module version",
                field="tdxModuleIdentities",
                expected=name,
            )
    if module.mrsigner != mrsignerseam:
        raise VerificationFailed(
            "dcap.tdx_module.mismatch",
            f"MRSIGNERSEAM does not match {name}",
            field="mrsignerseam",
            expected=module.mrsigner,
            got=mrsignerseam,
        )
    if not _masked_equal(seam_attributes, module.attributes, module.attributes_mask):
        raise VerificationFailed(
            "dcap.tdx_module.mismatch",
            f"SEAM attributes do not match {name}",
            field="seam_attributes",
            expected=module.attributes,
            got=seam_attributes,
        )
    if major == 0:
        return None, ()
    for level in module.levels:
        if isv_svn >= level.isv_svn:
            return level.status, level.advisory_ids
    raise _no_level(
        "TDX module SVN is below every level of its identity", field=f"{name}.isvsvn", got=isv_svn
    )


def match_tcb_level(
    info: TcbInfo,
    pck_svns: Sequence[int],
    pck_pce_svn: int,
    *,
    tee_tcb_svn: bytes | None = None,
    mrsignerseam: bytes | None = None,
    seam_attributes: bytes | None = None,
) -> TcbMatch:
    """The TCB status of a platform per Intel's rules (see the module docstring).

    ``tee_tcb_svn`` (with the SEAM signer and attributes) is given for TDX
    quotes. Raises VerificationFailed ``dcap.tcb.no_matching_level`` when no
    level applies (Intel: "TCB not supported").
    """
    if len(pck_svns) != 16 or (tee_tcb_svn is not None and len(tee_tcb_svn) != 16):
        raise ValueError("16 PCK component SVNs and a 16-byte TEE_TCB_SVN are required")
    sgx_level: TcbLevel | None = None
    tdx_level: TcbLevel | None = None
    for level in info.levels:
        if pck_pce_svn < level.pce_svn or not all(map(operator.ge, pck_svns, level.sgx_svns)):
            continue
        if tee_tcb_svn is None:
            sgx_level = level
            break
        if sgx_level is None:
            sgx_level = level
        if level.tdx_svns is None:
            raise CollateralError("tcb_info.format", "TDX TCB level without tdxtcbcomponents")
        start = 2 if tee_tcb_svn[1] > 0 else 0
        if all(map(operator.ge, tee_tcb_svn[start:], level.tdx_svns[start:])):
            tdx_level = level
            break
    if sgx_level is None:
        raise _no_level(
            "no TCB level matches the PCK certificate's SGX TCB",
            got=f"sgx {list(pck_svns)} pcesvn {pck_pce_svn}",
        )
    if tee_tcb_svn is None:
        return TcbMatch(sgx_level.status, sgx_level.advisory_ids, sgx_level, None)
    if tdx_level is None:
        raise _no_level("no TCB level matches the TD's TEE_TCB_SVN", got=tee_tcb_svn.hex())
    if mrsignerseam is None or seam_attributes is None:
        raise TypeError("TDX matching needs the quote's MRSIGNERSEAM and SEAM_ATTRIBUTES")
    module_status, module_advisories = _module_status(info, tee_tcb_svn, mrsignerseam, seam_attributes)
    status = tdx_level.status if module_status is None else converge(tdx_level.status, module_status)
    return TcbMatch(status, _dedupe(tdx_level.advisory_ids, module_advisories), tdx_level, module_status)


def match_qe_identity(
    identity: QeIdentity,
    qe_report_miscselect: int,
    qe_report_attributes: bytes,
    qe_report_mrsigner: bytes,
    qe_report_isv_prod_id: int,
    qe_report_isv_svn: int,
) -> EnclaveTcbLevel:
    """Check the QE report against its identity and return the matching TCB level
    (QVL ``EnclaveReportVerifier``): MISCSELECT and ATTRIBUTES under their masks,
    MRSIGNER and ISVPRODID equal, then the first level with isvsvn <= the QE's."""
    if (qe_report_miscselect & identity.miscselect_mask) != (identity.miscselect & identity.miscselect_mask):
        raise VerificationFailed(
            "dcap.qe_identity.miscselect",
            "QE MISCSELECT does not match its identity",
            expected=hex(identity.miscselect),
            got=hex(qe_report_miscselect),
        )
    if not _masked_equal(qe_report_attributes, identity.attributes, identity.attributes_mask):
        raise VerificationFailed(
            "dcap.qe_identity.attributes",
            "QE ATTRIBUTES do not match its identity",
            expected=identity.attributes,
            got=qe_report_attributes,
        )
    if qe_report_mrsigner != identity.mrsigner:
        raise VerificationFailed(
            "dcap.qe_identity.mrsigner",
            "QE MRSIGNER is not Intel's QE signer",
            expected=identity.mrsigner,
            got=qe_report_mrsigner,
        )
    if qe_report_isv_prod_id != identity.isv_prod_id:
        raise VerificationFailed(
            "dcap.qe_identity.isvprodid",
            "QE ISVPRODID does not match its identity",
            expected=identity.isv_prod_id,
            got=qe_report_isv_prod_id,
        )
    for level in identity.levels:
        if qe_report_isv_svn >= level.isv_svn:
            return level
    raise VerificationFailed(
        "dcap.qe_identity.no_matching_level", "no QE TCB level matches the QE's ISVSVN", got=qe_report_isv_svn
    )
