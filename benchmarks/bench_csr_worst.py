"""CPU per hostile CSR: what the Steward spends on a request before evidence verification.

Reproduce:

    .venv/bin/python benchmarks/bench_csr_worst.py [--repeat 5]

Every case is a body a client can send to ``POST /attest`` or ``POST /`` within the
size limit (256 KiB): crafted to be as expensive as possible for one part of the
request path — long OBJECT IDENTIFIER arcs, deep nesting, many small elements,
costly signature keys, random garbage. Cases that need it carry a valid signature
and a valid Steward nonce, so they get as far as the checks let them. Each body
goes through :meth:`Steward.prepare` of a real Steward (its own CA, policy, nonce
secret) whose evidence verifier stops the clock: the figure is the CPU time
(``time.process_time``) spent up to the evidence check, or up to the refusal.

The table prints, per case, the body size, the median and the worst CPU ms over
``--repeat`` runs, and what happened (the refusal's check, "evidence" when the
request reached the verifier, or the exception that escaped). The goal
(docs/steward.md "Threat model and limits"): every case decided in at most 10 ms.
The benchmark uses only APIs that existed before the bounds, so the same script
measures both: ``PYTHONPATH=<old checkout>/src python benchmarks/bench_csr_worst.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import cryptography
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon import binding, csr, oids
from donjon.attestation.simsnp import default_vendor
from donjon.cli import main as cli_main
from donjon.steward.config import load_config
from donjon.steward.errors import Refused
from donjon.steward.log import LogEntry
from donjon.steward.service import build_steward

LIMIT = 256 * 1024
MEASUREMENT = hashlib.sha384(b"bench keep image").digest()
WORKLOAD = hashlib.sha256(b"bench workload").digest()


class EvidenceReached(BaseException):
    """Raised by the stub verifier: the request got as far as evidence verification."""


def stop_verifier(*args: Any, **kwargs: Any) -> Any:
    raise EvidenceReached


class MemoryLog:
    """A LogStore in memory: the benchmark measures the checks, not the database."""

    def __init__(self) -> None:
        self.records: list[Mapping[str, Any]] = []

    def append(self, record: Mapping[str, Any], time: str) -> LogEntry:
        self.records.append(dict(record))
        return LogEntry(len(self.records), time, record, bytes(32), bytes(32))

    def entries(self, *, start: int = 1) -> Iterator[LogEntry]:
        return iter(())

    def find_serial(self, serial: str) -> LogEntry | None:
        return None

    def close(self) -> None:
        pass


# --- DER by hand (X.690): the shapes no well-behaved encoder would produce ---


def base128(value: int) -> bytes:
    """One OID arc (X.690 section 8.19.2)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def oid_der(dotted: str) -> bytes:
    return bytes(csr.der_encoder.encode(csr.univ.ObjectIdentifier(dotted)))


def long_arc_oid(size: int) -> bytes:
    """OID 1.2.<one arc of ``size`` base-128 bytes> (X.690 section 8.19)."""
    return tlv(0x06, b"\x2a" + b"\xff" * (size - 2) + b"\x7f")


def nested(depth: int, inner: bytes = b"") -> bytes:
    out = inner
    for _ in range(depth):
        out = tlv(0x30, out)
    return out


def nested_to_size(size: int) -> bytes:
    """As deep a nest of SEQUENCEs as fits in ``size`` bytes."""
    lo, hi = 1, size
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(nested(mid)) <= size:
            lo = mid
        else:
            hi = mid - 1
    return nested(lo)


