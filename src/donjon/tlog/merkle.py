"""RFC 9162 Merkle trees: hashes, the frontier of an append-only tree, proofs and their verification.

Definitions (RFC 9162 section 2.1.1): the hash of an empty tree is ``SHA-256()``;
a leaf is ``SHA-256(0x00 || data)``; a node is ``SHA-256(0x01 || left || right)``;
the tree of ``n > 1`` leaves splits at ``k``, the largest power of two smaller
than ``n``: ``MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n]))``.

Storage seam. Every hash a proof needs is the hash of a contiguous range of
leaves, and every such range is covered by at most ``2 log2 n`` *perfect*
subtrees: aligned blocks of ``2**level`` leaves, which never change once the
block is full. A store keeps those (``(level, index) -> hash``); the functions
here say which ranges a proof needs (:func:`inclusion_ranges`,
:func:`consistency_ranges`), which perfect subtrees cover them
(:func:`cover`), and fold them back (:func:`range_hash`). The frontier
(:class:`Frontier`) appends leaves without re-hashing anything already stored.

Verification follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step and
raises :class:`ProofError` (it never returns ``False``). Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_NODES",
    "MAX_TREE_SIZE",
    "Frontier",
    "ProofError",
    "consistency_ranges",
    "cover",
    "inclusion_ranges",
    "leaf_hash",
    "needed",
    "node_hash",
    "range_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
#: SHA-256 of nothing: the root of the empty tree (RFC 9162 2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: A tree index fits in 63 bits (a signed 64-bit database column).
MAX_TREE_SIZE = (1 << 63) - 1
#: No proof for a tree of at most 2**63 leaves holds more than 2 * 63 hashes.
MAX_PROOF_NODES = 128


class ProofError(ValueError):
    """A proof does not verify, or its inputs are out of range; ``check`` names which step."""

    def __init__(self, check: str, reason: str) -> None:
        self.check = check
        self.reason = reason
        super().__init__(f"{check}: {reason}")


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves in O(n): pairing left to right builds RFC 9162's tree."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    # Pairing left to right and carrying an odd last node up unchanged builds the same
    # tree as the recursive split at the largest power of two (RFC 9162 2.1.1).
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# --- the frontier: appending without re-hashing ---


@dataclass(frozen=True)
class Frontier:
    """The perfect subtrees whose sizes add up to ``size`` (one per set bit), largest first.

    ``nodes[i]`` is the hash of the ``i``-th block; :meth:`coordinates` says which
    ``(level, index)`` each is, so a store can read a frontier back in one query.
    """

    size: int
    nodes: tuple[bytes, ...]

    @staticmethod
    def coordinates(size: int) -> list[tuple[int, int]]:
        out = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                out.append((level, start >> level))
                start += 1 << level
        return out

    @classmethod
    def empty(cls) -> Frontier:
        return cls(0, ())

    @classmethod
    def of(cls, size: int, stored: Mapping[tuple[int, int], bytes]) -> Frontier:
        """The frontier of ``size`` leaves from stored perfect subtrees (KeyError if one is missing)."""
        return cls(size, tuple(stored[c] for c in cls.coordinates(size)))

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for h in reversed(self.nodes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def extend(self, leaves: Iterable[bytes]) -> tuple[Frontier, list[tuple[int, int, bytes]]]:
        """Append leaf hashes; return the new frontier and every perfect subtree completed on the
        way, as ``(level, index, hash)`` in the order they complete (leaf, then its parents)."""
        size = self.size
        stack = list(self.nodes)
        made: list[tuple[int, int, bytes]] = []
        for leaf in leaves:
            if size >= MAX_TREE_SIZE:
                raise ProofError("tree.size", "the tree is full")
            made.append((0, size, leaf))
            h = leaf
            level = 0
            index = size
            # Each trailing 1 bit of the old size is a block of the same level to merge with.
            while (size >> level) & 1:
                h = node_hash(stack.pop(), h)
                level += 1
                index >>= 1
                made.append((level, index, h))
            stack.append(h)
            size += 1
        return Frontier(size, tuple(stack)), made


# --- which hashes a proof needs ---

Range = tuple[int, int]


def _path(m: int, start: int, n: int, out: list[Range]) -> None:
    # RFC 9162 2.1.3.1: PATH(m, D[n]), leaf-side first.
    if n == 1:
        return
    k = _split(n)
    if m < k:
        _path(m, start, k, out)
        out.append((start + k, start + n))
    else:
        _path(m - k, start + k, n - k, out)
        out.append((start, start + k))


def _subproof(m: int, start: int, n: int, b: bool, out: list[Range]) -> None:
    # RFC 9162 2.1.4.1: SUBPROOF(m, D[n], b).
    if m == n:
        if not b:
            out.append((start, start + n))
        return
    k = _split(n)
    if m <= k:
        _subproof(m, start, k, b, out)
        out.append((start + k, start + n))
    else:
        _subproof(m - k, start + k, n - k, False, out)
        out.append((start, start + k))


def _check_size(size: int, what: str) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ProofError(what, f"{what} {size} is out of range")


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose hashes make the audit path of leaf ``index`` in a tree of ``size``."""
    _check_size(size, "tree_size")
    if not 0 <= index < size:
        raise ProofError("index", f"leaf index {index} is not in a tree of {size}")
    out: list[Range] = []
    _path(index, 0, size, out)
    return out


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The leaf ranges whose hashes make the consistency proof from ``first`` to ``second`` leaves."""
    _check_size(second, "tree_size")
    if not 0 < first <= second:
        raise ProofError("first", f"no consistency proof from size {first} to {second}")
    out: list[Range] = []
    if first < second:
        _subproof(first, 0, second, True, out)
    return out


def range_hash(start: int, end: int, nodes: Mapping[tuple[int, int], bytes]) -> bytes:
    """MTH of leaves ``[start, end)`` from the perfect subtrees :func:`cover` names (RFC 9162's split)."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return nodes[(level, start >> level)]
    k = _split(n)
    return node_hash(range_hash(start, start + k, nodes), range_hash(start + k, end, nodes))


def needed(ranges: Iterable[Range]) -> list[tuple[int, int]]:
    """Every perfect subtree the ranges need, without repeats (one read for a whole proof)."""
    seen: dict[tuple[int, int], None] = {}
    for start, end in ranges:
        for c in cover(start, end):
            seen[c] = None
    return list(seen)


def cover(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that :func:`range_hash` reads for leaves ``[start, end)``.

    Every range a proof needs starts at a multiple of the power of two it splits at, so
    each piece of RFC 9162's split is an aligned block: at most one per bit of the size.
    """
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return [(level, start >> level)]
    k = _split(n)
    return cover(start, start + k) + cover(start + k, end)


# --- verification (RFC 9162 2.1.3.2, 2.1.4.2) ---


def _check_path(path: Sequence[bytes]) -> None:
    if len(path) > MAX_PROOF_NODES:
        raise ProofError("proof.length", f"a proof of {len(path)} hashes is longer than any tree allows")
    for p in path:
        if len(p) != HASH_SIZE:
            raise ProofError("proof.hash", f"a proof hash of {len(p)} bytes, not {HASH_SIZE}")


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> None:
    """Leaf hash ``leaf`` is at ``index`` in the tree of ``size`` leaves with ``root``, or
    :class:`ProofError`."""
    _check_path(path)
    _check_size(size, "tree_size")
    if not 0 <= index < size:
        raise ProofError("index", f"leaf index {index} is not in a tree of {size}")
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise ProofError("proof.length", "the inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof.length", "the inclusion proof is shorter than the path to the root")
    if r != root:
        raise ProofError("proof.root", "the inclusion proof does not lead to the root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> None:
    """The tree of ``first`` leaves with ``first_root`` is a prefix of the tree of ``second`` leaves
    with ``second_root``, or :class:`ProofError`."""
    _check_path(path)
    _check_size(second, "tree_size")
    if not 0 <= first <= second:
        raise ProofError("first", f"a tree of {first} leaves cannot be a prefix of one of {second}")
    if first == second:
        if path:
            raise ProofError("proof.length", "trees of the same size need an empty proof")
        if first_root != second_root:
            raise ProofError("proof.root", f"two different roots for the same tree size {first}")
        return
    if first == 0:
        # Every tree extends the empty one (RFC 9162 2.1.4: nothing to prove).
        if path:
            raise ProofError("proof.length", "a proof from the empty tree is empty")
        return
    if not path:
        raise ProofError("proof.length", "an empty consistency proof between different sizes")
    nodes = list(path)
    if first & (first - 1) == 0:
        nodes.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            raise ProofError("proof.length", "the consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof.length", "the consistency proof is shorter than the path to the root")
    if fr != first_root:
        raise ProofError("proof.first_root", f"the proof does not rebuild the root of size {first}")
    if sr != second_root:
        raise ProofError("proof.second_root", f"the proof does not rebuild the root of size {second}")
