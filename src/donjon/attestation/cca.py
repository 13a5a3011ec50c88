"""Arm CCA attestation tokens: parse and verify a realm + platform token pair.

Pure: token bytes, the pinned platform key(s), the expected challenge and the
verification time go in; a :class:`VerifiedEvidence` or a specific
:class:`AttestationError` comes out. No network, no clock, no files.

Layout (Arm "Realm Management Monitor specification" (RMM) A7.2 "Attestation
token format", and draft-ffm-rats-cca-token):

* The CCA attestation token is a CBOR tag 399 wrapping a map
  ``{44234: platform token, 44241: realm delegated token}``; each value is a
  byte string holding a COSE_Sign1 (RFC 9052 section 4.2, usually tag 18).
* The realm token is signed by the Realm Attestation Key (RAK), whose public
  key the realm token carries itself (claim 44237).
* The platform token is signed by the CCA Platform Attestation Key (CPAK). No
  public vendor root exists for it, so the caller pins the CPAK public key(s).
* The platform token's challenge (claim 10) is the hash of the RAK public key
  claim, with the algorithm of realm claim 44240
  (cca-realm-public-key-hash-algo-id): that binds the realm token to the platform.

The RAK public key claim is a raw SEC1 uncompressed point in the first
(legacy, "http://arm.com/CCA-SSD/1.0.0") profile and a CBOR-encoded COSE_Key
(RFC 9053 section 7.1.1, EC2) in the "tag:arm.com,2023:realm#1.0.0" profile;
both are accepted. The hash in the platform challenge is over the claim's bytes
exactly as carried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation.claims import Claims, TcbStatus, TeeType, VerifiedEvidence
from donjon.attestation.errors import MalformedEvidence, VerificationFailed
from donjon.attestation.pki import require_aware

__all__ = [
    "KNOWN_TEST_CPAK_SHA256",
    "MAX_TOKEN_BYTES",
    "CcaToken",
    "CoseSign1",
    "PlatformClaims",
    "RealmClaims",
    "SwComponent",
    "load_platform_key",
    "parse_cca_token",
    "verify_cca_token",
]

#: Real tokens are 1-4 KiB (a platform token with a few dozen software
#: components); anything larger is refused before decoding.
MAX_TOKEN_BYTES = 64 * 1024
#: Nesting deeper than this is refused (the token is at most 5 levels deep).
_MAX_DEPTH = 12
#: Bounds on the variable-length parts of a token.
_MAX_SW_COMPONENTS = 64
_MAX_KEY_BYTES = 4096

# cbor2 decodes arrays inside tags as tuples, elsewhere as lists.
_ARRAY = (list, tuple)

# RMM A7.2.1 "CCA attestation token": the collection's tag and keys.
_TAG_CCA_TOKEN = 399
_TAG_COSE_SIGN1 = 18
_KEY_PLATFORM = 44234
_KEY_REALM = 44241

# RMM A7.2.3.1 "Realm claims".
_R_CHALLENGE = 10
_R_PROFILE = 265
_R_PERSONALIZATION = 44235
_R_HASH_ALGO = 44236
_R_PUBLIC_KEY = 44237
_R_RIM = 44238
_R_REM = 44239
_R_PUBLIC_KEY_HASH_ALGO = 44240

# RMM A7.2.2 / Arm CCA Security Model "CCA platform claims" (PSA token keys).
_P_PROFILE = 265
_P_CHALLENGE = 10
_P_INSTANCE_ID = 256
_P_LIFECYCLE = 2395
_P_IMPLEMENTATION_ID = 2396
_P_SW_COMPONENTS = 2399
_P_VERIFICATION_SERVICE = 2400
_P_CONFIG = 2401
_P_HASH_ALGO = 2402

# PSA software component map keys (PSA attestation token, "Software Components").
_SW_TYPE = 1
_SW_VALUE = 2
_SW_VERSION = 4
_SW_SIGNER_ID = 5
_SW_HASH_ALGO = 6

# IANA "Named Information Hash Algorithm Registry" names used by CCA tokens.
_HASHES: Mapping[str, tuple[str, int]] = {
    "sha-256": ("sha256", 32),
    "sha-384": ("sha384", 48),
    "sha-512": ("sha512", 64),
}

# RFC 9053 section 2.1: ECDSA algorithms, their hash and the curve they are
# used with (the pairing RFC 9053 recommends; Donjon requires it).
_COSE_ALGS: Mapping[int, tuple[str, hashes.HashAlgorithm, type[ec.EllipticCurve], int]] = {
    -7: ("ES256", hashes.SHA256(), ec.SECP256R1, 32),
    -35: ("ES384", hashes.SHA384(), ec.SECP384R1, 48),
    -36: ("ES512", hashes.SHA512(), ec.SECP521R1, 66),
}
# RFC 9053 section 7.1: COSE_Key EC2 curves.
_COSE_CURVES: Mapping[int, tuple[ec.EllipticCurve, int]] = {
    1: (ec.SECP256R1(), 32),
    2: (ec.SECP384R1(), 48),
    3: (ec.SECP521R1(), 66),
}

#: SHA-256 of the SPKI DER of CPAKs known to be public test keys (the TF-M /
#: TF-RMM sample CPAK whose private key is published with the FVP samples).
#: A token signed by one is genuine *as a sample* only: ``raw["cpak_test_key"]``
#: and ``claims.simulated`` say so, and a production policy must not pin such a key.
KNOWN_TEST_CPAK_SHA256 = frozenset({"0928f896cb02326566530a62a1e36329a12d0a4a308f4fc81e8ff5560bca6bca"})

# PSA lifecycle states (PSA Security Model / Arm CCA Security Model): the
# major state is the high byte of the 16-bit value.
_LIFECYCLE_STATES: Mapping[int, str] = {
    0x00: "unknown",
    0x10: "assembly-and-test",
    0x20: "psa-rot-provisioning",
    0x30: "secured",
    0x40: "non-psa-rot-debug",
    0x50: "recoverable-psa-rot-debug",
    0x60: "decommissioned",
}


@dataclass(frozen=True)
class CoseSign1:
    """A decoded COSE_Sign1 (RFC 9052 section 4.2), keeping the signed bytes."""

    protected: bytes
    algorithm: int
    payload: bytes
    signature: bytes

    def to_be_signed(self) -> bytes:
        """RFC 9052 section 4.4: Sig_structure for a COSE_Sign1, empty external_aad."""
        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])


@dataclass(frozen=True)
class SwComponent:
    """One measured platform software component (PSA token ``sw-components``)."""

    type: str | None
    measurement: bytes
    version: str | None
    signer_id: bytes | None
    hash_algo: str | None


@dataclass(frozen=True)
class PlatformClaims:
    profile: str | None
    challenge: bytes
    implementation_id: bytes
    instance_id: bytes
    config: bytes | None
    lifecycle: int
    sw_components: tuple[SwComponent, ...]
    verification_service: str | None
    hash_algo: str | None


@dataclass(frozen=True)
class RealmClaims:
    profile: str | None
    challenge: bytes
    personalization: bytes
    hash_algo: str
    public_key: bytes
    public_key_hash_algo: str
    initial_measurement: bytes
    extensible_measurements: tuple[bytes, bytes, bytes, bytes]


@dataclass(frozen=True)
class CcaToken:
    """A parsed (not yet verified) CCA token: both signed envelopes and their claims."""

    platform_sign1: CoseSign1
    realm_sign1: CoseSign1
    platform: PlatformClaims
    realm: RealmClaims


# -- decoding -------------------------------------------------------------------------------------------


def _check_depth(value: Any, depth: int = 0) -> None:
    """Refuse nesting beyond ``_MAX_DEPTH`` (also ends cycles made with CBOR value sharing)."""
    if depth > _MAX_DEPTH:
        raise MalformedEvidence("cca.cbor", f"CBOR nesting deeper than {_MAX_DEPTH}")
    if isinstance(value, cbor2.CBORTag):
        _check_depth(value.value, depth + 1)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            _check_depth(k, depth + 1)
            _check_depth(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_depth(v, depth + 1)


def _cbor(data: bytes, what: str) -> Any:
    try:
        value = cbor2.loads(data)
    except (
        cbor2.CBORError,
        ValueError,
        TypeError,
        LookupError,
        OverflowError,
        RecursionError,
        MemoryError,
    ) as e:
        raise MalformedEvidence(
            f"cca.{what}.cbor", f"{what} is not valid CBOR: {e or type(e).__name__}"
        ) from e
    _check_depth(value)
    return value


def _untag(value: Any, tag: int) -> Any:
    """Strip an optional expected tag; any other tag is malformed."""
    if isinstance(value, cbor2.CBORTag):
        if value.tag != tag:
            raise MalformedEvidence("cca.tag", "unexpected CBOR tag", expected=tag, got=value.tag)
        return value.value
    return value


def _claim(
    claims: Mapping[Any, Any], key: int, typ: type | tuple[type, ...], what: str, *, optional: bool = False
) -> Any:
    if key not in claims:
        if optional:
            return None
        raise MalformedEvidence(f"cca.{what}.missing", f"{what} claim {key} is missing", field=str(key))
    value = claims[key]
    # bool is an int subclass in Python; a CBOR true is never a valid integer claim.
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise MalformedEvidence(
            f"cca.{what}.type",
            f"{what} claim {key} has the wrong type",
            field=str(key),
            expected=typ.__name__ if isinstance(typ, type) else "array",
            got=type(value).__name__,
        )
    return value


def _parse_sign1(data: Any, what: str) -> CoseSign1:
    if not isinstance(data, bytes):
        raise MalformedEvidence(f"cca.{what}.type", f"{what} token must be a CBOR byte string")
    arr = _untag(_cbor(data, what), _TAG_COSE_SIGN1)
    if not isinstance(arr, list | tuple) or len(arr) != 4:
        raise MalformedEvidence(f"cca.{what}.cose", f"{what} token is not a 4-element COSE_Sign1 array")
    protected, unprotected, payload, signature = arr
    if not (isinstance(protected, bytes) and isinstance(payload, bytes) and isinstance(signature, bytes)):
        raise MalformedEvidence(f"cca.{what}.cose", f"{what} COSE_Sign1 fields have the wrong types")
    if not isinstance(unprotected, Mapping):
        raise MalformedEvidence(f"cca.{what}.cose", f"{what} COSE_Sign1 unprotected header is not a map")
    headers = _cbor(protected, f"{what}.protected") if protected else {}
    if not isinstance(headers, Mapping):
        raise MalformedEvidence(f"cca.{what}.cose", f"{what} protected header is not a map")
    # RFC 9052 section 3.1: a "crit" header (2) lists parameters the recipient
    # must understand; Donjon understands none beyond alg, so it refuses any.
    if 2 in headers:
        raise MalformedEvidence(f"cca.{what}.crit", f"{what} protected header has critical parameters")
    alg = headers.get(1)
    if not isinstance(alg, int) or isinstance(alg, bool) or alg not in _COSE_ALGS:
        raise MalformedEvidence(
            f"cca.{what}.alg",
            f"{what} signature algorithm is not supported",
            expected="ES256 (-7), ES384 (-35) or ES512 (-36)",
            got=alg,
        )
    return CoseSign1(protected=protected, algorithm=alg, payload=payload, signature=signature)


def _hash_name(value: Any, what: str, key: int) -> str:
    if not isinstance(value, str) or value not in _HASHES:
        raise MalformedEvidence(
            f"cca.{what}.hash_algo",
            f"{what} hash algorithm claim {key} is not supported",
            field=str(key),
            expected=", ".join(_HASHES),
            got=value,
        )
    return value


def _sized(value: bytes, sizes: tuple[int, ...], token: str, name: str) -> bytes:
    if len(value) not in sizes:
        raise MalformedEvidence(
            f"cca.{token}.{name}",
            f"{token} {name.replace('_', ' ')} has a bad length",
            expected=" or ".join(map(str, sizes)),
            got=len(value),
        )
    return value


def _parse_platform(payload: bytes) -> PlatformClaims:
    claims = _cbor(payload, "platform.payload")
    if not isinstance(claims, Mapping):
        raise MalformedEvidence("cca.platform.payload", "platform token payload is not a claims map")
    challenge = _sized(_claim(claims, _P_CHALLENGE, bytes, "platform"), (32, 48, 64), "platform", "challenge")
    impl_id = _sized(
        _claim(claims, _P_IMPLEMENTATION_ID, bytes, "platform"), (32, 64), "platform", "implementation_id"
    )
    # The instance ID is a UEID of type RAND (0x01) followed by the hash of the
    # CPAK public key (Arm CCA Security Model, "Instance ID claim").
    instance_id = _claim(claims, _P_INSTANCE_ID, bytes, "platform")
    if len(instance_id) not in (33, 49, 65) or instance_id[0] != 0x01:
        raise MalformedEvidence(
            "cca.platform.instance_id", "instance ID is not a RAND UEID of 32, 48 or 64 bytes"
        )
    config = _claim(claims, _P_CONFIG, bytes, "platform", optional=True)
    lifecycle = _claim(claims, _P_LIFECYCLE, int, "platform")
    if not 0 <= lifecycle <= 0xFFFF:
        raise MalformedEvidence("cca.platform.lifecycle", "lifecycle is not a 16-bit value", got=lifecycle)
    comps_raw = _claim(claims, _P_SW_COMPONENTS, _ARRAY, "platform")
    if not 1 <= len(comps_raw) <= _MAX_SW_COMPONENTS:
        raise MalformedEvidence(
            "cca.platform.sw_components",
            f"platform must list between 1 and {_MAX_SW_COMPONENTS} software components",
            got=len(comps_raw),
        )
    comps = []
    for comp in comps_raw:
        if not isinstance(comp, Mapping):
            raise MalformedEvidence("cca.platform.sw_components", "software component is not a map")
        hash_algo = comp.get(_SW_HASH_ALGO)
        comps.append(
            SwComponent(
                type=_claim(comp, _SW_TYPE, str, "sw_component", optional=True),
                measurement=_claim(comp, _SW_VALUE, bytes, "sw_component"),
                version=_claim(comp, _SW_VERSION, str, "sw_component", optional=True),
                signer_id=_claim(comp, _SW_SIGNER_ID, bytes, "sw_component", optional=True),
                hash_algo=None if hash_algo is None else _hash_name(hash_algo, "sw_component", _SW_HASH_ALGO),
            )
        )
    hash_algo = claims.get(_P_HASH_ALGO)
    return PlatformClaims(
        profile=_claim(claims, _P_PROFILE, str, "platform", optional=True),
        challenge=challenge,
        implementation_id=impl_id,
        instance_id=instance_id,
        config=config,
        lifecycle=lifecycle,
        sw_components=tuple(comps),
        verification_service=_claim(claims, _P_VERIFICATION_SERVICE, str, "platform", optional=True),
        hash_algo=None if hash_algo is None else _hash_name(hash_algo, "platform", _P_HASH_ALGO),
    )


def _parse_realm(payload: bytes) -> RealmClaims:
    claims = _cbor(payload, "realm.payload")
    if not isinstance(claims, Mapping):
        raise MalformedEvidence("cca.realm.payload", "realm token payload is not a claims map")
    challenge = _sized(_claim(claims, _R_CHALLENGE, bytes, "realm"), (64,), "realm", "challenge")
    personalization = _sized(
        _claim(claims, _R_PERSONALIZATION, bytes, "realm"), (64,), "realm", "personalization"
    )
    hash_algo = _hash_name(_claim(claims, _R_HASH_ALGO, str, "realm"), "realm", _R_HASH_ALGO)
    key_hash_algo = _hash_name(
        _claim(claims, _R_PUBLIC_KEY_HASH_ALGO, str, "realm"), "realm", _R_PUBLIC_KEY_HASH_ALGO
    )
    public_key = _claim(claims, _R_PUBLIC_KEY, bytes, "realm")
    if not 1 <= len(public_key) <= _MAX_KEY_BYTES:
        raise MalformedEvidence(
            "cca.realm.public_key", "realm public key claim has a bad length", got=len(public_key)
        )
    # RMM A7.2.3.1: the RIM and the REMs are digests of the realm hash algorithm.
    size = _HASHES[hash_algo][1]
    rim = _claim(claims, _R_RIM, bytes, "realm")
    if len(rim) != size:
        raise MalformedEvidence(
            "cca.realm.rim", f"initial measurement is not a {hash_algo} digest", expected=size, got=len(rim)
        )
    rems = _claim(claims, _R_REM, _ARRAY, "realm")
    if len(rems) != 4 or not all(isinstance(r, bytes) and len(r) == size for r in rems):
        raise MalformedEvidence("cca.realm.rem", f"extensible measurements must be four {hash_algo} digests")
    return RealmClaims(
        profile=_claim(claims, _R_PROFILE, str, "realm", optional=True),
        challenge=challenge,
        personalization=personalization,
        hash_algo=hash_algo,
        public_key=public_key,
        public_key_hash_algo=key_hash_algo,
        initial_measurement=rim,
        extensible_measurements=(rems[0], rems[1], rems[2], rems[3]),
    )


def parse_cca_token(token: bytes) -> CcaToken:
    """Decode a CCA attestation token without checking any signature.

    Raises :class:`MalformedEvidence` for anything that is not a well-formed
    token (any bytes either parse or raise it).
    """
    if not isinstance(token, bytes | bytearray | memoryview):
        raise MalformedEvidence("cca.type", "token must be bytes")
    token = bytes(token)
    if not token:
        raise MalformedEvidence("cca.size", "token is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise MalformedEvidence(
            "cca.size", "token is too large", expected=f"<= {MAX_TOKEN_BYTES}", got=len(token)
        )
    collection = _untag(_cbor(token, "token"), _TAG_CCA_TOKEN)
    if not isinstance(collection, Mapping):
        raise MalformedEvidence("cca.collection", "token is not a CCA token collection map")
    if _KEY_PLATFORM not in collection or _KEY_REALM not in collection:
        raise MalformedEvidence(
            "cca.collection", "token collection needs a platform (44234) and a realm (44241) token"
        )
    platform_sign1 = _parse_sign1(collection[_KEY_PLATFORM], "platform")
    realm_sign1 = _parse_sign1(collection[_KEY_REALM], "realm")
    return CcaToken(
        platform_sign1=platform_sign1,
        realm_sign1=realm_sign1,
        platform=_parse_platform(platform_sign1.payload),
        realm=_parse_realm(realm_sign1.payload),
    )


# -- keys and signatures ----------------------------------------------------------------------------


def _ec_point(curve: ec.EllipticCurve, point: bytes, check: str) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise MalformedEvidence(check, f"not a valid {curve.name} public key: {e}") from e


def _realm_key(claim: bytes) -> ec.EllipticCurvePublicKey:
    """The RAK public key from claim 44237: a raw SEC1 point or a COSE_Key."""
    if claim[0] == 0x04:
        sizes = {65: ec.SECP256R1(), 97: ec.SECP384R1(), 133: ec.SECP521R1()}
        curve = sizes.get(len(claim))
        if curve is None:
            raise MalformedEvidence(
                "cca.realm.public_key", "raw realm public key has a bad length", got=len(claim)
            )
        return _ec_point(curve, claim, "cca.realm.public_key")
    key = _cbor(claim, "realm.public_key")
    # RFC 9053 section 7.1.1: EC2 key, kty (1) = 2, crv (-1), x (-2), y (-3).
    if not isinstance(key, Mapping) or key.get(1) != 2:
        raise MalformedEvidence(
            "cca.realm.public_key", "realm public key is neither a SEC1 point nor an EC2 COSE_Key"
        )
    crv, x, y = key.get(-1), key.get(-2), key.get(-3)
    if not isinstance(crv, int) or crv not in _COSE_CURVES:
        raise MalformedEvidence(
            "cca.realm.public_key", "COSE_Key curve is not P-256, P-384 or P-521", got=crv
        )
    curve, size = _COSE_CURVES[crv]
    if not (isinstance(x, bytes) and isinstance(y, bytes) and len(x) == size and len(y) == size):
        raise MalformedEvidence(
            "cca.realm.public_key", "COSE_Key coordinates are missing or of the wrong size"
        )
    return _ec_point(curve, b"\x04" + x + y, "cca.realm.public_key")


def _verify_sign1(sign1: CoseSign1, key: ec.EllipticCurvePublicKey) -> bool:
    """True if ``key`` made ``sign1``'s signature (RFC 9052 section 4.4, RFC 9053 section 2.1)."""
    _name, hash_alg, curve_type, size = _COSE_ALGS[sign1.algorithm]
    if not isinstance(key.curve, curve_type) or len(sign1.signature) != 2 * size:
        return False
    r = int.from_bytes(sign1.signature[:size], "big")
    s = int.from_bytes(sign1.signature[size:], "big")
    try:
        key.verify(encode_dss_signature(r, s), sign1.to_be_signed(), ec.ECDSA(hash_alg))
    except InvalidSignature:
        return False
    return True


