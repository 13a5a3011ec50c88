"""C2SP signed notes and ``tlog-checkpoint``: the log's signed tree heads.

Signed note (c2sp.org/signed-note): a UTF-8 text ending in a newline, with no
ASCII control character but newline, then a blank line, then one or more lines
``— <key name> <base64(key ID || signature)>`` (U+2014 EM DASH, a space). An
Ed25519 signature covers the text including its final newline; the key ID is
``SHA-256(key name || 0x0A || 0x01 || public key)[:4]``; a verifier key
("vkey") is written ``<key name>+<hex key ID>+<base64(0x01 || public key)>``.
Verifiers ignore signature lines from keys they do not know and reject a note
that a known key's signature does not verify.

Checkpoint (c2sp.org/tlog-checkpoint): the note text is the origin (the log's
unique name, here also the key name), the tree size in decimal without leading
zeros, the base64 root hash, each on its own line; extension lines may follow
(Donjon writes none and ignores them).

Pure: bytes and keys in, a :class:`Checkpoint` or :class:`NoteError` out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from donjon.tlog.merkle import HASH_SIZE, MAX_TREE_SIZE

__all__ = [
    "MAX_NOTE_BYTES",
    "Checkpoint",
    "Ed25519Signer",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "check_key_name",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_vkey",
]

#: A checkpoint with one signature is ~200 bytes; anything this large is not one of ours.
MAX_NOTE_BYTES = 16 * 1024
#: The signed-note spec lets implementations refuse notes with more signatures than this.
MAX_SIGNATURES = 100
_ED25519 = b"\x01"
_DASH = "\u2014 "
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class NoteError(ValueError):
    """A note, checkpoint or verifier key is malformed or does not verify; ``check`` names what."""

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__(f"{check}: {reason}")


def check_key_name(name: str) -> str:
    """A key name: non-empty, no Unicode white space, no ``+`` (signed-note "Signatures")."""
    if not name or "+" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise NoteError("note.key_name", f"{name!r} is not a signed-note key name")
    return name


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise NoteError(what, "not standard base64") from e
    if base64.b64encode(raw).decode() != text:
        raise NoteError(what, "not canonical base64")
    return raw


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 verifier key of the signed-note format."""

    name: str
    key_id: bytes
    public: bytes

    @classmethod
    def of(cls, name: str, key: ed25519.Ed25519PublicKey) -> NoteVerifier:
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(check_key_name(name), _key_id(name, raw), raw)

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(_ED25519 + self.public).decode()}"

    def open(self, note: bytes) -> bytes:
        """The text of ``note`` if this key signed it, or :class:`NoteError`."""
        text, signatures = _split_note(note)
        found = False
        for name, sig in signatures:
            if name != self.name or sig[:4] != self.key_id:
                continue  # another key's signature (e.g. a witness cosignature): ignored
            try:
                ed25519.Ed25519PublicKey.from_public_bytes(self.public).verify(sig[4:], text)
            except InvalidSignature as e:
                raise NoteError("note.signature", f"the signature by {self.name} does not verify") from e
            found = True
        if not found:
            raise NoteError(
                "note.signature", f"the note carries no signature by {self.name}+{self.key_id.hex()}"
            )
        return text


def parse_vkey(text: str) -> NoteVerifier:
    """``<name>+<hex key ID>+<base64(0x01 || key)>``; the key ID must match the key."""
    parts = text.strip().split("+", 2)  # the base64 key may hold "+" itself
    if len(parts) != 3:
        raise NoteError("vkey", "a verifier key is <name>+<key id>+<base64 key>")
    name, hex_id, b64 = parts
    check_key_name(name)
    raw = _b64decode(b64, "vkey")
    if len(raw) != 33 or raw[:1] != _ED25519:
        raise NoteError("vkey", "only Ed25519 verifier keys (type 0x01, 32 bytes) are accepted")
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id) or bytes.fromhex(hex_id) != _key_id(name, raw[1:]):
        raise NoteError("vkey", "the key ID does not match the name and key")
    return NoteVerifier(name, bytes.fromhex(hex_id), raw[1:])


