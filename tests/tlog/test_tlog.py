"""donjon.tlog: RFC 9162 trees and proofs, C2SP signed checkpoints, canonical entries.

Proofs are checked against a Merkle tree written here from RFC 9162 section 2.1's
definitions (MTH, PATH, SUBPROOF), independently of the production code.
"""

from __future__ import annotations

import base64
import hashlib
import math

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.tlog.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSigner,
    open_checkpoint,
    parse_checkpoint,
    parse_vkey,
)
from donjon.tlog.entry import EntryError, canonical_json, entry_bytes, parse_entry
from donjon.tlog.merkle import (
    Frontier,
    ProofError,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    needed,
    range_hash,
    verify_consistency,
    verify_inclusion,
)

# --- RFC 9162 2.1, by the letter ---


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _h(b"")
    if n == 1:
        return _h(b"\x00" + d[0])
    k = 2 ** (math.ceil(math.log2(n)) - 1)
    return _h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 2 ** (math.ceil(math.log2(n)) - 1)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 2 ** (math.ceil(math.log2(n)) - 1)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


# --- production side: a stored tree built by the frontier, proofs read from it ---


def build(
    data: list[bytes], chunks: list[int] | None = None
) -> tuple[Frontier, dict[tuple[int, int], bytes]]:
    frontier = Frontier.empty()
    nodes: dict[tuple[int, int], bytes] = {}
    pos = 0
    for size in chunks or [len(data)]:
        frontier, made = frontier.extend(leaf_hash(x) for x in data[pos : pos + size])
        nodes.update({(level, index): h for level, index, h in made})
        pos += size
    frontier, made = frontier.extend(leaf_hash(x) for x in data[pos:])
    nodes.update({(level, index): h for level, index, h in made})
    return frontier, nodes


def inclusion(index: int, size: int, nodes: dict[tuple[int, int], bytes]) -> list[bytes]:
    ranges = inclusion_ranges(index, size)
    assert set(needed(ranges)) <= set(nodes)
    return [range_hash(a, b, nodes) for a, b in ranges]


def consistency(first: int, second: int, nodes: dict[tuple[int, int], bytes]) -> list[bytes]:
    return [range_hash(a, b, nodes) for a, b in consistency_ranges(first, second)]


def _data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def _flip(items: list[bytes], which: int, bit: int) -> list[bytes]:
    out = list(items)
    raw = bytearray(out[which])
    raw[bit // 8 % len(raw)] ^= 1 << (bit % 8)
    out[which] = bytes(raw)
    return out


def test_empty_and_small_trees_match_the_definition():
    assert Frontier.empty().root() == _h(b"")
    for n in range(1, 40):
        frontier, nodes = build(_data(n))
        assert frontier.root() == mth(_data(n))
        assert Frontier.of(n, nodes).root() == mth(_data(n))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 600), st.data())
def test_frontier_in_any_chunks_gives_the_root(n, data):
    chunks = data.draw(st.lists(st.integers(1, 50), max_size=20))
    frontier, _ = build(_data(n), chunks)
    assert frontier.size == n and frontier.root() == mth(_data(n))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.data())
def test_inclusion_proof_is_rfc_path_and_verifies(n, data):
    m = data.draw(st.integers(0, n - 1))
    d = _data(n)
    _, nodes = build(d)
    got = inclusion(m, n, nodes)
    assert got == path(m, d)
    verify_inclusion(leaf_hash(d[m]), m, n, got, mth(d))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.data())
def test_consistency_proof_is_rfc_proof_and_verifies(n, data):
    m = data.draw(st.integers(1, n))
    d = _data(n)
    _, nodes = build(d)
    got = consistency(m, n, nodes)
    assert got == (proof(m, d) if m < n else [])
    verify_consistency(m, n, mth(d[:m]), mth(d), got)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 300), st.data())
def test_a_flipped_bit_never_verifies_inclusion(n, data):
    m = data.draw(st.integers(0, n - 1))
    d = _data(n)
    p = path(m, d)
    root, leaf = mth(d), leaf_hash(d[m])
    target = data.draw(st.sampled_from(["proof", "leaf", "root"] if p else ["leaf", "root"]))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        if target == "proof":
            verify_inclusion(leaf, m, n, _flip(p, data.draw(st.integers(0, len(p) - 1)), bit), root)
        elif target == "leaf":
            verify_inclusion(_flip([leaf], 0, bit)[0], m, n, p, root)
        else:
            verify_inclusion(leaf, m, n, p, _flip([root], 0, bit)[0])


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 300), st.data())
def test_a_flipped_bit_never_verifies_consistency(n, data):
    m = data.draw(st.integers(1, n - 1))
    d = _data(n)
    p = proof(m, d)
    old, new = mth(d[:m]), mth(d)
    target = data.draw(st.sampled_from(["proof", "old", "new"]))
    bit = data.draw(st.integers(0, 255))
    with pytest.raises(ProofError):
        if target == "proof":
            verify_consistency(m, n, old, new, _flip(p, data.draw(st.integers(0, len(p) - 1)), bit))
        elif target == "old":
            verify_consistency(m, n, _flip([old], 0, bit)[0], new, p)
        else:
            verify_consistency(m, n, old, _flip([new], 0, bit)[0], p)


