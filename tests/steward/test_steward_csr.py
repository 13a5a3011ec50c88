"""CSRs with evidence (native and Enarx), the 64-byte binding and Donjon's OIDs."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon import binding, csr, oids

REPORT = bytes(range(256)) * 4


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
    ],
    ids=["p256", "p384", "ed25519"],
)
def test_native_round_trip(key):
    certs = [b"\x30\x03\x02\x01\x05"]
    der = csr.build_csr(
        key,
        statements=[(oids.EVIDENCE_SNP, REPORT)],
        workload_digest=b"\x11" * 32,
        nonce=b"n" * 56,
        certs=certs,
    )
    # cryptography reads it as a PKCS#10 request with a valid signature and our attribute.
    loaded = x509.load_der_x509_csr(der)
    assert loaded.is_signature_valid
    assert loaded.subject == x509.Name([])
    parsed = csr.parse_native_csr(der)
    assert [(s.kind, s.evidence) for s in parsed.statements] == [("snp-report", REPORT)]
    assert parsed.workload_digest == b"\x11" * 32
    assert parsed.nonce == b"n" * 56
    assert parsed.certs == tuple(certs)
    assert parsed.key_sha256 == hashlib.sha256(parsed.spki_der).digest()
    assert not csr.is_legacy(der)


def test_attestation_attribute_is_the_draft_oid_with_one_value():
    key = ec.generate_private_key(ec.SECP256R1())
    der = csr.build_csr(key, statements=[(oids.EVIDENCE_TDX, b"q")], workload_digest=None, nonce=None)
    attrs = csr._attributes(der)
    assert list(attrs) == ["1.2.840.113549.1.9.16.2.59"]
    assert len(attrs["1.2.840.113549.1.9.16.2.59"]) == 1
    parsed = csr.parse_native_csr(der)
    assert parsed.nonce is None and parsed.workload_digest is None


def test_unknown_statement_type_is_kept_for_the_steward_to_refuse():
    key = ec.generate_private_key(ec.SECP256R1())
    oid = x509.ObjectIdentifier("1.3.6.1.4.1.99999.7")
    der = csr.build_csr(key, statements=[(oid, b"x")], workload_digest=b"\0" * 32, nonce=b"n")
    (statement,) = csr.parse_native_csr(der).statements
    assert statement.kind is None and statement.type == oid


def test_signature_flip_is_csr_signature():
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(
        csr.build_csr(key, statements=[(oids.EVIDENCE_SNP, REPORT)], workload_digest=None, nonce=None)
    )
    der[-4] ^= 0x40
    with pytest.raises(csr.CsrSignatureInvalid) as info:
        csr.parse_native_csr(bytes(der))
    assert info.value.check == "csr.signature"


def test_evidence_flip_is_csr_signature():
    key = ec.generate_private_key(ec.SECP256R1())
    der = bytearray(
        csr.build_csr(key, statements=[(oids.EVIDENCE_SNP, REPORT)], workload_digest=None, nonce=None)
    )
    i = bytes(der).index(REPORT[:64])
    der[i + 10] ^= 0x01  # inside the signed request info
    with pytest.raises(csr.CsrSignatureInvalid):
        csr.parse_native_csr(bytes(der))


def test_oversized_csr_is_refused_before_parsing():
    with pytest.raises(csr.MalformedCsr) as info:
        csr.parse_native_csr(b"\x30" * (csr.MAX_CSR_BYTES + 1))
    assert info.value.check == "csr.size"


def test_statement_count_is_bounded():
    key = ec.generate_private_key(ec.SECP256R1())
    many = [(oids.EVIDENCE_SNP, b"x")] * (csr.MAX_STATEMENTS + 1)
    with pytest.raises(ValueError):
        csr.build_csr(key, statements=many, workload_digest=None, nonce=None)
    with pytest.raises(ValueError):
        csr.build_csr(key, statements=[], workload_digest=None, nonce=None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_parse_or_raise_csr_error(data):
    # Rule: any input either parses or raises CsrError — never another exception.
    for parser in (csr.parse_native_csr, csr.parse_legacy_csr):
        with contextlib.suppress(csr.CsrError):
            parser(data)


_KEY = ec.generate_private_key(ec.SECP256R1())
_VALID = csr.build_csr(
    _KEY, statements=[(oids.EVIDENCE_SNP, REPORT)], workload_digest=b"\1" * 32, nonce=b"n" * 56
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.integers(1, 255))
def test_a_flipped_byte_never_parses_as_the_same_request(index, mask):
    # Rule: changing any byte of a signed CSR either breaks parsing or the signature.
    data = bytearray(_VALID)
    data[index] ^= mask
    try:
        parsed = csr.parse_native_csr(bytes(data))
    except csr.CsrError:
        return
    # The only accepted changes are in the signature's DER encoding that still verify: none for ECDSA.
    pytest.fail(f"flipped byte {index} still parsed: {parsed.statements}")


def _signature_content_offset(der: bytes) -> int:
    # The signature is the last element: BIT STRING (03 len 00 ...) at the end of the DER.
    for pos in range(len(der) - 1, 1, -1):
        if der[pos - 2] == 0x03 and der[pos - 1] == len(der) - pos and der[pos] == 0x00:
            return pos
    raise AssertionError("no signature BIT STRING found")


def test_signature_claiming_unused_bits_is_refused():
    # The same signature bytes re-encoded to claim one padding bit still verify in OpenSSL
    # when that bit is zero; the request must be refused so that one signed CSR has one
    # encoding. (When the signature's last bit is one, OpenSSL itself refuses it, so use a
    # request whose signature ends in a zero bit: ECDSA signatures are random, try a few.)
    key = ec.generate_private_key(ec.SECP256R1())
    for _ in range(64):
        der = csr.build_csr(key, statements=[(oids.EVIDENCE_SNP, REPORT)], workload_digest=None, nonce=None)
        if der[-1] & 1 == 0:
            break
    else:
        pytest.fail("no ECDSA signature ending in a zero bit in 64 tries")
    assert csr.parse_native_csr(der)  # the original parses
    data = bytearray(der)
    data[_signature_content_offset(der)] = 0x01
    assert x509.load_der_x509_csr(bytes(data)).is_signature_valid  # OpenSSL alone would accept it
    with pytest.raises(csr.MalformedCsr) as info:
        csr.parse_native_csr(bytes(data))
    assert info.value.check == "csr.parse"
    assert "unused bits" in info.value.reason


def test_legacy_round_trip_snp_and_sgx():
    key = ec.generate_private_key(ec.SECP384R1())
    der = csr.build_legacy_csr(
        key, "snp-report", REPORT, certs=[b"\x30\x00"], crls=[("http://crl", b"\x30\x00")]
    )
    parsed = csr.parse_legacy_csr(der)
    assert (parsed.kind, parsed.evidence, parsed.certs, parsed.crls) == (
        "snp-report", REPORT, (b"\x30\x00",), (("http://crl", b"\x30\x00"),)
    )  # fmt: skip
    assert csr.is_legacy(der)
    der = csr.build_legacy_csr(key, "sgx-quote", b"quote", certs=[b"\x30\x00"] * 2, tcb_info=b"{}")
    parsed = csr.parse_legacy_csr(der)
    assert (parsed.kind, parsed.evidence, parsed.tcb_info, parsed.crls) == ("sgx-quote", b"quote", b"{}", ())
    with pytest.raises(csr.MalformedCsr) as info:
        csr.parse_legacy_csr(_VALID)
    assert info.value.check == "csr.no_evidence"


def test_binding_covers_key_workload_and_nonce():
    spki, wd, nonce = b"\x30\x02\x05\x00", b"\x01" * 32, b"\x02" * 56
    b = binding.keep_binding(spki, wd, nonce)
    assert len(b) == 64
    expected = hashlib.sha512(b"donjon-keep-v1\x00" + spki + wd + nonce).digest()
    assert b == expected
    binding.check_binding(b, spki, wd, nonce)
    for args in ((b"\x30\x02\x05\x01", wd, nonce), (spki, b"\x03" * 32, nonce), (spki, wd, b"\x04" * 56)):
        with pytest.raises(binding.BindingMismatch):
            binding.check_binding(b, *args)
    with pytest.raises(ValueError):
        binding.keep_binding(spki, b"short", nonce)


def test_legacy_bindings_are_enarx_key_hashes():
    spki = b"\x30\x03\x01\x02\x03"
    assert binding.legacy_binding("snp-report", spki) == hashlib.sha384(spki).digest() + bytes(16)
    assert binding.legacy_binding("sgx-quote", spki) == hashlib.sha256(spki).digest() + bytes(32)
    with pytest.raises(binding.BindingMismatch):
        binding.check_legacy_binding("sgx-quote", bytes(64), spki)


def test_donjon_arc_is_csr_only_and_certificate_oids_are_checked():
    assert oids.arcs(oids.DONJON_ARC)[2] >= 2**31
    with pytest.raises(ValueError):
        oids.require_certificate_safe(oids.EVIDENCE_SNP)
    assert oids.require_certificate_safe("1.3.6.1.4.1.58270.1.3").dotted_string == "1.3.6.1.4.1.58270.1.3"
    assert oids.require_certificate_safe(f"1.3.6.1.4.1.{2**31 - 1}")
    with pytest.raises(ValueError):
        oids.require_certificate_safe(f"1.3.6.1.4.1.{2**31}")
    with pytest.raises(ValueError):
        oids.require_certificate_safe("1.40.3")
    # One arc for every Donjon OID, all distinct.
    mine = [
        v
        for v in vars(oids).values()
        if isinstance(v, x509.ObjectIdentifier) and v.dotted_string.startswith("2.25.")
    ]
    assert len({o.dotted_string for o in mine}) == len(mine) >= 7
    assert all(o.dotted_string.startswith(oids.DONJON_ARC + ".") for o in mine)


def _statement_bundle() -> bytes:
    from pyasn1.codec.der import encoder
    from pyasn1.type import univ

    oid = encoder.encode(univ.ObjectIdentifier(oids.EVIDENCE_SNP.dotted_string))
    stmt = b"\x04\x03abc"
    inner = b"\x30" + bytes([len(oid) + len(stmt)]) + oid + stmt
    seq = b"\x30" + bytes([len(inner)]) + inner
    return b"\x30" + bytes([len(seq)]) + seq


def test_der_reader_reads_a_bundle_and_its_oids():
    statements, certs = csr._bundle(_statement_bundle())
    assert statements == [(oids.EVIDENCE_SNP.dotted_string, b"\x04\x03abc")] and certs == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b + b"\x00",  # trailing byte
        lambda b: b"\x30\x81" + b[1:],  # long form for a short length (not DER)
        lambda b: b[:-1],  # truncated
        lambda b: b"\x31" + b[1:],  # SET instead of SEQUENCE
        lambda b: b[:8] + b"\x80" + b[9:],  # the OID's first arc byte padded with 0x80
    ],
    ids=["trailing", "non-minimal-length", "truncated", "wrong-tag", "oid-padding"],
)
def test_der_reader_is_strict(mutate):
    with pytest.raises(csr.MalformedCsr):
        csr._bundle(mutate(_statement_bundle()))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_der_reader_any_bytes_parse_or_raise_malformed(data):
    # Rule: the request-path DER reader never raises anything but MalformedCsr.
    with contextlib.suppress(csr.MalformedCsr):
        csr._bundle(data)
    with contextlib.suppress(csr.MalformedCsr):
        csr._attributes(data)


# --- bounded decoding (issue 9, finding 2): every field read with limits, in linear time ---


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def _signed(key, attributes):
    """A CSR signed by ``key`` whose attributes are (OID, raw DER of the single value)."""
    attrs = csr._Attributes()
    for oid, value in attributes:
        attrs.append(csr._attribute(oid, value))
    return csr._finish(key, attrs)


def _native(statements: bytes, certs: bytes | None = None, key=_KEY) -> bytes:
    bundle = _tlv(0x30, _tlv(0x30, statements) + (_tlv(0x30, certs) if certs is not None else b""))
    return _signed(
        key,
        [
            (oids.ID_AA_ATTESTATION, bundle),
            (oids.CSR_ATTR_WORKLOAD_DIGEST, _tlv(0x04, b"\1" * 32)),
            (oids.CSR_ATTR_NONCE, _tlv(0x04, b"n" * 56)),
        ],
    )


def _snp_statement(evidence: bytes = b"r") -> bytes:
    from pyasn1.codec.der import encoder
    from pyasn1.type import univ

    oid = encoder.encode(univ.ObjectIdentifier(oids.EVIDENCE_SNP.dotted_string))
    return _tlv(0x30, oid + _tlv(0x04, evidence))


@pytest.mark.parametrize("arc_bytes", [60_000, 240_000])
def test_a_statement_type_with_one_huge_arc_is_malformed_not_a_value_error(arc_bytes):
    # Before: quadratic time (0.3 s / 5 s), then ValueError from int -> str (Python's 4300-digit limit).
    oid = _tlv(0x06, b"\x2a" + b"\xff" * arc_bytes + b"\x7f")
    with pytest.raises(csr.MalformedCsr) as info:
        csr.parse_native_csr(_native(_tlv(0x30, oid + b"\x04\x01r")))
    assert info.value.check == "csr.parse" and "exceeds 63" in info.value.reason


def test_oid_limits_are_cryptographys():
    # 63 bytes with arcs < 2**128 is what cryptography can represent; beyond it, MalformedCsr.
    longest = b"\x2a" + b"\x01" * 62
    assert csr._oid_text(longest, "t").startswith("1.2.1.1")
    for bad in (b"\x2a" + b"\x01" * 63, b"\x2a" + b"\x84" + b"\x80" * 18 + b"\x00"):
        with pytest.raises(csr.MalformedCsr):
            csr._oid_text(bad, "t")
    assert csr._oid_text(b"\x2a" + b"\x83" + b"\xff" * 17 + b"\x7f", "t")  # 2**128 - 1: fine
    text = csr._oid_text(b"\x2a" + b"\x83" + b"\xff" * 17 + b"\x7f", "t")
    assert csr._object_identifier(text, "t").dotted_string == text


@pytest.mark.parametrize(
    "body",
    [
        lambda: _native(_snp_statement() * (csr.MAX_STATEMENTS + 1)),
        lambda: _native(_snp_statement(), certs=b"\x30\x00" * (csr.MAX_CERTS + 1)),
        lambda: _native(_snp_statement() * 8_000),
        lambda: _signed(_KEY, [(x509.ObjectIdentifier(f"1.2.3.{i}"), b"\x05\x00") for i in range(17)]),
        lambda: _native(_snp_statement(), certs=b"\x30\x00" * 40_000),
    ],
    ids=["statements", "certs", "many-statements", "attributes", "many-certs"],
)
def test_counts_are_bounded_at_every_level(body):
    with pytest.raises(csr.MalformedCsr) as info:
        csr.parse_native_csr(body())
    assert "more than" in info.value.reason or "statements" in info.value.reason


def test_the_reader_stops_at_the_first_element_too_many():
    # 100,000 elements cost what 9 do: the reader never lists them all.
    data = b"\x05\x00" * 100_000
    with pytest.raises(csr.MalformedCsr) as info:
        csr._children(data, 0, len(data), "x", 8)
    assert "more than 8" in info.value.reason


def _csr_with_key(spki: bytes, signature: bytes, sig_alg: bytes) -> bytes:
    info = _tlv(0x30, b"\x02\x01\x00" + b"\x30\x00" + spki + b"\xa0\x00")
    return _tlv(0x30, info + sig_alg + _tlv(0x03, b"\x00" + signature))


def _integer(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


_RSA_SHA256 = _tlv(0x30, bytes.fromhex("06092a864886f70d01010b0500"))


def _rsa_spki(bits: int, e: int) -> bytes:
    n = (1 << (bits - 1)) | 1 | (0xABCDEF << 8)
    key = _tlv(0x30, _integer(n) + _integer(e))
    return _tlv(0x30, bytes.fromhex("300d06092a864886f70d0101010500") + _tlv(0x03, b"\x00" + key))


@pytest.mark.parametrize(
    ("bits", "e", "why"),
    [(16384, 65537, "bits"), (3072, (1 << 3000) + 1, "exponent"), (1024, 65537, "bits")],
    ids=["rsa-16384", "rsa-huge-exponent", "rsa-1024"],
)
def test_costly_or_weak_rsa_keys_are_refused_before_their_signature(bits, e, why):
    # The signature is garbage: had it been checked, the answer would be csr.signature (and cost
    # a modular exponentiation as long as the key or the exponent).
    body = _csr_with_key(_rsa_spki(bits, e), b"\x01" * (bits // 8), _RSA_SHA256)
    with pytest.raises(csr.UnsupportedKey) as info:
        csr._load(body)  # size, DER, key, signature: what both parsers run after the structure
    assert info.value.check == "csr.key"


def test_dsa_keys_are_refused_before_their_signature():
    q = (1 << 255) | 1
    p = (1 << 2047) | 3
    params = _tlv(0x30, _integer(p) + _integer(q) + _integer(2))
    spki = _tlv(
        0x30, _tlv(0x30, bytes.fromhex("06072a8648ce380401") + params) + _tlv(0x03, b"\x00" + _integer(5))
    )
    sig = _tlv(0x30, _integer(1) + _integer(1))
    body = _csr_with_key(spki, sig, _tlv(0x30, bytes.fromhex("0609608648016503040302")))
    with pytest.raises(csr.UnsupportedKey):
        csr._load(body)


def test_accepted_keys_still_parse():
    from cryptography.hazmat.primitives.asymmetric import rsa

    for key in (ec.generate_private_key(ec.SECP521R1()), rsa.generate_private_key(65537, 2048)):
        der = csr.build_csr(key, statements=[(oids.EVIDENCE_SNP, b"r")], workload_digest=None, nonce=None)
        assert csr.parse_native_csr(der).statements[0].evidence == b"r"


def test_legacy_structures_are_read_with_limits():
    key = ec.generate_private_key(ec.SECP384R1())
    entries = b"".join(_tlv(0x30, _tlv(0x0C, b"http://crl") + b"\x30\x00") for _ in range(csr.MAX_CRLS + 1))
    value = _tlv(0x30, _tlv(0x30, b"\x30\x00" + _tlv(0x30, _tlv(0x30, entries))) + _tlv(0x04, REPORT))
    ext = _tlv(0x30, _tlv(0x06, bytes.fromhex("2b0601040183c71e0103")) + _tlv(0x04, value))
    with pytest.raises(csr.MalformedCsr) as info:
        csr.parse_legacy_csr(_signed(key, [(oids.PKCS9_EXTENSION_REQUEST, _tlv(0x30, ext))]))
    assert "more than 8" in info.value.reason
    # A URL that is not UTF-8, and an extension's critical flag that is not DER TRUE.
    bad = csr.build_legacy_csr(
        key, "snp-report", REPORT, certs=[b"\x30\x00"], crls=[("u\u00e9", b"\x30\x00")]
    )
    bad = bad.replace("u\u00e9".encode(), b"u\xff")
    with pytest.raises(csr.CsrError):  # the signature breaks too; the structure is read first
        csr.parse_legacy_csr(bad)
    ext = _tlv(
        0x30, _tlv(0x06, bytes.fromhex("2b0601040183c71e0103")) + b"\x01\x01\x01" + _tlv(0x04, b"\x30\x00")
    )
    body = _signed(key, [(oids.PKCS9_EXTENSION_REQUEST, _tlv(0x30, ext))])
    with pytest.raises(csr.MalformedCsr) as info:
        csr.parse_legacy_csr(body)
    assert "critical" in info.value.reason
    assert not csr.is_legacy(body)


def _der_junk():
    leaf = st.one_of(
        st.builds(_tlv, st.integers(0, 255), st.binary(max_size=40)),
        st.integers(1, 5000).map(lambda n: _tlv(0x06, b"\x2a" + b"\xff" * n + b"\x7f")),
        st.builds(
            lambda t, n: bytes([t, 0x84]) + n.to_bytes(4, "big"),
            st.integers(0, 255),
            st.integers(0, 2**32 - 1),
        ),
    )
    return st.recursive(
        leaf,
        lambda inner: st.builds(
            lambda tag, parts: _tlv(tag, b"".join(parts)),
            st.sampled_from([0x30, 0x31, 0xA0]),
            st.lists(inner, max_size=4),
        ),
        max_leaves=10,
    )


@settings(max_examples=300, deadline=None)
@given(_der_junk(), st.sampled_from(["statements", "certs", "attribute", "legacy"]))
def test_signed_der_junk_anywhere_parses_or_raises_csr_error(junk, where):
    # Rule: a signed CSR with DER-shaped junk in any field Donjon reads parses or raises CsrError.
    if where == "statements":
        body = _native(junk)
    elif where == "certs":
        body = _native(_snp_statement(), certs=junk)
    elif where == "attribute":
        body = _signed(_KEY, [(oids.ID_AA_ATTESTATION, junk)])
    else:
        body = _signed(_KEY, [(oids.PKCS9_EXTENSION_REQUEST, junk)])
    for parser in (csr.parse_native_csr, csr.parse_legacy_csr):
        with contextlib.suppress(csr.CsrError):
            parser(body)
