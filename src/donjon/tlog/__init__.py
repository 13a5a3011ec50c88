"""A transparency log, as data: RFC 9162 Merkle trees, C2SP signed checkpoints, canonical entries.

Pure (no I/O): the Steward's stores (:mod:`donjon.steward.treestore`) keep the
bytes, this package says what they mean and proves it. See docs/steward.md
"The transparency log".
"""

from donjon.tlog.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    parse_checkpoint,
    parse_vkey,
)
from donjon.tlog.entry import Entry, EntryError, canonical_json, entry_bytes, parse_entry
from donjon.tlog.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    needed,
    node_hash,
    range_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "Checkpoint",
    "Entry",
    "EntryError",
    "Frontier",
    "NoteError",
    "NoteSigner",
    "NoteVerifier",
    "ProofError",
    "canonical_json",
    "consistency_ranges",
    "entry_bytes",
    "inclusion_ranges",
    "leaf_hash",
    "needed",
    "node_hash",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_entry",
    "parse_vkey",
    "range_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]