@pytest.mark.parametrize(("m", "n"), [(3, 7), (4, 8), (1, 2), (6, 13)])
def test_a_cut_or_padded_proof_or_a_smaller_tree_is_refused(m, n):
    d = _data(n)
    p = proof(m, d)
    with pytest.raises(ProofError):
        verify_consistency(m, n, mth(d[:m]), mth(d), p[:-1])
    with pytest.raises(ProofError):
        verify_consistency(m, n, mth(d[:m]), mth(d), [*p, p[0]])
    with pytest.raises(ProofError):  # a smaller tree than the old one: truncation
        verify_consistency(n, m, mth(d), mth(d[:m]), p)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(d[0]), n, n, path(0, d), mth(d))  # index out of the tree
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(d[0]), 0, n, [b"\x00" * 32] * 200, mth(d))  # absurdly long


def test_same_size_needs_the_same_root():
    d = _data(5)
    verify_consistency(5, 5, mth(d), mth(d), [])
    with pytest.raises(ProofError, match="different roots"):
        verify_consistency(5, 5, mth(d), mth(_data(6)[1:]), [])


def test_proofs_read_few_nodes():
    # O(log n) stored subtrees per proof, whatever the size.
    n = 100_003
    for index in (0, 1, 65_535, 99_999, n - 1):
        assert len(needed(inclusion_ranges(index, n))) <= 2 * 17
    assert len(needed(consistency_ranges(77_777, n))) <= 2 * 17


# --- signed notes and checkpoints ---


def _signer(name: str = "example.org/log") -> tuple[NoteSigner, ed25519.Ed25519PrivateKey]:
    key = ed25519.Ed25519PrivateKey.generate()
    return NoteSigner(name, key), key


def test_key_id_and_vkey_follow_signed_note():
    signer, key = _signer()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = hashlib.sha256(b"example.org/log\n\x01" + raw).digest()[:4]
    b64 = base64.b64encode(b"\x01" + raw).decode()
    assert signer.verifier.vkey() == f"example.org/log+{key_id.hex()}+{b64}"
    assert parse_vkey(signer.verifier.vkey()) == signer.verifier
    bad = signer.verifier.vkey().replace(key_id.hex(), "00000000")
    with pytest.raises(NoteError, match="key ID"):
        parse_vkey(bad)


def test_a_note_signed_by_another_implementation_verifies():
    # The example of Go's golang.org/x/mod/sumdb/note package documentation (the signed-note
    # format's origin): its verifier key and signed note, verified here byte for byte.
    verifier = parse_vkey("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    text = (
        b"If you think cryptography is the answer to your problem,\n"
        b"then you don't know what your problem is.\n"
    )
    sig = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
    note = text + f"\n\u2014 PeterNeumann {sig}\n".encode()
    assert verifier.open(note) == text
    with pytest.raises(NoteError):
        verifier.open(note.replace(b"answer", b"Answer"))


def test_checkpoint_note_format_and_round_trip():
    signer, key = _signer()
    root = mth(_data(3))
    note = signer.sign_checkpoint(Checkpoint("example.org/log", 3, root))
    text, sigs = note.split(b"\n\n")
    assert text + b"\n" == f"example.org/log\n3\n{base64.b64encode(root).decode()}\n".encode()
    # "— <name> <base64(key ID || Ed25519 signature over the text)>"
    assert sigs.startswith("\u2014 example.org/log ".encode()) and sigs.endswith(b"\n")
    raw = base64.b64decode(sigs.split(b" ")[-1])
    assert raw[:4] == signer.verifier.key_id
    key.public_key().verify(raw[4:], text + b"\n")
    assert open_checkpoint(note, signer.verifier) == Checkpoint("example.org/log", 3, root)


def test_checkpoint_signature_is_checked():
    signer, _ = _signer()
    other, _ = _signer()
    note = signer.sign_checkpoint(Checkpoint("example.org/log", 9, mth(_data(9))))
    with pytest.raises(NoteError, match="no signature"):
        open_checkpoint(note, other.verifier)
    for i in range(len(note)):
        if note[i : i + 1] == b"\n":
            continue
        tampered = note[:i] + bytes([note[i] ^ 1]) + note[i + 1 :]
        with pytest.raises(NoteError):
            open_checkpoint(tampered, signer.verifier)
    # Another key's cosignature (a witness) is ignored; the log's own still counts.
    witness = base64.b64encode(b"abcd" + bytes(64)).decode()
    cosigned = note + f"\u2014 witness.example {witness}\n".encode()
    assert open_checkpoint(cosigned, signer.verifier).size == 9


