"""What a witness and a relying party check in a Steward's log answers. Pure: no I/O.

- :func:`check_extension`: a new signed checkpoint extends the one seen before — same
  size and root, or a larger tree with a consistency proof (RFC 9162 2.1.4.2) from
  the old root to the new one. Anything else is truncation or a rewrite.
- :func:`check_inclusion`: an inclusion answer (``GET /log/proof/inclusion``) proves
  that a signed tree holds an entry recording the issuance of exactly this
  certificate (serial and SHA-256 of its DER).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from donjon.tlog.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from donjon.tlog.entry import MAX_ENTRY_BYTES, Entry, EntryError, parse_entry
from donjon.tlog.merkle import MAX_PROOF_NODES, ProofError, leaf_hash, verify_consistency, verify_inclusion

__all__ = ["AuditRefused", "LoggedCertificate", "check_extension", "check_inclusion", "decode_proof"]


class AuditRefused(Exception):
    """The log's answer does not prove what it must; ``check`` names what failed."""

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__(f"{check}: {reason}")


def _b64(value: object, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit * 4 // 3 + 4:
        raise AuditRefused("answer.format", f"{what} is not a base64 string of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise AuditRefused("answer.format", f"{what} is not base64") from e


def decode_proof(value: object) -> list[bytes]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_NODES:
        raise AuditRefused("answer.format", "the proof is not a list of at most 128 hashes")
    return [_b64(h, "a proof hash", 32) for h in value]


def _open(note: bytes, verifier: NoteVerifier) -> Checkpoint:
    try:
        return open_checkpoint(note, verifier)
    except NoteError as e:
        raise AuditRefused("checkpoint.signature", f"the checkpoint is not signed by the log key: {e}") from e


def check_extension(old: Checkpoint | None, new: Checkpoint, proof: Sequence[bytes] | None) -> None:
    """``new`` (already verified) extends ``old``; ``proof`` is the consistency proof from
    ``old.size`` to ``new.size`` (None when none is needed)."""
    if old is None or old.size == 0:
        return
    if new.size < old.size:
        raise AuditRefused(
            "log.truncated",
            f"the log now holds {new.size} entries; it held {old.size} when its checkpoint was last seen",
        )
    if new.size == old.size:
        if new.root != old.root:
            raise AuditRefused("log.rewritten", f"two different signed roots for the same size {new.size}")
        return
    if proof is None:
        raise AuditRefused("log.rewritten", "no consistency proof")
    try:
        verify_consistency(old.size, new.size, old.root, new.root, proof)
    except ProofError as e:
        raise AuditRefused(
            "log.rewritten",
            f"the tree of {new.size} entries does not extend the tree of {old.size} seen before ({e.check})",
        ) from e


@dataclass(frozen=True)
class LoggedCertificate:
    """Proven: the signed tree ``checkpoint`` holds ``entry`` at ``index``, recording the certificate."""

    checkpoint: Checkpoint
    index: int
    entry: Entry


def check_inclusion(
    answer: Mapping[str, Any], verifier: NoteVerifier, *, serial: str, certificate_der: bytes
) -> LoggedCertificate:
    """Everything an inclusion answer must prove about the certificate ``certificate_der``."""
    note = answer.get("checkpoint")
    if not isinstance(note, str):
        raise AuditRefused("answer.format", "no checkpoint in the answer")
    checkpoint = _open(note.encode(), verifier)
    index = answer.get("index")
    if type(index) is not int or not 0 <= index < checkpoint.size:
        raise AuditRefused("answer.index", f"index {index!r} is not in the signed tree of {checkpoint.size}")
    if answer.get("tree_size") != checkpoint.size:
        raise AuditRefused("answer.format", "tree_size is not the signed checkpoint's size")
    data = _b64(answer.get("entry"), "the entry", MAX_ENTRY_BYTES)
    try:
        entry = parse_entry(data)
    except EntryError as e:
        raise AuditRefused("entry.format", f"the logged entry is malformed: {e}") from e
    if entry.index != index:
        raise AuditRefused("entry.seq", f"the entry says seq {entry.seq}, the proof is for index {index}")
    record = entry.record
    if record.get("decision") != "issued" or record.get("serial") != serial:
        raise AuditRefused("entry.certificate", f"the logged entry is not the issuance of serial {serial}")
    if record.get("certificate_sha256") != hashlib.sha256(certificate_der).hexdigest():
        raise AuditRefused(
            "entry.certificate", "the logged issuance names another certificate (SHA-256 differs)"
        )
    try:
        verify_inclusion(
            leaf_hash(data), index, checkpoint.size, decode_proof(answer.get("proof")), checkpoint.root
        )
    except ProofError as e:
        raise AuditRefused("proof.inclusion", f"the inclusion proof does not verify: {e}") from e
    return LoggedCertificate(checkpoint=checkpoint, index=index, entry=entry)