def fill(unit: bytes, size: int) -> bytes:
    return unit * (size // len(unit))


KEY = ec.generate_private_key(ec.SECP256R1())


def signed(attributes: list[tuple[str, bytes]]) -> bytes:
    """A CSR signed by KEY whose attributes are (type OID, raw DER of the single value)."""
    attrs = csr._Attributes()
    for oid, value in attributes:
        attr = csr._Attribute()
        attr["type"] = csr.univ.ObjectIdentifier(oid)
        values = csr._AttributeValues()
        values.append(csr.univ.Any(value))
        attr["values"] = values
        attrs.append(attr)
    return csr._finish(KEY, attrs)


def signed_raw_attrs(raw: bytes) -> bytes:
    """A CSR signed by KEY whose [0] attributes content is ``raw`` as given."""
    spki = KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    info = tlv(0x30, tlv(0x02, b"\x00") + tlv(0x30, b"") + spki + tlv(0xA0, raw))
    return _sign_info(info, KEY)


def _sign_info(info: bytes, key: Any) -> bytes:
    from cryptography.hazmat.primitives import hashes

    sig = key.sign(info, ec.ECDSA(hashes.SHA256()))
    alg = tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d040302")))
    return tlv(0x30, info + alg + tlv(0x03, b"\x00" + sig))


def native(nonce: bytes, *, stmt_type: bytes | None = None, statements: bytes | None = None,
           certs: bytes | None = None, extra: list[tuple[str, bytes]] = ()) -> bytes:  # fmt: skip
    """A native CSR with a hand-made AttestationBundle."""
    if statements is None:
        stmt_type = stmt_type or oid_der(oids.EVIDENCE_SNP.dotted_string)
        statements = tlv(0x30, stmt_type + tlv(0x04, b"report"))
    bundle = tlv(0x30, tlv(0x30, statements) + (tlv(0x30, certs) if certs is not None else b""))
    return signed(
        [
            (oids.ID_AA_ATTESTATION.dotted_string, bundle),
            (oids.CSR_ATTR_WORKLOAD_DIGEST.dotted_string, tlv(0x04, WORKLOAD)),
            (oids.CSR_ATTR_NONCE.dotted_string, tlv(0x04, nonce)),
            *extra,
        ]
    )


def rsa_spki(modulus_bits: int, exponent: int) -> bytes:
    """An RSA SubjectPublicKeyInfo (RFC 8017 A.1.1) with an odd modulus of that size; no private key."""
    n = (1 << (modulus_bits - 1)) | int.from_bytes(os.urandom(modulus_bits // 8), "big") | 1
    n &= (1 << modulus_bits) - 1
    n |= 1 << (modulus_bits - 1)

    def integer(v: int) -> bytes:
        return tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))

    key = tlv(0x30, integer(n) + integer(exponent))
    alg = tlv(0x30, tlv(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    return tlv(0x30, alg + tlv(0x03, b"\x00" + key))


def native_attributes(nonce: bytes) -> bytes:
    """The [0] attributes of a well-formed native CSR (an SNP statement, digest, nonce)."""
    stmt = tlv(0x30, oid_der(oids.EVIDENCE_SNP.dotted_string) + tlv(0x04, b"r"))

    def attribute(oid: str, value: bytes) -> bytes:
        return tlv(0x30, oid_der(oid) + tlv(0x31, value))

    return tlv(
        0xA0,
        attribute(oids.ID_AA_ATTESTATION.dotted_string, tlv(0x30, tlv(0x30, stmt)))
        + attribute(oids.CSR_ATTR_WORKLOAD_DIGEST.dotted_string, tlv(0x04, WORKLOAD))
        + attribute(oids.CSR_ATTR_NONCE.dotted_string, tlv(0x04, nonce)),
    )


def unsigned_with_spki(spki: bytes, sig_alg_oid: str, sig_len: int, nonce: bytes) -> bytes:
    """A CSR under a key nobody holds: the signature is random, but checking it costs the same."""
    info = tlv(0x30, tlv(0x02, b"\x00") + tlv(0x30, b"") + spki + native_attributes(nonce))
    alg_oid = csr.der_encoder.encode(csr.univ.ObjectIdentifier(sig_alg_oid))
    alg = tlv(0x30, bytes(alg_oid) + (b"\x05\x00" if sig_alg_oid.startswith("1.2.840.113549") else b""))
    return tlv(0x30, info + alg + tlv(0x03, b"\x00" + b"\x01" + os.urandom(sig_len - 1)))


def dsa_spki(p_bits: int) -> bytes:
    """A DSA SubjectPublicKeyInfo (RFC 3279 2.3.2) with a large odd p and a 256-bit prime q
    (not a real group: nobody holds its key, but checking a signature costs the same)."""

    def integer(v: int) -> bytes:
        return tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))

    p = int.from_bytes(os.urandom(p_bits // 8), "big") | (1 << (p_bits - 1)) | 1
    q = 2**256 - 189  # the largest 256-bit prime: s has an inverse modulo q
    g = int.from_bytes(os.urandom(p_bits // 8 - 1), "big") | 2
    y = int.from_bytes(os.urandom(p_bits // 8 - 1), "big") | 3
    params = tlv(0x30, integer(p) + integer(q) + integer(g))
    alg = tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce380401")) + params)
    return tlv(0x30, alg + tlv(0x03, b"\x00" + integer(y)))


def dsa_signature_csr(p_bits: int, nonce: bytes) -> bytes:
    info = tlv(0x30, tlv(0x02, b"\x00") + tlv(0x30, b"") + dsa_spki(p_bits) + native_attributes(nonce))
    alg = tlv(0x30, tlv(0x06, bytes.fromhex("608648016503040302")))  # dsa-with-sha256
    # 0 < r, s < q, minimally encoded (DER): checking it costs two exponentiations modulo p.
    r = int.from_bytes(os.urandom(31), "big") | (1 << 247)
    sig = tlv(0x30, tlv(0x02, r.to_bytes(r.bit_length() // 8 + 1, "big")) * 2)
    return tlv(0x30, info + alg + tlv(0x03, b"\x00" + sig))


def signed_subject(name: bytes) -> bytes:
    """A CSR signed by KEY with ``name`` as its subject, as given."""
    spki = KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _sign_info(tlv(0x30, tlv(0x02, b"\x00") + name + spki + tlv(0xA0, b"")), KEY)


def legacy_extensions(extensions: bytes) -> bytes:
    """A CSR signed by KEY whose extensionRequest holds ``extensions`` as given."""
    return signed([(oids.PKCS9_EXTENSION_REQUEST.dotted_string, tlv(0x30, extensions))])


def legacy_crls(entries: bytes) -> bytes:
    """An Enarx SNP CSR (signed) whose CrlList holds ``entries`` as given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    value = tlv(0x30, tlv(0x30, tlv(0x30, b"\x30\x00") + tlv(0x30, tlv(0x30, entries))) + tlv(0x04, b"r"))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    extension = x509.UnrecognizedExtension(oids.ENARX_SNP_EVIDENCE, value)
    builder = builder.add_extension(extension, critical=False)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def cases(nonce: bytes, valid: bytes) -> list[tuple[str, str, bytes]]:
    """(name, endpoint, body)."""
    p521 = csr.build_csr(
        ec.generate_private_key(ec.SECP521R1()),
        statements=[(oids.EVIDENCE_SNP, b"report")],
        workload_digest=WORKLOAD,
        nonce=nonce,
    )
    room = LIMIT - 600  # what is left for the hostile part next to the CSR's own fields
    out: list[tuple[str, str, bytes]] = [
        ("valid SNP CSR (baseline)", "attest", valid),
        ("statement type: one 60 KB arc", "attest", native(nonce, stmt_type=long_arc_oid(60_000))),
        ("statement type: one 240 KB arc", "attest", native(nonce, stmt_type=long_arc_oid(240_000))),
        ("statement type: 30k short arcs", "attest",
         native(nonce, stmt_type=tlv(0x06, b"\x2a" + b"\x01" * 30_000))),
        ("attribute type: one 240 KB arc", "attest",
         signed_raw_attrs(tlv(0x30, long_arc_oid(240_000) + tlv(0x31, b"\x05\x00")))),
        ("statement: 256 KB nested SEQUENCEs", "attest",
         native(nonce, statements=tlv(0x30, tlv(0x06, b"\x2a\x03") + nested_to_size(room)))),
        ("attribute value: 256 KB nested", "attest",
         signed([("1.2.3", nested_to_size(room))])),
        ("many attributes (7 B each)", "attest",
         signed_raw_attrs(fill(tlv(0x30, tlv(0x06, b"\x2a") + tlv(0x31, b"")), room))),
        ("many statements (6 B each)", "attest",
         native(nonce, statements=fill(tlv(0x30, tlv(0x06, b"\x2a") + b"\x05\x00"), room))),
        ("many certs (2 B each)", "attest", native(nonce, certs=fill(b"\x30\x00", room))),
        ("attribute with many values", "attest",
         signed_raw_attrs(tlv(0x30, tlv(0x06, b"\x2a") + tlv(0x31, fill(b"\x05\x00", room))))),
        ("subject: 256 KB of tiny RDNs", "attest",
         signed_subject(tlv(0x30, fill(tlv(0x31, tlv(0x30, tlv(0x06, b"\x55\x04\x03") + tlv(0x0C, b""))),
                                       room)))),
        ("subject: 256 KB nested", "attest", signed_subject(nested_to_size(room))),
        ("random 256 KB", "attest", os.urandom(LIMIT)),
        ("SEQUENCE header + random", "attest", tlv(0x30, os.urandom(LIMIT - 8))),
        ("SEQUENCE of 256 KB zeros", "attest", tlv(0x30, bytes(LIMIT - 8))),
        ("RSA 16384-bit key, e = 2^64-1", "attest",
         unsigned_with_spki(rsa_spki(16384, 2**64 - 1), "1.2.840.113549.1.1.11", 2048, nonce)),
        ("RSA 3072-bit key, 3071-bit e", "attest",
         unsigned_with_spki(rsa_spki(3072, (1 << 3070) | int.from_bytes(os.urandom(383), "big") | 1),
                            "1.2.840.113549.1.1.11", 384, nonce)),
        ("DSA 10000-bit p", "attest", dsa_signature_csr(10000, nonce)),
        ("RSA 8192-bit, e = 2^32-1 (largest kept)", "attest",
         unsigned_with_spki(rsa_spki(8192, 2**32 - 1), "1.2.840.113549.1.1.11", 1024, nonce)),
        ("P-521 key, valid signature", "attest", p521),
        ("legacy: many tiny extensions", "legacy",
         legacy_extensions(b"".join(tlv(0x30, tlv(0x06, b"\x2a" + base128(i)) + tlv(0x04, b""))
                                    for i in range(room // 10)))),
        ("legacy: 256 KB of tiny CRL entries", "legacy",
         legacy_crls(fill(tlv(0x30, tlv(0x0C, b"") + b"\x30\x00"), room))),
        ("legacy: CRL url nested 256 KB", "legacy",
         legacy_crls(tlv(0x30, tlv(0x0C, b"u") + nested_to_size(room)))),
        ("legacy: CRL entry with long-arc OID", "legacy",
         legacy_crls(tlv(0x30, tlv(0x0C, b"u") + long_arc_oid(room)))),
    ]  # fmt: skip
    return out


def setup(directory: Path, vendor: Any) -> Path:
    with open(os.devnull, "w") as devnull:
        saved, sys.stdout = sys.stdout, devnull
        try:
            assert cli_main(["steward", "init", "--dir", str(directory), "--trust-domain", "bench.test"]) == 0
        finally:
            sys.stdout = saved
    (directory / "sim-ark.pem").write_bytes(vendor.ark_pem())
    coll = directory / "collateral" / "snp-report"
    coll.mkdir(parents=True, exist_ok=True)
    (coll / "ark.crl").write_bytes(vendor.crl())
    text = (directory / "steward.toml").read_text().replace("simulated = []", 'simulated = ["sim-ark.pem"]')
    (directory / "steward.toml").write_text(text)
    (directory / "policy.toml").write_text(
        f"""allow_simulated = true
allow_legacy_enarx = true
[platform.sev-snp]
allowed_measurements = ["{MEASUREMENT.hex()}"]
[[workload]]
digest = "{WORKLOAD.hex()}"
spiffe_path = "/bench"
"""
    )
    return directory / "steward.toml"


def run_one(prepare: Callable[[bytes], Any], body: bytes) -> tuple[float, str]:
    started = time.process_time()
    try:
        prepare(body)
        what = "prepared"
    except EvidenceReached:
        what = "evidence"
    except Refused as e:
        what = e.check
    except Exception as e:
        what = f"{type(e).__name__} escaped"
    return (time.process_time() - started) * 1000, what


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (median and worst are shown)")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    args = parser.parse_args()
    vendor = default_vendor("Milan")
    with tempfile.TemporaryDirectory() as tmp:
        config = setup(Path(tmp), vendor)
        steward = build_steward(load_config(config), verifier=stop_verifier, log=MemoryLog())
        nonce = steward.challenge()[0]
        key = ec.generate_private_key(ec.SECP256R1())
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        ev = vendor.evidence(binding.keep_binding(spki, WORKLOAD, nonce), measurement=MEASUREMENT)
        valid = csr.build_csr(
            key, statements=[(oids.EVIDENCE_SNP, ev.report)], workload_digest=WORKLOAD, nonce=nonce,
            certs=ev.certs,
        )  # fmt: skip
        worst_all = 0.0
        print(f"{'case':40} {'bytes':>7} {'median ms':>10} {'worst ms':>9}  outcome")
        print("-" * 96)
        for name, endpoint, body in cases(nonce, valid):
            if args.only and args.only not in name:
                continue
            assert len(body) <= LIMIT, (name, len(body))
            prepare = steward.prepare if endpoint == "attest" else steward.prepare_legacy
            runs = [run_one(prepare, body) for _ in range(args.repeat)]
            times = [t for t, _ in runs]
            worst_all = max(worst_all, max(times))
            print(
                f"{name:40} {len(body):>7} {statistics.median(times):>10.2f} {max(times):>9.2f}  {runs[0][1]}"
            )
        print("-" * 96)
        print(f"worst case: {worst_all:.2f} ms CPU (goal: at most 10 ms)")
        print(f"python {sys.version.split()[0]}, cryptography {cryptography.__version__}")
        print(f"reproduce: python benchmarks/bench_csr_worst.py --repeat {args.repeat}")


if __name__ == "__main__":
    main()
