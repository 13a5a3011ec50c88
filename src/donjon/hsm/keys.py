"""Keys that never leave a PKCS#11 token: the CA's EC key, the log's Ed25519 key, the KEK.

Generated keys are token objects (``CKA_TOKEN``), private (``CKA_PRIVATE``: only after login),
``CKA_SENSITIVE`` and not ``CKA_EXTRACTABLE`` (PKCS#11 v2.40 section 4.9): the token refuses to
show their value and to wrap them out, to anyone, PIN or not. What the host ever sees are
public keys and signatures.

- :class:`TokenEcSigner` signs SHA-256/384 digests with ``CKM_ECDSA`` (PKCS#11 v2.40 section
  2.3.6: the raw ``r || s``, turned into a DER ``ECDSA-Sig-Value`` here), the mechanism every
  HSM has; the host hashes, so the token never needs a hash-and-sign mechanism.
- :class:`TokenEd25519Key` signs with ``CKM_EDDSA`` (PKCS#11 v3.0 section 2.3.14; SoftHSM2
  2.5 and later): ``sign`` and ``public_key`` like ``cryptography``'s Ed25519 key, so the
  transparency log's note signer uses it unchanged.
- :class:`Pkcs11Kek` wraps data keys with ``CKM_AES_GCM`` (NIST SP 800-38D) under an AES-256
  token key: ``0x02 || nonce (12) || ciphertext (32) || tag (16)``, 61 bytes; the nonce is
  random (one wrap per secret version, far below SP 800-38D section 8.3's 2^32).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ

from donjon.hsm.errors import HsmError, ObjectNotFound, TokenError, UnwrapFailed
from donjon.hsm.token import TokenSession
from donjon.hsm.uri import Pkcs11Uri, parse_uri

__all__ = [
    "DATA_KEY_BYTES",
    "Pkcs11Kek",
    "TokenEcSigner",
    "TokenEd25519Key",
    "create_ec_key",
    "create_ed25519_key",
    "create_kek",
    "open_ec_signer",
    "open_ed25519_key",
    "open_pkcs11_kek",
]

DATA_KEY_BYTES = 32
_CURVE_OIDS: dict[str, str] = {"p256": "1.2.840.10045.3.1.7", "p384": "1.3.132.0.34"}
_CURVES: dict[str, ec.EllipticCurve] = {"1.2.840.10045.3.1.7": ec.SECP256R1(), "1.3.132.0.34": ec.SECP384R1()}
_ED25519_OID = "1.3.101.112"  # RFC 8410 id-Ed25519, as PKCS#11 v3.0 CKA_EC_PARAMS allows
_KEK_FORMAT = b"\x02"
_NONCE = 12
_TAG_BITS = 128
_WRAPPED = 1 + _NONCE + DATA_KEY_BYTES + _TAG_BITS // 8

# PKCS#11 v2.40 section 4.9: what keeps a private or secret key inside the token.
_KEEP_INSIDE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}


def _oid_der(oid: str) -> bytes:
    return bytes(der_encoder.encode(univ.ObjectIdentifier(oid)))


def _der_decode(data: bytes, spec: Any, what: str, name: str) -> Any:
    try:
        value, rest = der_decoder.decode(data, asn1Spec=spec)
    except PyAsn1Error as e:
        raise TokenError(name, f"the token's {what} is not DER") from e
    if rest:
        raise TokenError(name, f"the token's {what} has trailing bytes")
    return value


def _ec_point(name: str, public: Any) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING holding the point (PKCS#11 v2.40 section 2.3.3); some
    modules give the bare point (an uncompressed EC point, or 32 Ed25519 bytes), taken as is."""
    raw = bytes(public[Attribute.EC_POINT])
    try:
        return bytes(_der_decode(raw, univ.OctetString(), "CKA_EC_POINT", name))
    except TokenError:
        if len(raw) == 32 or (raw[:1] == b"\x04" and len(raw) in (65, 97)):
            return raw
        raise


