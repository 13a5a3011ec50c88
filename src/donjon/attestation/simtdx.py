"""A format-faithful simulated Intel TDX vendor: chain, collateral and quotes.

:class:`SimulatedTdx` plays every Intel role with locally generated EC P-256
keys: a simulated "Intel SGX Root CA", a PCK Platform CA, a PCK certificate
carrying real SGX extensions (FMSPC, PCE-ID, TCB component SVNs, PCESVN,
CPUSVN, SGX type), a TCB signing certificate, CRLs, signed TCB Info v3 and
QE Identity v2 documents, and a quoting enclave whose attestation key signs
v4 and v5 TD quotes laid out byte for byte as Intel's (see
:mod:`donjon.attestation.dcap`). The real verifier runs unchanged against it;
it trusts the simulated root only when the caller passes ``sim.root``
explicitly, and then marks the claims ``simulated=True``.

The vendor (keys, certificates, QE report, collateral) is built once; each
:meth:`SimulatedTdx.quote` costs one ECDSA signature. No clock is read: the
caller says when the chain and collateral are issued.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from donjon.attestation.claims import TcbStatus
from donjon.attestation.dcap import (
    ATTESTATION_KEY_TYPE_ECDSA_P256,
    BODY_TD_REPORT15,
    CERT_DATA_PCK_CHAIN,
    CERT_DATA_QE_REPORT,
    INTEL_QE_VENDOR_ID,
    TEE_TYPE_TDX,
)
from donjon.attestation.dcap_verify import IntelCollateral
from donjon.attestation.intel import SGX_EXTENSIONS_OID

__all__ = ["SIM_QE_MRSIGNER", "SimulatedTdx"]

#: MRSIGNER of the simulated TD quoting enclave (not Intel's).
SIM_QE_MRSIGNER = hashlib.sha256(b"donjon simulated TD_QE signer").digest()
_QE_ISV_PROD_ID = 2
_QE_ISV_SVN = 4
#: QE ATTRIBUTES: INIT | MODE64BIT, no DEBUG (SGX SECS.ATTRIBUTES), as Intel's QE identity expects.
_QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
#: TD_ATTRIBUTES with only SEPT_VE_DISABLE (bit 28) set; bit 0 would be DEBUG.
DEFAULT_TD_ATTRIBUTES = (1 << 28).to_bytes(8, "little")
DEFAULT_XFAM = bytes.fromhex("e71a060000000000")


# --- tiny DER encoder for the SGX extension ----------------------------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + length + content


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _int(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return _tlv(0x02, raw)


def _pair(oid: str, value: bytes) -> bytes:
    return _tlv(0x30, _oid(oid) + value)


def sgx_extension_der(
    *, ppid: bytes, svns: Sequence[int], pce_svn: int, pce_id: bytes, fmspc: bytes, sgx_type: int = 1
) -> bytes:
    """The DER value of the SGX extensions (Intel PCK certificate profile, "SGX Extensions")."""
    base = SGX_EXTENSIONS_OID
    tcb = b"".join(_pair(f"{base}.2.{i + 1}", _int(svn)) for i, svn in enumerate(svns))
    tcb += _pair(f"{base}.2.17", _int(pce_svn)) + _pair(f"{base}.2.18", _tlv(0x04, bytes(svns)))
    body = (
        _pair(f"{base}.1", _tlv(0x04, ppid))
        + _pair(f"{base}.2", _tlv(0x30, tcb))
        + _pair(f"{base}.3", _tlv(0x04, pce_id))
        + _pair(f"{base}.4", _tlv(0x04, fmspc))
        + _pair(f"{base}.5", _tlv(0x0A, bytes([sgx_type])))
    )
    return _tlv(0x30, body)


# --- helpers ------------------------------------------------------------------------------------------------


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Donjon Simulated Intel"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _hexu(data: bytes) -> str:
    return data.hex().upper()


class SimulatedTdx:
    """A simulated Intel TDX platform and vendor; see the module docstring.

    ``sgx_svns``/``pce_svn`` go into the PCK certificate, ``tee_tcb_svn`` into
    every TD report; the signed TCB Info has one level at exactly those values
    with ``tcb_status`` and ``advisory_ids``, then an all-zero OutOfDate level.
    ``tee_tcb_svn[1]`` (the TDX module major version) selects the module
    identity ``TDX_<nn>`` the TCB Info carries.
    """

    def __init__(
        self,
        *,
        issued_at: datetime,
        fmspc: bytes = bytes.fromhex("00806f050000"),
        pce_id: bytes = b"\x00\x00",
        sgx_svns: Sequence[int] = (4, 4, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0),
        pce_svn: int = 13,
        tee_tcb_svn: bytes = bytes([3, 1, 2]) + bytes(13),
        tcb_status: TcbStatus = TcbStatus.UP_TO_DATE,
        advisory_ids: Sequence[str] = (),
        collateral_validity: timedelta = timedelta(days=30),
    ) -> None:
        if issued_at.tzinfo is None:
            raise ValueError("issued_at must be timezone-aware")
        if len(fmspc) != 6 or len(pce_id) != 2 or len(sgx_svns) != 16 or len(tee_tcb_svn) != 16:
            raise ValueError("fmspc is 6 bytes, pce_id 2, sgx_svns 16 values, tee_tcb_svn 16 bytes")
        self.issued_at = issued_at
        self.fmspc, self.pce_id, self.sgx_svns, self.pce_svn = fmspc, pce_id, tuple(sgx_svns), pce_svn
        self.tee_tcb_svn = tee_tcb_svn
        self.tcb_status, self.advisory_ids = tcb_status, tuple(advisory_ids)
        self.collateral_validity = collateral_validity
        curve = ec.SECP256R1()
        self._root_key = ec.generate_private_key(curve)
        self._ca_key = ec.generate_private_key(curve)
        self._pck_key = ec.generate_private_key(curve)
        self._tcb_key = ec.generate_private_key(curve)
        self._att_key = ec.generate_private_key(curve)
        start, end = issued_at - timedelta(days=1), issued_at + timedelta(days=3650)
        self.root = self._cert(
            _name("Donjon Simulated Intel SGX Root CA"), self._root_key, None, start, end, ca=True
        )
        self.pck_ca = self._cert(
            _name("Donjon Simulated Intel SGX PCK Platform CA"),
            self._ca_key,
            self.root,
            start,
            end,
            ca=True,
            issuer_key=self._root_key,
        )
        self.tcb_signing = self._cert(
            _name("Donjon Simulated Intel SGX TCB Signing"),
            self._tcb_key,
            self.root,
            start,
            end,
            ca=False,
            issuer_key=self._root_key,
        )
        ext = sgx_extension_der(
            ppid=hashlib.sha256(b"ppid" + fmspc).digest()[:16],
            svns=self.sgx_svns,
            pce_svn=pce_svn,
            pce_id=pce_id,
            fmspc=fmspc,
        )
        self.pck = self._cert(
            _name("Donjon Simulated Intel SGX PCK Certificate"),
            self._pck_key,
            self.pck_ca,
            start,
            end,
            ca=False,
            issuer_key=self._ca_key,
            sgx_extension=ext,
        )
        self._finish()

    def _finish(self) -> None:
        """Derive the fixed parts of every quote (QE report, certification data) and the collateral."""
        pem = serialization.Encoding.PEM
        self._chain_pem = b"".join(c.public_bytes(pem) for c in (self.pck, self.pck_ca, self.root)) + b"\x00"
        self._tcb_chain_pem = self.tcb_signing.public_bytes(pem) + self.root.public_bytes(pem)
        att_pub = self._att_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )[1:]
        self._att_pub = att_pub
        auth = hashlib.sha256(b"donjon simulated QE auth data").digest()
        qe_report = self._qe_report(hashlib.sha256(att_pub + auth).digest() + bytes(32))
        chain = self._chain_pem
        qe_block = (
            qe_report
            + _raw_sig(self._pck_key, qe_report)
            + struct.pack("<H", len(auth))
            + auth
            + struct.pack("<HI", CERT_DATA_PCK_CHAIN, len(chain))
            + chain
        )
        self._cert_data = struct.pack("<HI", CERT_DATA_QE_REPORT, len(qe_block)) + qe_block
        self._collateral = self.collateral()

    # --- saving and loading (a Keep and a Steward in different processes share one vendor) --------------

    _KEYS = ("_root_key", "_ca_key", "_pck_key", "_tcb_key", "_att_key")
    _CERTS = ("root", "pck_ca", "tcb_signing", "pck")

    def dump(self) -> bytes:
        """The vendor as JSON: parameters, PEM private keys and certificates (simulated test material)."""
        pem = serialization.Encoding.PEM
        keys = {
            name: getattr(self, name)
            .private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
            for name in self._KEYS
        }
        certs = {name: getattr(self, name).public_bytes(pem).decode() for name in self._CERTS}
        params = {
            "issued_at": self.issued_at.isoformat(),
            "fmspc": self.fmspc.hex(),
            "pce_id": self.pce_id.hex(),
            "sgx_svns": list(self.sgx_svns),
            "pce_svn": self.pce_svn,
            "tee_tcb_svn": self.tee_tcb_svn.hex(),
            "tcb_status": self.tcb_status.value,
            "advisory_ids": list(self.advisory_ids),
            "collateral_validity_s": self.collateral_validity.total_seconds(),
        }
        return json.dumps(
            {"format": "donjon-sim-tdx-v1", "params": params, "keys": keys, "certs": certs}
        ).encode()

    @classmethod
    def load(cls, data: bytes) -> SimulatedTdx:
        """Rebuild a vendor saved by :meth:`dump` (ValueError/KeyError/TypeError if it is not one)."""
        doc = json.loads(data)
        if doc.get("format") != "donjon-sim-tdx-v1":
            raise ValueError("not a saved simulated TDX vendor")
        p = doc["params"]
        self = cls.__new__(cls)
        self.issued_at = datetime.fromisoformat(p["issued_at"])
        self.fmspc, self.pce_id = bytes.fromhex(p["fmspc"]), bytes.fromhex(p["pce_id"])
        self.sgx_svns, self.pce_svn = tuple(int(v) for v in p["sgx_svns"]), int(p["pce_svn"])
        self.tee_tcb_svn = bytes.fromhex(p["tee_tcb_svn"])
        self.tcb_status, self.advisory_ids = TcbStatus(p["tcb_status"]), tuple(p["advisory_ids"])
        self.collateral_validity = timedelta(seconds=float(p["collateral_validity_s"]))
        for name in cls._KEYS:
            key = serialization.load_pem_private_key(doc["keys"][name].encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise TypeError(f"{name} is not an EC key")
            setattr(self, name, key)
        for name in cls._CERTS:
            setattr(self, name, x509.load_pem_x509_certificate(doc["certs"][name].encode()))
        self._finish()
        return self

    # --- certificates and collateral ---------------------------------------------------------------------

    def _cert(
        self,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Certificate | None,
        start: datetime,
        end: datetime,
        *,
        ca: bool,
        issuer_key: ec.EllipticCurvePrivateKey | None = None,
        sgx_extension: bytes | None = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if issuer is None else issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sgx_extension is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSIONS_OID), sgx_extension),
                critical=False,
            )
        return builder.sign(issuer_key or key, hashes.SHA256())

    def _crl(
        self,
        issuer: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        revoked: Sequence[int],
        when: datetime,
    ) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(when - timedelta(hours=1))
            .next_update(when + self.collateral_validity)
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def _signed(self, member: str, body: dict[str, object]) -> bytes:
        text = json.dumps(body, separators=(",", ":"))
        signature = _raw_sig(self._tcb_key, text.encode())
        return f'{{"{member}":{text},"signature":"{signature.hex()}"}}'.encode()

    def _times(self, when: datetime | None) -> dict[str, object]:
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        when = self.issued_at if when is None else when
        return {
            "issueDate": (when - timedelta(hours=1)).strftime(fmt),
            "nextUpdate": (when + self.collateral_validity).strftime(fmt),
        }

    def tcb_info(self, *, issued_at: datetime | None = None) -> bytes:
        """The signed TDX TCB Info v3 for this platform."""
        zero_module = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
        major, minor = self.tee_tcb_svn[1], self.tee_tcb_svn[0]
        level = {
            "tcb": {
                "sgxtcbcomponents": [{"svn": s} for s in self.sgx_svns],
                "pcesvn": self.pce_svn,
                "tdxtcbcomponents": [{"svn": s} for s in self.tee_tcb_svn],
            },
            "tcbDate": "2024-03-13T00:00:00Z",
            "tcbStatus": self.tcb_status.value,
        }
        if self.advisory_ids:
            level["advisoryIDs"] = list(self.advisory_ids)
        old = {
            "tcb": {
                "sgxtcbcomponents": [{"svn": 0}] * 16,
                "pcesvn": 0,
                "tdxtcbcomponents": [{"svn": 0}] * 16,
            },
            "tcbDate": "2018-01-04T00:00:00Z",
            "tcbStatus": "OutOfDate",
            "advisoryIDs": ["INTEL-SA-00000"],
        }
        body: dict[str, object] = {
            "id": "TDX",
            "version": 3,
            **self._times(issued_at),
            "fmspc": _hexu(self.fmspc),
            "pceId": _hexu(self.pce_id),
            "tcbType": 0,
            "tcbEvaluationDataNumber": 17,
            "tdxModule": zero_module,
            "tdxModuleIdentities": [
                {
                    "id": f"TDX_{major:02X}",
                    **zero_module,
                    "tcbLevels": [
                        {"tcb": {"isvsvn": minor}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}
                    ],
                }
            ],
            "tcbLevels": [level, old],
        }
        return self._signed("tcbInfo", body)

    def qe_identity(self, *, issued_at: datetime | None = None) -> bytes:
        """The signed TD_QE Enclave Identity v2 of the simulated QE."""
        body = {
            "id": "TD_QE",
            "version": 2,
            **self._times(issued_at),
            "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": _hexu(_QE_ATTRIBUTES),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": _hexu(SIM_QE_MRSIGNER),
            "isvprodid": _QE_ISV_PROD_ID,
            "tcbLevels": [
                {"tcb": {"isvsvn": _QE_ISV_SVN}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}
            ],
        }
        return self._signed("enclaveIdentity", body)

    def collateral(
        self,
        *,
        issued_at: datetime | None = None,
        revoked_pck_serials: Sequence[int] = (),
        revoked_ca_serials: Sequence[int] = (),
    ) -> IntelCollateral:
        """Matching collateral, issued at ``issued_at`` (default: the vendor's own issue time; a
        long-lived vendor re-issues it as Intel does every month). The CRLs list the given serials
        (e.g. ``sim.pck.serial_number``)."""
        if (
            issued_at is None
            and not revoked_pck_serials
            and not revoked_ca_serials
            and "_collateral" in self.__dict__
        ):
            return self._collateral
        when = self.issued_at if issued_at is None else issued_at
        return IntelCollateral(
            tcb_info=self.tcb_info(issued_at=when),
            tcb_info_issuer_chain=self._tcb_chain_pem,
            qe_identity=self.qe_identity(issued_at=when),
            qe_identity_issuer_chain=self._tcb_chain_pem,
            pck_crl=self._crl(self.pck_ca, self._ca_key, revoked_pck_serials, when),
            root_crl=self._crl(self.root, self._root_key, revoked_ca_serials, when),
        )

    # --- the quoting enclave ------------------------------------------------------------------------------

    def _qe_report(self, report_data: bytes) -> bytes:
        """A 384-byte SGX report body of the simulated QE ("Enclave Report Body" layout)."""
        out = bytearray(384)
        out[0:16] = bytes(self.sgx_svns)
        out[48:64] = _QE_ATTRIBUTES
        out[64:96] = hashlib.sha256(b"donjon simulated TD_QE").digest()
        out[128:160] = SIM_QE_MRSIGNER
        out[256:258] = _QE_ISV_PROD_ID.to_bytes(2, "little")
        out[258:260] = _QE_ISV_SVN.to_bytes(2, "little")
        out[320:384] = report_data
        return bytes(out)

    def quote(
        self,
        report_data: bytes,
        *,
        mrtd: bytes = bytes(48),
        rtmrs: Sequence[bytes] = (bytes(48),) * 4,
        mrconfigid: bytes = bytes(48),
        mrowner: bytes = bytes(48),
        mrownerconfig: bytes = bytes(48),
        td_attributes: bytes = DEFAULT_TD_ATTRIBUTES,
        xfam: bytes = DEFAULT_XFAM,
        mrservicetd: bytes = bytes(48),
        version: int = 4,
    ) -> bytes:
        """A TD quote (v4 with a TD 1.0 body, or v5 with a TD 1.5 body) binding ``report_data``."""
        if len(report_data) != 64:
            raise ValueError("report_data is 64 bytes")
        if version not in (4, 5):
            raise ValueError("simulated TD quotes are version 4 or 5")
        fields = [mrtd, *rtmrs, mrconfigid, mrowner, mrownerconfig, mrservicetd]
        if len(rtmrs) != 4 or any(len(f) != 48 for f in fields) or len(td_attributes) != 8 or len(xfam) != 8:
            raise ValueError("measurements are 48 bytes, four RTMRs, attributes and XFAM 8 bytes")
        body = (
            self.tee_tcb_svn
            + hashlib.sha384(b"donjon simulated TDX module").digest()  # MRSEAM
            + bytes(48)  # MRSIGNERSEAM: Intel's module signer is all zero
            + bytes(8)  # SEAM_ATTRIBUTES
            + td_attributes
            + xfam
            + mrtd
            + mrconfigid
            + mrowner
            + mrownerconfig
            + b"".join(rtmrs)
            + report_data
        )
        header = struct.pack("<HHIHH", version, ATTESTATION_KEY_TYPE_ECDSA_P256, TEE_TYPE_TDX, 0, 0)
        header += INTEL_QE_VENDOR_ID + bytes(20)
        if version == 5:
            body += self.tee_tcb_svn + mrservicetd  # TEE_TCB_SVN2, MRSERVICETD
            signed = header + struct.pack("<HI", BODY_TD_REPORT15, len(body)) + body
        else:
            signed = header + body
        sig_data = _raw_sig(self._att_key, signed) + self._att_pub + self._cert_data
        return signed + struct.pack("<I", len(sig_data)) + sig_data