class Ed25519Signer(Protocol):
    """An Ed25519 private key wherever it is: ``cryptography``'s, or one in a PKCS#11 token."""

    def public_key(self) -> ed25519.Ed25519PublicKey: ...

    def sign(self, data: bytes) -> bytes: ...


class NoteSigner:
    """Signs note texts with an Ed25519 private key under a key name."""

    def __init__(self, name: str, key: Ed25519Signer) -> None:
        self.verifier = NoteVerifier.of(name, key.public_key())
        self._key = key

    @property
    def name(self) -> str:
        return self.verifier.name

    def sign(self, text: bytes) -> bytes:
        _check_text(text)
        sig = self._key.sign(text)
        line = f"{_DASH}{self.name} {base64.b64encode(self.verifier.key_id + sig).decode()}\n"
        return text + b"\n" + line.encode()

    def sign_checkpoint(self, checkpoint: Checkpoint) -> bytes:
        if checkpoint.origin != self.name:
            raise NoteError("checkpoint.origin", "the log signs checkpoints under its origin")
        return self.sign(checkpoint.text())


def _check_text(text: bytes) -> str:
    if len(text) > MAX_NOTE_BYTES:
        raise NoteError("note.size", f"a note of more than {MAX_NOTE_BYTES} bytes")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError("note.encoding", "the note is not UTF-8") from e
    if any(c < " " and c != "\n" for c in decoded):
        raise NoteError("note.encoding", "the note holds a control character")
    if not decoded.endswith("\n"):
        raise NoteError("note.text", "the note text does not end in a newline")
    return decoded


def _split_note(note: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    decoded = _check_text(note)
    cut = decoded.rfind("\n\n")
    if cut < 0:
        raise NoteError("note.format", "no blank line before the signatures")
    text = decoded[: cut + 1].encode()
    lines = decoded[cut + 2 :].split("\n")
    if lines[-1] != "" or len(lines) < 2:
        raise NoteError("note.format", "no signature lines")
    lines.pop()
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("note.format", f"more than {MAX_SIGNATURES} signatures")
    out = []
    for line in lines:
        if not line.startswith(_DASH):
            raise NoteError("note.format", "a signature line does not start with an em dash and a space")
        name, sep, b64 = line[len(_DASH) :].partition(" ")
        if not sep:
            raise NoteError("note.format", "a signature line without a signature")
        check_key_name(name)
        sig = _b64decode(b64, "note.format")
        if len(sig) < 5:
            raise NoteError("note.format", "a signature shorter than its key ID")
        out.append((name, sig))
    return text, out


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's ``origin``, its ``size`` in leaves and the RFC 9162 ``root``."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        check_key_name(self.origin)
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise NoteError("checkpoint.size", f"tree size {self.size} is out of range")
        if len(self.root) != HASH_SIZE:
            raise NoteError("checkpoint.root", f"a root hash of {len(self.root)} bytes")

    def text(self) -> bytes:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n".encode()


def parse_checkpoint(text: bytes) -> Checkpoint:
    """The checkpoint a (verified) note text holds; extension lines are ignored."""
    decoded = _check_text(text)
    lines = decoded.split("\n")[:-1]
    if len(lines) < 3 or any(not line for line in lines):
        raise NoteError("checkpoint.format", "a checkpoint is at least three non-empty lines")
    origin, size, root = lines[:3]
    if not _DECIMAL.fullmatch(size):
        raise NoteError("checkpoint.size", "the tree size is not a decimal number without leading zeros")
    return Checkpoint(origin, int(size), _b64decode(root, "checkpoint.root"))


def open_checkpoint(note: bytes, verifier: NoteVerifier) -> Checkpoint:
    """Verify the log's signature on ``note`` and parse it; its origin must be the key's name."""
    checkpoint = parse_checkpoint(verifier.open(note))
    if checkpoint.origin != verifier.name:
        raise NoteError(
            "checkpoint.origin", f"the checkpoint is for log {checkpoint.origin!r}, not {verifier.name!r}"
        )
    return checkpoint