def _labels(uri: Pkcs11Uri) -> dict[Attribute, Any]:
    attrs: dict[Attribute, Any] = {}
    if uri.object is not None:
        attrs[Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[Attribute.ID] = uri.id
    if not attrs:
        raise ObjectNotFound(uri.token or "?", "the URI names no object: add object=LABEL")
    return attrs


def _refuse_existing(session: TokenSession, object_class: ObjectClass) -> None:
    try:
        session.find_key(object_class)
    except ObjectNotFound:
        return
    raise TokenError(session.name, f"it already holds {session.uri.redacted()}; a key is created once")


class TokenEcSigner:
    """The CA's EC key in the token: signs digests, shows only its public key."""

    def __init__(self, session: TokenSession, public_key: ec.EllipticCurvePublicKey) -> None:
        self.session = session
        self._public = public_key

    @property
    def uri(self) -> Pkcs11Uri:
        return self.session.uri

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign_digest(self, digest: bytes) -> bytes:
        """A DER ECDSA signature over ``digest`` (already hashed: CKM_ECDSA signs what it is given)."""
        raw = bytes(
            self.session.use(ObjectClass.PRIVATE_KEY, lambda key: key.sign(digest, mechanism=Mechanism.ECDSA))
        )
        half = len(raw) // 2
        if len(raw) % 2 or half * 8 < self._public.curve.key_size:
            raise TokenError(self.session.name, f"CKM_ECDSA returned {len(raw)} bytes, not r || s")
        return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def close(self) -> None:
        self.session.close()


def open_ec_signer(uri: Pkcs11Uri, *, base: Path | None = None) -> TokenEcSigner:
    """The EC private key (and its public half) the URI names; HsmError if absent or unusable."""
    session = TokenSession.open(uri, base=base)
    try:
        session.find_key(ObjectClass.PRIVATE_KEY)
        public = session.find_key(ObjectClass.PUBLIC_KEY)
        return TokenEcSigner(session, _ec_public(session, public))
    except BaseException:
        session.close()
        raise


def _ec_public(session: TokenSession, public: Any) -> ec.EllipticCurvePublicKey:
    def read(_: Any) -> tuple[bytes, Any]:
        return bytes(public[Attribute.EC_PARAMS]), public[Attribute.KEY_TYPE]

    params, key_type = session.run(read)
    if key_type != KeyType.EC:
        raise TokenError(session.name, f"{session.uri.redacted()} is not an EC key")
    oid = str(_der_decode(params, univ.ObjectIdentifier(), "CKA_EC_PARAMS", session.name))
    curve = _CURVES.get(oid)
    if curve is None:
        raise TokenError(session.name, f"the CA key's curve {oid} is not P-256 or P-384")
    point = session.run(lambda s: _ec_point(session.name, public))
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except ValueError as e:
        raise TokenError(session.name, f"the token's EC point is not on {curve.name}") from e


def _generate_pair(session: TokenSession, uri: Pkcs11Uri, key_type: Any, params_oid: str) -> Any:
    """Generate a signing key pair in the token under the URI's label/id, refused if a private key
    is there already; the private key stays inside (``_KEEP_INSIDE``). Returns the public key object.

    ``params_oid`` goes into ``CKA_EC_PARAMS``: the named curve of an EC key, or id-Ed25519 for a
    ``CKK_EC_EDWARDS`` key (PKCS#11 v3.0, "Edwards Elliptic curve public key objects").
    """
    _refuse_existing(session, ObjectClass.PRIVATE_KEY)
    labels = _labels(uri)

    def generate(s: Any) -> tuple[Any, Any]:
        return s.generate_keypair(  # type: ignore[no-any-return]
            key_type,
            store=True,
            public_template={**labels, Attribute.EC_PARAMS: _oid_der(params_oid)},
            private_template={**labels, **_KEEP_INSIDE, Attribute.SIGN: True},
        )

    public, private = session.run(generate)
    session.remember(ObjectClass.PRIVATE_KEY, private)
    return public


def create_ec_key(uri: Pkcs11Uri, curve: str = "p256", *, base: Path | None = None) -> TokenEcSigner:
    """Generate an EC key pair in the token under the URI's label/id (refused if one exists)."""
    if curve not in _CURVE_OIDS:
        raise ValueError(f"unsupported curve {curve!r} (p256 or p384)")
    session = TokenSession.open(uri, base=base, rw=True)
    try:
        public = _generate_pair(session, uri, KeyType.EC, _CURVE_OIDS[curve])
        return TokenEcSigner(session, _ec_public(session, public))
    except BaseException:
        session.close()
        raise


class TokenEd25519Key:
    """The log key in the token; ``sign`` and ``public_key`` as ``cryptography``'s Ed25519 key."""

    def __init__(self, session: TokenSession, public_key: ed25519.Ed25519PublicKey) -> None:
        self.session = session
        self._public = public_key

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        sig = bytes(
            self.session.use(ObjectClass.PRIVATE_KEY, lambda key: key.sign(data, mechanism=Mechanism.EDDSA))
        )
        if len(sig) != 64:
            raise TokenError(self.session.name, f"CKM_EDDSA returned {len(sig)} bytes, not 64")
        return sig

    def close(self) -> None:
        self.session.close()


def _ed_public(session: TokenSession, public: Any) -> ed25519.Ed25519PublicKey:
    point = session.run(lambda s: _ec_point(session.name, public))
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(point)
    except ValueError as e:
        raise TokenError(session.name, "the token's Ed25519 public key is not 32 bytes") from e


def open_ed25519_key(uri: Pkcs11Uri, *, base: Path | None = None) -> TokenEd25519Key:
    session = TokenSession.open(uri, base=base)
    try:
        session.find_key(ObjectClass.PRIVATE_KEY)
        public = session.find_key(ObjectClass.PUBLIC_KEY)
        return TokenEd25519Key(session, _ed_public(session, public))
    except BaseException:
        session.close()
        raise


def create_ed25519_key(uri: Pkcs11Uri, *, base: Path | None = None) -> TokenEd25519Key:
    """Generate an Ed25519 key pair in the token (``CKM_EC_EDWARDS_KEY_PAIR_GEN``)."""
    session = TokenSession.open(uri, base=base, rw=True)
    try:
        public = _generate_pair(session, uri, KeyType.EC_EDWARDS, _ED25519_OID)
        return TokenEd25519Key(session, _ed_public(session, public))
    except BaseException:
        session.close()
        raise


class Pkcs11Kek:
    """A key-encryption key in the token (the secret store's ``Kek`` protocol)."""

    def __init__(self, session: TokenSession) -> None:
        self.session = session
        #: The URI without any PIN: what names this KEK in errors and listings.
        self.name = session.uri.redacted()

    def __repr__(self) -> str:
        return f"Pkcs11Kek({self.name!r})"

    def wrap(self, data_key: bytes, aad: bytes) -> bytes:
        if len(data_key) != DATA_KEY_BYTES:
            raise HsmError(f"a data key is {DATA_KEY_BYTES} bytes, not {len(data_key)}")
        nonce = os.urandom(_NONCE)
        params = GCMParams(nonce, aad or None, _TAG_BITS)
        sealed = self.session.use(
            ObjectClass.SECRET_KEY,
            lambda key: key.encrypt(data_key, mechanism=Mechanism.AES_GCM, mechanism_param=params),
        )
        return _KEK_FORMAT + nonce + bytes(sealed)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        if len(wrapped) != _WRAPPED or wrapped[:1] != _KEK_FORMAT:
            raise UnwrapFailed(self.session.name, f"a wrapped key is {_WRAPPED} bytes of format 2")
        params = GCMParams(wrapped[1 : 1 + _NONCE], aad or None, _TAG_BITS)
        body = wrapped[1 + _NONCE :]

        def decrypt(key: Any) -> bytes:
            try:
                return bytes(key.decrypt(body, mechanism=Mechanism.AES_GCM, mechanism_param=params))
            except (
                p11e.EncryptedDataInvalid,
                p11e.EncryptedDataLenRange,
                p11e.FunctionFailed,
                p11e.GeneralError,
            ) as e:
                # The tag did not verify: another key, another AAD, or altered bytes. PKCS#11 v2.40
                # says CKR_ENCRYPTED_DATA_INVALID; SoftHSM2 2.6 answers CKR_GENERAL_ERROR.
                raise UnwrapFailed(
                    self.session.name, "the data key does not unwrap (another KEK, or altered)"
                ) from e

        data_key = self.session.use(ObjectClass.SECRET_KEY, decrypt)
        if len(data_key) != DATA_KEY_BYTES:
            raise UnwrapFailed(self.session.name, "the unwrapped data key has the wrong length")
        return data_key

    def close(self) -> None:
        self.session.close()


def open_pkcs11_kek(uri: str | Pkcs11Uri, *, base: Path | None = None) -> Pkcs11Kek:
    """The AES key the URI names (``[secrets] kek = "pkcs11:..."``), as a KEK; BadUri, or an
    HsmError if the token or the key is missing or the PIN is refused. ``base``: the directory
    a relative ``pin-source`` is in (``steward.toml``'s)."""
    if isinstance(uri, str):
        uri = parse_uri(uri)
    session = TokenSession.open(uri, base=base)
    try:
        key = session.find_key(ObjectClass.SECRET_KEY)
        if session.run(lambda s: key[Attribute.KEY_TYPE]) != KeyType.AES:
            raise TokenError(session.name, f"{uri.redacted()} is not an AES key")
        return Pkcs11Kek(session)
    except BaseException:
        session.close()
        raise


def create_kek(uri: str | Pkcs11Uri, *, base: Path | None = None) -> Pkcs11Kek:
    """Generate an AES-256 KEK in the token (refused if one exists under the URI's label/id)."""
    if isinstance(uri, str):
        uri = parse_uri(uri)
    session = TokenSession.open(uri, base=base, rw=True)
    try:
        _refuse_existing(session, ObjectClass.SECRET_KEY)
        labels = _labels(uri)

        def generate(s: Any) -> Any:
            return s.generate_key(
                KeyType.AES,
                256,
                store=True,
                template={**labels, **_KEEP_INSIDE, Attribute.ENCRYPT: True, Attribute.DECRYPT: True},
            )

        session.remember(ObjectClass.SECRET_KEY, session.run(generate))
        return Pkcs11Kek(session)
    except BaseException:
        session.close()
        raise