def _spki_sha256(key: ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_platform_key(data: bytes) -> ec.EllipticCurvePublicKey:
    """A CPAK public key from PEM/DER SubjectPublicKeyInfo or an EC JWK (RFC 7517) JSON object."""
    if len(data) > _MAX_KEY_BYTES:
        raise MalformedEvidence("cca.cpak.size", "platform key input is too large", got=len(data))
    try:
        stripped = data.strip()
        if stripped.startswith(b"{"):
            return _jwk_key(json.loads(stripped))
        if stripped.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(stripped)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm, RecursionError) as e:  # JSON nesting: RecursionError
        raise MalformedEvidence(
            "cca.cpak.parse", f"not a platform public key: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise MalformedEvidence("cca.cpak.type", "platform key must be an elliptic-curve key")
    return key


def _jwk_key(jwk: Any) -> ec.EllipticCurvePublicKey:
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC":
        raise MalformedEvidence("cca.cpak.parse", "JWK is not an EC key")
    curves = {"P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48), "P-521": (ec.SECP521R1(), 66)}
    crv = curves.get(str(jwk.get("crv")))
    x, y = jwk.get("x"), jwk.get("y")
    if crv is None or not isinstance(x, str) or not isinstance(y, str):
        raise MalformedEvidence("cca.cpak.parse", "JWK needs crv P-256/P-384/P-521, x and y")
    curve, size = crv

    def b64(v: str) -> bytes:
        return base64.urlsafe_b64decode(v + "=" * (-len(v) % 4))

    xb, yb = b64(x), b64(y)
    if len(xb) != size or len(yb) != size:
        raise MalformedEvidence("cca.cpak.parse", "JWK coordinates have the wrong size")
    return _ec_point(curve, b"\x04" + xb + yb, "cca.cpak.parse")


# -- verification ----------------------------------------------------------------------------------


def verify_cca_token(
    token: bytes,
    *,
    platform_keys: Sequence[ec.EllipticCurvePublicKey],
    at: datetime,
    expected_challenge: bytes | None = None,
) -> VerifiedEvidence:
    """Verify a CCA attestation token against pinned CPAK public key(s).

    Checks, in order: structure; the platform token's signature by one of
    ``platform_keys``; the realm token's signature by the RAK it carries; the
    platform challenge equals the hash of the RAK claim (the binding of realm
    to platform); the platform lifecycle is a defined, usable state; and, when
    given, the realm challenge equals ``expected_challenge``.

    ``at`` is the verification time recorded in the result (a CCA token carries
    no validity window; the library reads no clock).
    """
    require_aware(at)
    parsed = parse_cca_token(token)
    if not platform_keys:
        raise VerificationFailed(
            "cca.platform.key", "no platform (CPAK) key is pinned: nothing to verify against"
        )
    cpak = next((k for k in platform_keys if _verify_sign1(parsed.platform_sign1, k)), None)
    if cpak is None:
        raise VerificationFailed(
            "cca.platform.signature",
            "the platform token is not signed by any pinned CPAK",
            expected="one of " + ", ".join(_spki_sha256(k) for k in platform_keys),
        )
    rak = _realm_key(parsed.realm.public_key)
    if not _verify_sign1(parsed.realm_sign1, rak):
        raise VerificationFailed("cca.realm.signature", "the realm token is not signed by the RAK it carries")
    # RMM A7.2.1: platform challenge = H(realm public key claim), H per claim 44240.
    hname, _size = _HASHES[parsed.realm.public_key_hash_algo]
    rak_hash = hashlib.new(hname, parsed.realm.public_key).digest()
    if not hmac.compare_digest(rak_hash, parsed.platform.challenge):
        raise VerificationFailed(
            "cca.binding",
            "the platform token's challenge is not the hash of the realm public key",
            expected=rak_hash,
            got=parsed.platform.challenge,
        )
    state = _LIFECYCLE_STATES.get(parsed.platform.lifecycle >> 8)
    if state is None or state in ("unknown", "decommissioned"):
        raise VerificationFailed(
            "cca.lifecycle",
            "platform lifecycle state is not one that can attest",
            expected="assembly-and-test .. recoverable-psa-rot-debug (0x1000-0x5fff)",
            got=f"{parsed.platform.lifecycle:#06x} ({state or 'undefined'})",
        )
    if expected_challenge is not None and not hmac.compare_digest(expected_challenge, parsed.realm.challenge):
        raise VerificationFailed(
            "cca.challenge",
            "realm challenge does not match the expected one",
            expected=expected_challenge,
            got=parsed.realm.challenge,
        )
    return VerifiedEvidence._create(_claims(parsed, cpak, state), hashlib.sha256(token).digest(), at)


def _claims(parsed: CcaToken, cpak: ec.EllipticCurvePublicKey, state: str) -> Claims:
    realm, platform = parsed.realm, parsed.platform
    measurements: dict[str, bytes] = {f"rem{i}": rem for i, rem in enumerate(realm.extensible_measurements)}
    measurements["personalization"] = realm.personalization
    for i, comp in enumerate(platform.sw_components):
        measurements[f"sw{i}:{comp.type or 'unnamed'}"] = comp.measurement
    cpak_fp = _spki_sha256(cpak)
    raw: dict[str, Any] = {
        "platform_profile": platform.profile,
        "realm_profile": realm.profile,
        "implementation_id": platform.implementation_id,
        "instance_id": platform.instance_id,
        "platform_config": platform.config,
        "lifecycle": platform.lifecycle,
        "lifecycle_state": state,
        "verification_service": platform.verification_service,
        "platform_hash_algo": platform.hash_algo,
        "realm_hash_algo": realm.hash_algo,
        "rak_hash_algo": realm.public_key_hash_algo,
        "rak_public_key": realm.public_key,
        "cpak_sha256": cpak_fp,
        "cpak_test_key": cpak_fp in KNOWN_TEST_CPAK_SHA256,
        "sw_components": [
            {
                "type": c.type,
                "measurement": c.measurement,
                "version": c.version,
                "signer_id": c.signer_id,
                "hash_algo": c.hash_algo,
            }
            for c in platform.sw_components
        ],
    }
    return Claims(
        tee=TeeType.CCA,
        platform="Arm CCA",
        measurement=realm.initial_measurement,
        report_data=realm.challenge,
        # Only the "secured" lifecycle runs without a debug path into the
        # platform's root of trust (Arm CCA Security Model, lifecycle states).
        debug=state != "secured",
        tcb_status=TcbStatus.UP_TO_DATE,
        measurements=measurements,
        raw=raw,
        # Anyone holding the published private key of a sample CPAK can mint such a token:
        # it proves no hardware, like a simulated vendor's root (claims.simulated).
        simulated=raw["cpak_test_key"],
    )
