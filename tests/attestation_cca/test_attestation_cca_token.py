"""Arm CCA token verification against the recorded sample tokens and tokens built here."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.attestation import MalformedEvidence, TcbStatus, TeeType, VerificationFailed
from donjon.attestation.cca import (
    MAX_TOKEN_BYTES,
    load_platform_key,
    parse_cca_token,
    verify_cca_token,
)

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _read(vectors: Path, rel: str) -> bytes:
    return (vectors / rel).read_bytes()


@pytest.fixture
def ccatoken(vectors: Path) -> tuple[bytes, ec.EllipticCurvePublicKey]:
    return _read(vectors, "cca/ccatoken/cca_token.cbor"), load_platform_key(
        _read(vectors, "cca/ccatoken/cca_platform.pub")
    )


@pytest.fixture
def trustee(vectors: Path) -> tuple[bytes, ec.EllipticCurvePublicKey]:
    return _read(vectors, "cca/trustee/cca-example-token.cbor"), load_platform_key(
        _read(vectors, "cca/trustee/cpak-pub.json")
    )


# -- recorded tokens -------------------------------------------------------------------------------


def test_ccatoken_sample_verifies_with_its_pinned_key(ccatoken: tuple[bytes, Any]) -> None:
    token, key = ccatoken
    ev = verify_cca_token(token, platform_keys=[key], at=AT, expected_challenge=b"\xab" * 64)
    c = ev.claims
    assert c.tee is TeeType.CCA
    assert c.report_data == b"\xab" * 64
    assert c.measurement == bytes(32)  # RIM is zero in this TF-RMM sample (MANIFEST)
    assert (
        c.measurements["personalization"]
        == b"The quick brown fox jumps over 13 lazy dogs.The quick brown fox "
    )
    assert [c.measurements[f"rem{i}"] for i in range(4)] == [bytes(32)] * 4
    assert c.raw["lifecycle"] == 0x3003 and c.raw["lifecycle_state"] == "secured"
    assert c.debug is False
    assert c.tcb_status is TcbStatus.UP_TO_DATE
    assert c.raw["cpak_test_key"] is True
    # The sample CPAK's private key is public: its tokens prove no hardware.
    assert c.simulated is True
    assert c.raw["platform_profile"] == "http://arm.com/CCA-SSD/1.0.0"
    assert c.raw["implementation_id"].startswith(b"\x7fELF")
    assert ev.evidence_sha256 == hashlib.sha256(token).digest()
    assert ev.verified_at == AT


def test_trustee_sample_verifies_with_its_jwk_key(trustee: tuple[bytes, Any]) -> None:
    token, key = trustee
    c = verify_cca_token(token, platform_keys=[key], at=AT).claims
    assert c.measurement.hex().startswith("ae87fbf7f105e71a7827cb6f0896889c")  # RIM from MANIFEST
    assert c.report_data.hex().startswith("57e979ae")
    assert c.raw["realm_hash_algo"] == "sha-512" and c.raw["rak_hash_algo"] == "sha-256"
    assert len(c.raw["sw_components"]) == 13
    assert c.measurements["sw0:RSE_BL1_2"].hex().startswith("9a271f2a")
    assert c.as_dict()["tee"] == "cca"


def test_pem_and_jwk_give_the_same_key(vectors: Path) -> None:
    pem = load_platform_key(_read(vectors, "cca/ccatoken/cca_platform.pub"))
    jwk = load_platform_key(_read(vectors, "cca/trustee/cpak-pub.json"))
    assert pem.public_numbers() == jwk.public_numbers()


def test_wrong_platform_key_is_refused(ccatoken: tuple[bytes, Any]) -> None:
    token, _ = ccatoken
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(VerificationFailed) as e:
        verify_cca_token(token, platform_keys=[other], at=AT)
    assert e.value.check == "cca.platform.signature"


def test_one_of_several_pinned_keys_is_enough(ccatoken: tuple[bytes, Any]) -> None:
    token, key = ccatoken
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert verify_cca_token(token, platform_keys=[other, key], at=AT).claims.tee is TeeType.CCA


def test_no_pinned_key_is_refused(ccatoken: tuple[bytes, Any]) -> None:
    with pytest.raises(VerificationFailed) as e:
        verify_cca_token(ccatoken[0], platform_keys=[], at=AT)
    assert e.value.check == "cca.platform.key"


def test_unexpected_challenge_is_refused(ccatoken: tuple[bytes, Any]) -> None:
    token, key = ccatoken
    with pytest.raises(VerificationFailed) as e:
        verify_cca_token(token, platform_keys=[key], at=AT, expected_challenge=b"\xac" * 64)
    assert e.value.check == "cca.challenge"


def test_naive_time_is_a_bug(ccatoken: tuple[bytes, Any]) -> None:
    with pytest.raises(ValueError):
        verify_cca_token(ccatoken[0], platform_keys=[ccatoken[1]], at=datetime(2026, 1, 1))


def _rewrite(token: bytes, which: int, edit: Any) -> bytes:
    """Re-encode ``token`` with ``edit`` applied to the COSE_Sign1 array of token ``which``."""
    outer = dict(cbor2.loads(token).value)
    arr = list(cbor2.loads(outer[which]).value)
    edit(arr)
    outer[which] = cbor2.dumps(cbor2.CBORTag(18, arr))
    return cbor2.dumps(cbor2.CBORTag(399, outer))


def _flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 0x01])


@pytest.mark.parametrize(
    ("which", "index", "check"),
    [
        (44234, 2, "cca.platform.signature"),  # platform payload
        (44234, 3, "cca.platform.signature"),  # platform signature
        (44241, 3, "cca.realm.signature"),  # realm signature
    ],
)
def test_flipped_bit_in_a_signed_part_fails(
    ccatoken: tuple[bytes, Any], which: int, index: int, check: str
) -> None:
    token, key = ccatoken

    def edit(arr: list[Any]) -> None:
        arr[index] = _flip_last(arr[index])

    with pytest.raises((VerificationFailed, MalformedEvidence)) as e:
        verify_cca_token(_rewrite(token, which, edit), platform_keys=[key], at=AT)
    if isinstance(e.value, VerificationFailed):
        assert e.value.check == check


def test_changed_realm_challenge_breaks_the_realm_signature(ccatoken: tuple[bytes, Any]) -> None:
    token, key = ccatoken

    def edit(arr: list[Any]) -> None:
        claims = dict(cbor2.loads(arr[2]))
        claims[10] = b"\xac" * 64
        arr[2] = cbor2.dumps(claims)

    with pytest.raises(VerificationFailed) as e:
        verify_cca_token(_rewrite(token, 44241, edit), platform_keys=[key], at=AT)
    assert e.value.check == "cca.realm.signature"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bit=st.integers(min_value=0, max_value=1222 * 8 - 1))
def test_any_flipped_bit_never_verifies(ccatoken: tuple[bytes, Any], bit: int) -> None:
    """Rule: a token with any one bit flipped never verifies."""
    token, key = ccatoken
    bit %= len(token) * 8
    mutated = bytearray(token)
    mutated[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((VerificationFailed, MalformedEvidence)):
        verify_cca_token(bytes(mutated), platform_keys=[key], at=AT)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2048))
def test_any_bytes_parse_or_raise_malformed(data: bytes) -> None:
    """Rule: any bytes either parse or raise MalformedEvidence."""
    with contextlib.suppress(MalformedEvidence):
        parse_cca_token(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=2233))
def test_truncated_token_is_malformed(trustee: tuple[bytes, Any], cut: int) -> None:
    token, _ = trustee
    with pytest.raises(MalformedEvidence):
        parse_cca_token(token[: cut % len(token)])


def test_oversized_token_is_refused_before_decoding() -> None:
    with pytest.raises(MalformedEvidence) as e:
        parse_cca_token(b"\x00" * (MAX_TOKEN_BYTES + 1))
    assert e.value.check == "cca.size"


def test_deep_nesting_is_malformed() -> None:
    with pytest.raises(MalformedEvidence):
        parse_cca_token(b"\x81" * 500 + b"\x00")


# -- tokens built here, to reach the checks the samples cannot -------------------------------------


def _sign1(key: ec.EllipticCurvePrivateKey, payload: dict[int, Any], alg: int = -35) -> bytes:
    protected = cbor2.dumps({1: alg})
    payload_b = cbor2.dumps(payload)
    tbs = cbor2.dumps(["Signature1", protected, b"", payload_b])
    hash_alg = {-7: hashes.SHA256(), -35: hashes.SHA384()}[alg]
    r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hash_alg)))
    size = (key.curve.key_size + 7) // 8
    sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload_b, sig]))


def _build(
    *,
    cpak: ec.EllipticCurvePrivateKey,
    rak: ec.EllipticCurvePrivateKey,
    cose_key: bool = False,
    lifecycle: int = 0x3000,
    bind: bool = True,
) -> bytes:
    nums = rak.public_key().public_numbers()
    if cose_key:
        rak_claim = cbor2.dumps({1: 2, -1: 2, -2: nums.x.to_bytes(48, "big"), -3: nums.y.to_bytes(48, "big")})
    else:
        rak_claim = b"\x04" + nums.x.to_bytes(48, "big") + nums.y.to_bytes(48, "big")
    realm = {
        265: "tag:arm.com,2023:realm#1.0.0",
        10: b"\x11" * 64,
        44235: b"\x22" * 64,
        44236: "sha-384",
        44237: rak_claim,
        44238: b"\x33" * 48,
        44239: [b"\x44" * 48] * 4,
        44240: "sha-256",
    }
    challenge = hashlib.sha256(rak_claim).digest() if bind else bytes(32)
    platform = {
        265: "tag:arm.com,2023:cca_platform#1.0.0",
        10: challenge,
        2396: b"\x55" * 32,
        256: b"\x01" + b"\x66" * 32,
        2401: b"\x00",
        2395: lifecycle,
        2399: [{1: "RMM", 2: b"\x77" * 32, 5: b"\x88" * 32}],
        2402: "sha-256",
    }
    return cbor2.dumps(cbor2.CBORTag(399, {44234: _sign1(cpak, platform), 44241: _sign1(rak, realm)}))


@pytest.fixture(scope="module")
def keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    return ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())


def test_built_token_with_cose_key_rak_verifies(keys: Any) -> None:
    cpak, rak = keys
    c = verify_cca_token(
        _build(cpak=cpak, rak=rak, cose_key=True), platform_keys=[cpak.public_key()], at=AT
    ).claims
    assert c.measurement == b"\x33" * 48
    assert c.raw["cpak_test_key"] is False and c.simulated is False
    assert c.raw["realm_profile"] == "tag:arm.com,2023:realm#1.0.0"


def test_realm_not_bound_to_platform_is_refused(keys: Any) -> None:
    cpak, rak = keys
    with pytest.raises(VerificationFailed) as e:
        verify_cca_token(_build(cpak=cpak, rak=rak, bind=False), platform_keys=[cpak.public_key()], at=AT)
    assert e.value.check == "cca.binding"


def test_debug_lifecycle_is_reported_as_debug(keys: Any) -> None:
    cpak, rak = keys
    token = _build(cpak=cpak, rak=rak, lifecycle=0x4000)
    c = verify_cca_token(token, platform_keys=[cpak.public_key()], at=AT).claims
    assert c.debug is True and c.raw["lifecycle_state"] == "non-psa-rot-debug"


@pytest.mark.parametrize("lifecycle", [0x0000, 0x6000, 0x7000])
def test_unusable_lifecycle_is_refused(keys: Any, lifecycle: int) -> None:
    cpak, rak = keys
    with pytest.raises(VerificationFailed) as e:
        verify_cca_token(
            _build(cpak=cpak, rak=rak, lifecycle=lifecycle), platform_keys=[cpak.public_key()], at=AT
        )
    assert e.value.check == "cca.lifecycle"


def test_realm_signed_by_another_key_is_refused(keys: Any) -> None:
    cpak, rak = keys
    token = _build(cpak=cpak, rak=rak)
    impostor = ec.generate_private_key(ec.SECP384R1())

    def edit(arr: list[Any]) -> None:
        resigned = cbor2.loads(_sign1(impostor, cbor2.loads(arr[2]))).value
        arr[3] = resigned[3]

    with pytest.raises(VerificationFailed) as e:
        verify_cca_token(_rewrite(token, 44241, edit), platform_keys=[cpak.public_key()], at=AT)
    assert e.value.check == "cca.realm.signature"


def test_curve_not_matching_algorithm_is_refused(keys: Any) -> None:
    """ES256 over a P-384 CPAK is not accepted, even though ECDSA itself would not care."""
    _cpak, rak = keys
    p256 = ec.generate_private_key(ec.SECP256R1())
    token = _build(cpak=p256, rak=rak)
    with pytest.raises(VerificationFailed):
        verify_cca_token(token, platform_keys=[p256.public_key()], at=AT)


def test_critical_header_is_malformed(keys: Any) -> None:
    cpak, rak = keys
    token = _build(cpak=cpak, rak=rak)

    def edit(arr: list[Any]) -> None:
        arr[0] = cbor2.dumps({1: -35, 2: [99]})

    with pytest.raises(MalformedEvidence) as e:
        parse_cca_token(_rewrite(token, 44234, edit))
    assert e.value.check == "cca.platform.crit"


def test_bad_platform_key_input_is_malformed() -> None:
    for data in (
        b"",
        b"{}",
        b'{"kty": "RSA"}',
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        b'{"a":' + b"[" * 2000 + b"]" * 2000 + b"}",  # nesting past Python's recursion limit
        b'{"kty": "EC", "crv": "P-256", "x": "@@@", "y": "AA"}',  # not base64url
    ):
        with pytest.raises(MalformedEvidence):
            load_platform_key(data)


def test_dispatcher_verifies_a_cca_token_with_pinned_keys(ccatoken: tuple[bytes, Any]) -> None:
    from donjon.attestation.verify import TrustRoots, verify_evidence

    token, key = ccatoken
    ev = verify_evidence("cca-token", token, roots=TrustRoots(), at=AT, options={"platform_keys": [key]})
    assert ev.claims.tee is TeeType.CCA
    with pytest.raises(VerificationFailed):
        verify_evidence("cca-token", token, roots=TrustRoots(), at=AT, options={"platform_keys": []})
