"""``peer_identity`` on ``connect`` (docs/run.md "Sockets"): whom a Keep trusts by SPIFFE ID.

Valid spellings, every refusal with its key and line, and its place in the workload digest.
"""

from __future__ import annotations

import hashlib
import json
import textwrap

import pytest

from donjon.config import (
    ConfigError,
    InvalidValue,
    UnknownKey,
    canonical_config,
    parse_config,
    workload_digest,
)
from donjon.config.model import ConnectEntry
from donjon.config.parse import MAX_PEER_IDENTITIES

MODULE = b"\x00asm\x01\x00\x00\x00"
A = "spiffe://demo.donjon.local/sim/keep/a"
B = "spiffe://demo.donjon.local/keep/b"


def connect(extra: str, *, trust: str = 'trust = "steward"') -> str:
    return f'[[files]]\nkind = "connect"\nname = "peer"\nhost = "127.0.0.1"\nport = 4433\n{trust}\n{extra}\n'


def entry(text: str) -> ConnectEntry:
    (only,) = parse_config(text.encode()).config.files
    assert isinstance(only, ConnectEntry)
    return only


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text.encode(), origin="Donjon.toml")
    return info.value


def test_one_id_as_a_string_or_a_list_means_the_same() -> None:
    one = entry(connect(f'peer_identity = "{A}"'))
    listed = entry(connect(f'peer_identity = ["{A}"]'))
    assert one.peer_identity == listed.peer_identity == (A,)
    assert one == listed


def test_several_ids_are_kept_sorted_so_their_order_has_no_meaning() -> None:
    got = entry(connect(f'peer_identity = ["{A}", "{B}"]'))
    assert got.peer_identity == (B, A)  # ".../keep/b" sorts before ".../sim/keep/a"
    assert got == entry(connect(f'peer_identity = ["{B}", "{A}"]'))


def test_with_a_trust_file_too() -> None:
    got = entry(connect(f'peer_identity = "{A}"', trust='trust = "file"\ntrust_file = "ca.pem"'))
    assert (got.trust, got.trust_file, got.peer_identity) == ("file", "ca.pem", (A,))


def test_without_the_key_the_peer_is_checked_by_host_name() -> None:
    assert entry(connect("")).peer_identity == ()


@pytest.mark.parametrize(
    ("extra", "trust", "key", "line", "reason"),
    [
        (
            'peer_identity = "https://example.org/a"',
            'trust = "steward"',
            "files[0].peer_identity",
            7,
            "spiffe://",
        ),
        (
            'peer_identity = "spiffe://Upper.Case/a"',
            'trust = "steward"',
            "files[0].peer_identity",
            7,
            "trust domain",
        ),
        ('peer_identity = "spiffe://td/a/../b"', 'trust = "steward"', "files[0].peer_identity", 7, "'..'"),
        ('peer_identity = "spiffe://td/a/"', 'trust = "steward"', "files[0].peer_identity", 7, "trailing"),
        ('peer_identity = "spiffe://td/a?x=1"', 'trust = "steward"', "files[0].peer_identity", 7, "query"),
        ('peer_identity = ""', 'trust = "steward"', "files[0].peer_identity", 7, "empty"),
        ("peer_identity = 7", 'trust = "steward"', "files[0].peer_identity", 7, "an integer"),
        ("peer_identity = []", 'trust = "steward"', "files[0].peer_identity", 7, "admit nobody"),
        (f'peer_identity = ["{A}", 3]', 'trust = "steward"', "files[0].peer_identity[1]", 7, "a string"),
        (f'peer_identity = ["{A}", "{A}"]', 'trust = "steward"', "files[0].peer_identity[1]", 7, "twice"),
        # Only with TLS, and only with anchors that can vouch for a SPIFFE ID.
        (f'peer_identity = "{A}"', 'prot = "tcp"', "files[0].peer_identity", 7, 'prot = "tls"'),
        (f'peer_identity = "{A}"', 'trust = "system"', "files[0].peer_identity", 7, "system roots"),
        (f'peer_identity = "{A}"', "", "files[0].peer_identity", 7, "system roots"),
    ],
)
def test_invalid_peer_identity_names_the_key_and_the_line(
    extra: str, trust: str, key: str, line: int, reason: str
) -> None:
    err = error(connect(extra, trust=trust))
    assert type(err) is InvalidValue
    assert (err.key, err.line) == (key, line)
    assert str(err).startswith(f"Donjon.toml:{line}: {key}: ") and reason in str(err)


