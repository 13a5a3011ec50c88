"""A format-faithful SEV-SNP simulator: a locally generated "AMD" and the reports it signs.

Not a TEE. It exists so the Steward, the Keep backends and the tests can run
the *unchanged* verifier (:func:`donjon.attestation.snp.verify_snp_report`)
without AMD hardware. Everything matches AMD's formats byte for byte:

- the chain has AMD's shape and algorithms: an ARK and an ASK/ASVK with RSA-4096
  keys and RSASSA-PSS SHA-384 signatures (salt 48, as KDS uses), a VCEK/VLEK
  with an EC P-384 key and the ``1.3.6.1.4.1.3704.1.x`` extensions (structVersion,
  productName, the SPLs, hwID or CSP id), encoded as KDS encodes them;
- reports have the exact ATTESTATION_REPORT layout of versions 2, 3 and 5
  (see :mod:`donjon.attestation.snp`), signed with ECDSA P-384 over bytes 0h-29Fh,
  R and S little-endian in 72-byte fields;
- the CRL is issued and signed by the ARK, like KDS's.

Naming decision: the *product line* stays a real one ("Milan", "Genoa",
"Turin") in the certificates and in the report's CPUID, so that every
product-line check runs on simulated evidence exactly as on real evidence. The
*subjects* say what it is: ``CN=ARK-Milan-Simulated``, ``CN=SEV-Milan-Simulated``,
``CN=SEV-VLEK-Milan-Simulated``, ``CN=SEV-VCEK-Simulated``, all with
``O=Donjon simulated AMD (not a TEE)``. A simulated root can never match AMD's
pinned fingerprints, so it is trusted only when a caller passes it in
``TrustRoots.extra_trusted`` (:meth:`SimulatedAmd.trust_roots`), and the
claims then say ``simulated=True``.

Cost: generating a vendor makes three RSA-4096 keys (a few seconds). Generate
one and reuse it: :func:`default_vendor` caches one per product in the process,
and :meth:`SimulatedAmd.dump` / :meth:`SimulatedAmd.load` turn a vendor into
bytes and back (the caller writes them where it likes). A report then costs
about one ECDSA P-384 signature (well under a millisecond).
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from donjon.attestation import amd
from donjon.attestation.amd import Product
from donjon.attestation.snp import (
    KEY_VCEK,
    KEY_VLEK,
    POLICY_DEBUG,
    POLICY_RESERVED_ONE,
    POLICY_SMT,
    REPORT_SIZE,
    SIGNED_SIZE,
    SnpTcb,
)
from donjon.attestation.verify import TrustRoots

__all__ = [
    "DEFAULT_NOT_AFTER",
    "DEFAULT_NOT_BEFORE",
    "DEFAULT_TCB",
    "SIM_ORGANIZATION",
    "SimulatedAmd",
    "SimulatedEvidence",
    "default_vendor",
]

SIM_ORGANIZATION = "Donjon simulated AMD (not a TEE)"
#: Fixed validity window (the simulator reads no clock): 2024-01-01 to 2049-01-01.
DEFAULT_NOT_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
DEFAULT_NOT_AFTER = datetime(2049, 1, 1, tzinfo=UTC)
#: A plausible current TCB (Milan/Genoa layout; ``fmc`` is used on Turin).
DEFAULT_TCB = SnpTcb(bootloader=4, tee=0, snp=24, microcode=219, fmc=1)
#: The CSP id simulated VLEKs are issued to.
DEFAULT_CSP_ID = "CN=simulated-cloud.invalid"
#: Guest policy most hypervisors use: ABI 0.0, SMT allowed, bit 17 (reserved, one).
DEFAULT_POLICY = POLICY_RESERVED_ONE | POLICY_SMT

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
#: CPUID family, model, stepping reported per product (v3+ reports).
_CPUID: dict[Product, tuple[int, int, int]] = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x00),
}


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Simulation"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIM_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _der_int(value: int) -> bytes:
    # DER INTEGER as KDS writes the SPLs (02 01 73, or 02 02 00 d9 when the top bit is set).
    body = value.to_bytes(1, "big")
    if body[0] & 0x80:
        body = b"\0" + body
    return bytes([0x02, len(body)]) + body


def _der_ia5(text: str) -> bytes:
    raw = text.encode("ascii")
    return bytes([0x16, len(raw)]) + raw


@dataclass(frozen=True)
class SimulatedEvidence:
    """A signed report and the certificates a relying party needs with it (DER, leaf first)."""

    report: bytes
    certs: tuple[bytes, ...]


class SimulatedAmd:
    """A simulated AMD key distribution service for one product line, able to sign reports."""

    def __init__(
        self,
        product: Product,
        *,
        ark_key: rsa.RSAPrivateKey,
        ask_key: rsa.RSAPrivateKey,
        asvk_key: rsa.RSAPrivateKey,
        ark: x509.Certificate,
        ask: x509.Certificate,
        asvk: x509.Certificate,
    ) -> None:
        self.product = product
        self._ark_key = ark_key
        self._ask_key = ask_key
        self._asvk_key = asvk_key
        self.ark = ark
        self.ask = ask
        self.asvk = asvk
        self._lock = threading.Lock()
        # (kind, chip_id or csp, raw TCB) -> (private key, certificate)
        self._endorsement: dict[
            tuple[str, bytes, int], tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
        ] = {}

    # -- construction ---------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        product: Product | str = Product.MILAN,
        *,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
    ) -> SimulatedAmd:
        """A new vendor: three RSA-4096 keys (slow: seconds; reuse the result)."""
        product = Product(product)
        ark_key = rsa.generate_private_key(65537, 4096)
        ask_key = rsa.generate_private_key(65537, 4096)
        asvk_key = rsa.generate_private_key(65537, 4096)
        ark_name = _name(f"ARK-{product.value}-Simulated")
        ark = cls._ca_cert(
            ark_name, ark_name, ark_key.public_key(), ark_key, 1, not_before, not_after, root=True
        )
        ask = cls._ca_cert(
            _name(f"SEV-{product.value}-Simulated"),
            ark_name,
            ask_key.public_key(),
            ark_key,
            2,
            not_before,
            not_after,
            root=False,
        )
        asvk = cls._ca_cert(
            _name(f"SEV-VLEK-{product.value}-Simulated"),
            ark_name,
            asvk_key.public_key(),
            ark_key,
            3,
            not_before,
            not_after,
            root=False,
        )
        return cls(product, ark_key=ark_key, ask_key=ask_key, asvk_key=asvk_key, ark=ark, ask=ask, asvk=asvk)

    @staticmethod
    def _ca_cert(
        subject: x509.Name,
        issuer: x509.Name,
        public_key: rsa.RSAPublicKey,
        signer: rsa.RSAPrivateKey,
        serial: int,
        not_before: datetime,
        not_after: datetime,
        *,
        root: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None if root else 0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=root,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )
        return builder.sign(signer, hashes.SHA384(), rsa_padding=_PSS)

    def dump(self) -> bytes:
        """The vendor (keys and certificates) as JSON bytes, for :meth:`load`. Test material only."""

        def key_pem(key: rsa.RSAPrivateKey) -> str:
            return key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()

        def cert_pem(cert: x509.Certificate) -> str:
            return cert.public_bytes(serialization.Encoding.PEM).decode()

        doc = {
            "format": "donjon-simulated-amd-v1",
            "product": self.product.value,
            "ark_key": key_pem(self._ark_key),
            "ask_key": key_pem(self._ask_key),
            "asvk_key": key_pem(self._asvk_key),
            "ark": cert_pem(self.ark),
            "ask": cert_pem(self.ask),
            "asvk": cert_pem(self.asvk),
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def load(cls, data: bytes) -> SimulatedAmd:
        """A vendor saved by :meth:`dump`."""
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != "donjon-simulated-amd-v1":
            raise ValueError("not a simulated AMD vendor saved by SimulatedAmd.dump()")

        def key(name: str) -> rsa.RSAPrivateKey:
            # The file is simulated-vendor test material that ``dump`` wrote (0600, the
            # user's own); OpenSSL's RSA key validation costs ~0.5 s per 4096-bit key,
            # which every sim-snp Keep start would pay, and protects against nothing here.
            loaded = serialization.load_pem_private_key(
                doc[name].encode(), password=None, unsafe_skip_rsa_key_validation=True
            )
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{name} is not an RSA key")
            return loaded

        def cert(name: str) -> x509.Certificate:
            return x509.load_pem_x509_certificate(doc[name].encode())

        return cls(
            Product(doc["product"]),
            ark_key=key("ark_key"),
            ask_key=key("ask_key"),
            asvk_key=key("asvk_key"),
            ark=cert("ark"),
            ask=cert("ask"),
            asvk=cert("asvk"),
        )

    # -- what a relying party gets ---------------------------------------------------

    def trust_roots(self) -> TrustRoots:
        """Roots that trust this simulated vendor (explicitly: ``extra_trusted``)."""
        return TrustRoots(extra_trusted=(self.ark,))

    def ark_pem(self) -> bytes:
        return self.ark.public_bytes(serialization.Encoding.PEM)

    def cert_chain_pem(self, kind: str = "vcek") -> bytes:
        """ASK (or ASVK for ``"vlek"``) then ARK, as KDS's ``cert_chain`` endpoint serves them."""
        middle = self.ask if kind == "vcek" else self.asvk
        return middle.public_bytes(serialization.Encoding.PEM) + self.ark_pem()

    def default_chip_id(self) -> bytes:
        """This vendor's one simulated chip (Turin chip IDs are 8 bytes, zero-extended)."""
        digest = hashlib.sha512(b"donjon-simulated-chip\0" + self.product.value.encode()).digest()
        return digest[:8] + bytes(56) if self.product is Product.TURIN else digest

    def _tcb_raw(self, tcb: SnpTcb) -> int:
        return tcb.encode(self.product)

    def endorsement_key(
        self,
        *,
        kind: str = "vcek",
        chip_id: bytes | None = None,
        tcb: SnpTcb = DEFAULT_TCB,
        csp_id: str = DEFAULT_CSP_ID,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """The VCEK for (chip, TCB) or the VLEK for TCB: made once, then reused."""
        if kind not in ("vcek", "vlek"):
            raise ValueError("kind must be 'vcek' or 'vlek'")
        chip = chip_id if chip_id is not None else self.default_chip_id()
        if len(chip) != 64:
            raise ValueError("chip_id must be 64 bytes")
        ident = chip if kind == "vcek" else csp_id.encode()
        cache_key = (kind, ident, self._tcb_raw(tcb))
        with self._lock:
            found = self._endorsement.get(cache_key)
            if found is None:
                found = self._issue(kind, chip, tcb, csp_id, not_before, not_after)
                self._endorsement[cache_key] = found
        return found

    def _issue(
        self, kind: str, chip: bytes, tcb: SnpTcb, csp_id: str, not_before: datetime, not_after: datetime
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP384R1())
        return key, self.certify(
            key.public_key(),
            kind=kind,
            chip_id=chip,
            tcb=tcb,
            csp_id=csp_id,
            not_before=not_before,
            not_after=not_after,
        )

    def certify(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        kind: str = "vcek",
        chip_id: bytes | None = None,
        tcb: SnpTcb = DEFAULT_TCB,
        csp_id: str = DEFAULT_CSP_ID,
        not_before: datetime = DEFAULT_NOT_BEFORE,
        not_after: datetime = DEFAULT_NOT_AFTER,
        product_name: str | None = None,
    ) -> x509.Certificate:
        """Issue a VCEK/VLEK certificate for ``public_key`` with the given claims.

        :meth:`report` does this itself; calling it directly lets tests make a
        vendor that mis-issues (a certificate whose TCB, chip or product
        disagrees with the reports its key signs) to exercise those checks.
        """
        chip = chip_id if chip_id is not None else self.default_chip_id()
        issuer, signer = (self.ask, self._ask_key) if kind == "vcek" else (self.asvk, self._asvk_key)
        turin = self.product is Product.TURIN
        spl = {
            amd.OID_BL_SPL: tcb.bootloader,
            amd.OID_TEE_SPL: tcb.tee,
            amd.OID_SNP_SPL: tcb.snp,
            amd.OID_UCODE_SPL: tcb.microcode,
        }
        exts: list[tuple[x509.ObjectIdentifier, bytes]] = [
            (amd.OID_STRUCT_VERSION, _der_int(1 if turin else 0)),
            (amd.OID_PRODUCT_NAME, _der_ia5(product_name or self.product.value)),
        ]
        if turin:
            exts.append((amd.OID_FMC_SPL, _der_int(tcb.fmc or 0)))
        exts += [(oid, _der_int(value)) for oid, value in spl.items()]
        exts += [
            (oid, _der_int(0))
            for oid in amd.OID_SPL_RESERVED
            if not (turin and oid.dotted_string.endswith(".4"))
        ]
        if kind == "vcek":
            # KDS puts the chip ID's raw bytes in extnValue (Turin: the first 8 bytes).
            exts.append((amd.OID_HWID, chip[:8] if turin else chip))
        else:
            exts.append((amd.OID_CSP_ID, _der_ia5(csp_id)))
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("SEV-VCEK-Simulated" if kind == "vcek" else "SEV-VLEK-Simulated"))
            .issuer_name(issuer.subject)
            .public_key(public_key)
            # KDS uses serial 0 for VCEKs; cryptography refuses to *build* that, so 1.
            .serial_number(1)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        for oid, value in exts:
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
        return builder.sign(signer, hashes.SHA384(), rsa_padding=_PSS)

    def crl(
        self,
        revoked_serials: Iterable[int] = (),
        *,
        last_update: datetime = DEFAULT_NOT_BEFORE,
        next_update: datetime = DEFAULT_NOT_AFTER,
    ) -> bytes:
        """A DER CRL issued and signed (RSA-PSS) by the ARK, listing ``revoked_serials``."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ark.subject)
            .last_update(last_update)
            .next_update(next_update)
        )
        for serial in revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last_update).build()
            )
        return builder.sign(self._ark_key, hashes.SHA384(), rsa_padding=_PSS).public_bytes(
            serialization.Encoding.DER
        )

    # -- reports ---------------------------------------------------------------------

    def report(
        self,
        report_data: bytes,
        *,
        version: int = 3,
        measurement: bytes = bytes(48),
        host_data: bytes = bytes(32),
        family_id: bytes = bytes(16),
        image_id: bytes = bytes(16),
        id_key_digest: bytes = bytes(48),
        author_key_digest: bytes | None = None,
        policy: int = DEFAULT_POLICY,
        debug: bool = False,
        vmpl: int = 0,
        guest_svn: int = 0,
        tcb: SnpTcb = DEFAULT_TCB,
        current_tcb: SnpTcb | None = None,
        committed_tcb: SnpTcb | None = None,
        launch_tcb: SnpTcb | None = None,
        platform_info: int = 0x25,
        signing_key: str = "vcek",
        chip_id: bytes | None = None,
        mask_chip_id: bool = False,
        report_id: bytes | None = None,
        report_id_ma: bytes = b"\xff" * 32,
        firmware: tuple[int, int, int] = (1, 55, 29),
        launch_mit_vector: int = 0,
        current_mit_vector: int = 0,
        csp_id: str = DEFAULT_CSP_ID,
        cpuid: tuple[int, int, int] | None = None,
        key_info: int | None = None,
    ) -> bytes:
        """A signed ATTESTATION_REPORT (versions 2, 3, 4 or 5) for ``report_data`` (64 bytes).

        ``tcb`` is the REPORTED_TCB (the endorsement key is issued for it);
        current/committed/launch default to it. ``firmware`` is (major, minor,
        build) for CURRENT and COMMITTED. ``chip_id`` defaults to the vendor's
        simulated chip; ``mask_chip_id`` zeroes it as MaskChipId does.
        ``cpuid`` and ``key_info`` override what the simulated chip would
        report (for negative tests).
        """
        if len(report_data) != 64:
            raise ValueError("report_data must be 64 bytes")
        if version not in (2, 3, 4, 5):
            raise ValueError("version must be 2..5")
        for name, value, size in (
            ("measurement", measurement, 48),
            ("host_data", host_data, 32),
            ("family_id", family_id, 16),
            ("image_id", image_id, 16),
            ("id_key_digest", id_key_digest, 48),
            ("report_id_ma", report_id_ma, 32),
        ):
            if len(value) != size:
                raise ValueError(f"{name} must be {size} bytes")
        chip = chip_id if chip_id is not None else self.default_chip_id()
        key, _ = self.endorsement_key(kind=signing_key, chip_id=chip, tcb=tcb, csp_id=csp_id)
        if debug:
            policy |= POLICY_DEBUG
        author_key_en = author_key_digest is not None
        if key_info is None:
            key_info = int(author_key_en) | ((KEY_VCEK if signing_key == "vcek" else KEY_VLEK) << 2)
        rid = report_id if report_id is not None else hashlib.sha256(report_data + measurement).digest()
        buf = bytearray(REPORT_SIZE)
        struct.pack_into("<IIQ", buf, 0x000, version, guest_svn, policy)
        buf[0x010:0x020] = family_id
        buf[0x020:0x030] = image_id
        struct.pack_into(
            "<IIQQI", buf, 0x030, vmpl, 1, self._tcb_raw(current_tcb or tcb), platform_info, key_info
        )
        buf[0x050:0x090] = report_data
        buf[0x090:0x0C0] = measurement
        buf[0x0C0:0x0E0] = host_data
        buf[0x0E0:0x110] = id_key_digest
        buf[0x110:0x140] = author_key_digest or bytes(48)
        buf[0x140:0x160] = rid
        buf[0x160:0x180] = report_id_ma
        struct.pack_into("<Q", buf, 0x180, self._tcb_raw(tcb))
        if version >= 3:
            buf[0x188:0x18B] = bytes(cpuid or _CPUID[self.product])
        buf[0x1A0:0x1E0] = bytes(64) if mask_chip_id or signing_key == "vlek" else chip
        struct.pack_into("<Q", buf, 0x1E0, self._tcb_raw(committed_tcb or tcb))
        major, minor, build = firmware
        buf[0x1E8:0x1EB] = bytes([build, minor, major])
        buf[0x1EC:0x1EF] = bytes([build, minor, major])
        struct.pack_into("<Q", buf, 0x1F0, self._tcb_raw(launch_tcb or tcb))
        if version >= 5:
            struct.pack_into("<QQ", buf, 0x1F8, launch_mit_vector, current_mit_vector)
        der = key.sign(bytes(buf[:SIGNED_SIZE]), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        buf[0x2A0:0x2E8] = r.to_bytes(72, "little")
        buf[0x2E8:0x330] = s.to_bytes(72, "little")
        return bytes(buf)

    def evidence(
        self,
        report_data: bytes,
        *,
        signing_key: str = "vcek",
        tcb: SnpTcb = DEFAULT_TCB,
        chip_id: bytes | None = None,
        csp_id: str = DEFAULT_CSP_ID,
        **fields: Any,
    ) -> SimulatedEvidence:
        """:meth:`report` (same keywords) and the certificates that verify it: VCEK/VLEK, ASK/ASVK, ARK."""
        report = self.report(
            report_data, signing_key=signing_key, tcb=tcb, chip_id=chip_id, csp_id=csp_id, **fields
        )
        _, cert = self.endorsement_key(kind=signing_key, chip_id=chip_id, tcb=tcb, csp_id=csp_id)
        middle = self.ask if signing_key == "vcek" else self.asvk
        der = serialization.Encoding.DER
        return SimulatedEvidence(
            report=report,
            certs=(cert.public_bytes(der), middle.public_bytes(der), self.ark.public_bytes(der)),
        )


@functools.cache
def default_vendor(product: Product | str = Product.MILAN) -> SimulatedAmd:
    """One simulated vendor per product line, generated on first use and kept for the process."""
    return SimulatedAmd.generate(Product(product))