def test_a_checkpoint_for_another_origin_is_refused():
    signer, key = _signer("other.example/log")
    note = signer.sign_checkpoint(Checkpoint("other.example/log", 1, mth(_data(1))))
    with pytest.raises(NoteError):
        open_checkpoint(note, NoteSigner("example.org/log", key).verifier)


@pytest.mark.parametrize(
    "text",
    [
        b"example.org/log\n03\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # leading zero
        b"example.org/log\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        b"example.org/log\n3\n",
        b"example.org/log\n3\nAAAA\n",  # not 32 bytes
        b"example.org/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # no final newline
        b"example.org/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\nx\n",  # an empty line
        b"example org\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # space in the origin
        b"example.org/log\n3\x01\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",  # control character
        b"example.org/log\n99999999999999999999\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    ],
)
def test_malformed_checkpoints_are_refused(text):
    with pytest.raises(NoteError):
        parse_checkpoint(text)


def test_checkpoint_extension_lines_are_ignored():
    text = b"example.org/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nsome extension\n"
    assert parse_checkpoint(text).size == 3


# --- canonical entries ---


def test_entry_round_trip_and_canonical_bytes():
    record = {"b": [1, "é", None, 1.5], "a": {"z": True}, "serial": "ff"}
    data = entry_bytes(7, "2026-01-01T00:00:00+00:00", canonical_json(record))
    assert data == canonical_json({"seq": 7, "time": "2026-01-01T00:00:00+00:00", "record": record})
    entry = parse_entry(data)
    assert (entry.seq, entry.index, entry.record) == (7, 6, record)


@pytest.mark.parametrize(
    ("data", "check"),
    [
        (b'{"record":{"a":1,"a":2},"seq":1,"time":"t"}', "entry.duplicate_key"),
        (b'{"record":{},"record":{},"seq":1,"time":"t"}', "entry.duplicate_key"),
        (b'{"record":{"a":NaN},"seq":1,"time":"t"}', "entry.number"),
        (b'{"record":{"a":Infinity},"seq":1,"time":"t"}', "entry.number"),
        (b'{"record":{}, "seq":1,"time":"t"}', "entry.canonical"),
        (b'{"seq":1,"record":{},"time":"t"}', "entry.canonical"),
        (b'{"record":{"a":"\\u0041"},"seq":1,"time":"t"}', "entry.canonical"),
        (b'{"record":{"a":-0},"seq":1,"time":"t"}', "entry.canonical"),
        (b'{"record":{"a":1.0e0},"seq":1,"time":"t"}', "entry.canonical"),
        (b'{"record":{},"seq":1,"time":"t"}\n', "entry.canonical"),
        (b'{"record":{},"seq":0,"time":"t"}', "entry.seq"),
        (b'{"record":{},"seq":true,"time":"t"}', "entry.seq"),
        (b'{"record":{},"seq":1.0,"time":"t"}', "entry.seq"),
        (b'{"record":[],"seq":1,"time":"t"}', "entry.shape"),
        (b'{"record":{},"seq":1,"time":"t","x":1}', "entry.shape"),
        (b'{"record":{"a":"\xff"},"seq":1,"time":"t"}', "entry.json"),
        (b'{"record":{"a":"\\ud800"},"seq":1,"time":"t"}', "entry.json"),
        (b'{"record":{"a":' + b"[" * 40 + b"]" * 40 + b'},"seq":1,"time":"t"}', "entry.depth"),
        (b"[" * 100_000, "entry.json"),
        (b"{" + b" " * (1 << 20) + b"}", "entry.size"),
    ],
)
def test_strict_parser_refuses_every_other_spelling(data, check):
    with pytest.raises(EntryError) as e:
        parse_entry(data)
    assert e.value.check == check


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _json, max_size=6), st.integers(1, 2**40), st.text(max_size=30))
def test_any_record_round_trips_and_any_changed_byte_is_refused_or_differs(record, seq, time):
    try:
        body = canonical_json(record)
    except UnicodeEncodeError:  # a lone surrogate: not UTF-8, never logged
        return
    data = entry_bytes(seq, time, body)
    entry = parse_entry(data)
    assert (entry.seq, entry.time, entry.record) == (seq, time, record)
    # One spelling per value: changing a byte never yields another encoding of the same entry.
    for i in range(0, len(data), max(1, len(data) // 16)):
        mutated = data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :]
        try:
            other = parse_entry(mutated)
        except EntryError:
            continue
        assert (other.seq, other.time, other.record) != (seq, time, record)