def test_too_many_ids_are_refused() -> None:
    ids = ", ".join(f'"spiffe://td/k{i}"' for i in range(MAX_PEER_IDENTITIES + 1))
    err = error(connect(f"peer_identity = [{ids}]"))
    assert err.key == "files[0].peer_identity" and "more than" in str(err)


def test_the_key_belongs_to_connect_only() -> None:
    err = error(f'[[files]]\nkind = "listen"\nname = "L"\npeer_identity = "{A}"\n')
    assert type(err) is UnknownKey and err.key == "files[0].peer_identity" and err.line == 4


def test_client_identity_is_held_to_the_same_spiffe_grammar() -> None:
    text = '[[files]]\nkind = "listen"\nname = "L"\nclient_auth = "steward"\nclient_identity = "spiffe://td/a//b"\n'
    err = error(text)
    assert type(err) is InvalidValue and err.key == "files[0].client_identity" and err.line == 5


def digest_of(text: str) -> bytes:
    return workload_digest(MODULE, parse_config(text.encode()).config)


def test_peer_identity_is_part_of_the_workload_digest() -> None:
    without = digest_of(connect(""))
    with_a = digest_of(connect(f'peer_identity = "{A}"'))
    with_b = digest_of(connect(f'peer_identity = "{B}"'))
    with_both = digest_of(connect(f'peer_identity = ["{A}", "{B}"]'))
    assert len({without, with_a, with_b, with_both}) == 4
    # Spelling is not meaning: a string or a one-item list, any order of a list.
    assert with_a == digest_of(connect(f'peer_identity = ["{A}"]'))
    assert with_both == digest_of(connect(f'peer_identity = ["{B}", "{A}"]'))


def test_canonical_config_lists_peer_identity_sorted_and_omits_it_when_unset() -> None:
    files = json.loads(
        canonical_config(parse_config(connect(f'peer_identity = ["{A}", "{B}"]').encode()).config)
    )["files"]
    assert files[0]["peer_identity"] == [B, A]
    plain = json.loads(canonical_config(parse_config(connect("").encode()).config))["files"][0]
    # The canonical form of an entry without the key is what it was before the key existed.
    assert plain == {
        "host": "127.0.0.1",
        "kind": "connect",
        "name": "peer",
        "port": 4433,
        "prot": "tls",
        "trust": "steward",
        "trust_file": None,
    }


def test_digest_of_a_config_without_peer_identity_follows_the_formula() -> None:
    config = parse_config(textwrap.dedent(connect("")).encode()).config
    expected_json = (
        b'{"args":[],"backends":null,"env":{},"files":[{"host":"127.0.0.1","kind":"connect","name":"peer",'
        b'"port":4433,"prot":"tls","trust":"steward","trust_file":null}],'
        b'"limits":{"deadline_ms":null,"instances":1,"memories":1,"memory":1073741824,"memory64":false,'
        b'"multi_memory":false,"table_elements":1048576,"tables":1},'
        b'"steward":null}'
    )
    assert canonical_config(config) == expected_json
    inner = hashlib.sha256(MODULE).digest() + hashlib.sha256(expected_json).digest()
    assert workload_digest(MODULE, config) == hashlib.sha256(b"donjon-workload-v1\x00" + inner).digest()


# --- allow_simulated / allow_unattested (issue 9, finding 3) ---


def test_host_named_entries_may_allow_marked_peers_and_it_is_in_the_digest() -> None:
    plain = parse_config(connect("").encode()).config
    sim = parse_config(connect("allow_simulated = true").encode()).config
    both = parse_config(connect("allow_simulated = true\nallow_unattested = true").encode()).config
    (e,) = sim.files
    assert isinstance(e, ConnectEntry) and e.allow_simulated and not e.allow_unattested
    digests = {workload_digest(MODULE, c) for c in (plain, sim, both)}
    assert len(digests) == 3  # whom the workload accepts is part of what it is
    # Off is the default and leaves the canonical form (and so old digests) unchanged.
    off = parse_config(connect("allow_simulated = false").encode()).config
    assert canonical_config(off) == canonical_config(plain)
    assert "allow_simulated" not in json.loads(canonical_config(plain))["files"][0]
    assert json.loads(canonical_config(sim))["files"][0]["allow_simulated"] is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (connect('allow_simulated = "yes"'), "true or false"),
        (connect("allow_unattested = 1"), "true or false"),
        (connect(f'peer_identity = "{A}"\nallow_simulated = true'), "with peer_identity, name the ID"),
        (connect("allow_simulated = true", trust='prot = "tcp"'), 'needs prot = "tls"'),
    ],
)
def test_allow_marked_peers_refusals(text: str, message: str) -> None:
    e = error(text)
    assert isinstance(e, InvalidValue) and message in str(e)
