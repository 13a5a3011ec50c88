"""Encrypted packages: layers sealed with AES-256-GCM under a content key the Steward holds. Pure.

``donjon package build --encrypt-to steward:NAME`` seals the module layer and every directory or
file layer with one random 256-bit content key; the config layer stays readable, because a Keep
needs it before it attests (to bind its sockets, to check the config does not widen the run, and
to compute the workload digest it attests with). The content key is stored as the Steward's
secret ``NAME`` (issue 11's secret store); a Keep gets it only after attesting, over mutual TLS
with the certificate just issued, so a registry operator, the cloud provider and anyone who
pulls the package see ciphertext only.

A sealed layer's blob is ``nonce (12 bytes) || AES-256-GCM(key, nonce, plaintext, aad)`` (NIST
SP 800-38D), its media type the plaintext's with ``+encrypted`` appended (as ocicrypt marks
encrypted layers), and its annotations carry the plaintext's digest and size. The additional
authenticated data binds the ciphertext to its place in the package::

    aad = "donjon-package-layer-v1" 0x00 plaintext media type 0x00 title 0x00 plaintext digest

so a sealed layer moved to another path, or given another plaintext digest, does not decrypt.
The manifest names the key in ``dev.donjon.encryption.key`` (``steward:NAME``); the plaintext
module's digest gives the workload digest without decrypting (``dev.donjon.workload.digest`` is,
as for any package, the digest of the *plaintext* module and the config).
"""

from __future__ import annotations

import os
import re

from donjon.oci.errors import BadReference, KeyMismatch, MalformedPackage

__all__ = [
    "ENCRYPTED_SUFFIX",
    "ENCRYPTION_KEY_ANNOTATION",
    "KEY_BYTES",
    "PLAINTEXT_DIGEST_ANNOTATION",
    "PLAINTEXT_SIZE_ANNOTATION",
    "new_content_key",
    "open_layer",
    "parse_key_target",
    "seal_layer",
]

ENCRYPTED_SUFFIX = "+encrypted"
ENCRYPTION_KEY_ANNOTATION = "dev.donjon.encryption.key"
PLAINTEXT_DIGEST_ANNOTATION = "dev.donjon.plaintext.digest"
PLAINTEXT_SIZE_ANNOTATION = "dev.donjon.plaintext.size"
KEY_BYTES = 32
_NONCE_BYTES = 12
_AAD_LABEL = b"donjon-package-layer-v1"
#: The Steward's secret names (issue 11, docs/secrets.md "Limits"): a file name and a URL segment.
_SECRET_NAME = re.compile(r"(?!\.+$)[A-Za-z0-9._-]{1,128}")


def parse_key_target(text: str) -> str:
    """``steward:NAME`` -> ``NAME`` (the only key holder Donjon knows: its Steward's secret store)."""
    scheme, sep, name = text.partition(":")
    if scheme != "steward" or not sep or not _SECRET_NAME.fullmatch(name):
        raise BadReference(text, "expected steward:NAME (a secret name: 1-128 of A-Z a-z 0-9 . _ -)")
    return name


def new_content_key() -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM.generate_key(bit_length=256)


def _aad(media_type: str, title: str | None, plaintext_digest: str) -> bytes:
    return b"\x00".join((_AAD_LABEL, media_type.encode(), (title or "").encode(), plaintext_digest.encode()))


def seal_layer(
    key: bytes, media_type: str, title: str | None, plaintext: bytes, plaintext_digest: str
) -> bytes:
    """``nonce || ciphertext`` of ``plaintext`` (a fresh random nonce: never reused under a key)."""
    if len(key) != KEY_BYTES:
        raise ValueError("the content key is 32 bytes")
    nonce = os.urandom(_NONCE_BYTES)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(media_type, title, plaintext_digest))


def open_layer(
    key: bytes,
    media_type: str,
    title: str | None,
    blob: bytes,
    plaintext_digest: str,
    what: str,
    *,
    key_name: str = "the content key",
) -> bytes:
    """The plaintext of a sealed layer, checked against its digest; raise if it does not open.

    :class:`KeyMismatch` when ``key`` (``key_name`` in messages) is not the one the layer was
    sealed under: AES-GCM's tag does not verify (NIST SP 800-38D 7.2: FAIL, no plaintext).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from donjon.oci.artifact import verify_blob

    if len(key) != KEY_BYTES:
        raise KeyMismatch(
            what, key_name, f"{key_name} is {len(key)} bytes, not a {KEY_BYTES}-byte AES-256 key"
        )
    if len(blob) < _NONCE_BYTES + 16:
        raise MalformedPackage(what, "too short to be a sealed layer")
    try:
        plaintext = AESGCM(key).decrypt(
            blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _aad(media_type, title, plaintext_digest)
        )
    except InvalidTag:
        raise KeyMismatch(
            what, key_name, f"does not decrypt under {key_name}: not the key it was encrypted to"
        ) from None
    verify_blob(f"{what} (plaintext)", plaintext, plaintext_digest)
    return plaintext
