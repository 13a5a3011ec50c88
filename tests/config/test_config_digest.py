"""The workload digest: formatting never changes it, meaning always does (DESIGN.md "One run, as data")."""

from __future__ import annotations

import hashlib

import pytest

from donjon.config import WorkloadConfig, canonical_config, parse_config, workload_digest

MODULE = b"\x00asm\x01\x00\x00\x00"

BASE = """\
steward = "https://steward.example.com"
args = ["--port", "8080"]

[env]
RUST_LOG = "info"
MODE = "prod"

[[files]]
kind = "stdin"

[[files]]
kind = "stdout"

[[files]]
kind = "stderr"

[[files]]
name = "LISTEN"
kind = "listen"
port = 8080
"""

# The same meaning, written differently: comments, order of keys and tables, inline forms,
# spelled-out defaults, other quoting and whitespace.
SAME_MEANING = [
    "# a comment at the top\n" + BASE.replace('kind = "stdin"', 'kind = "stdin"   # fd 0'),
    """\
args = [ "--port",
         "8080", ]
steward = 'https://steward.example.com'
env = { MODE = "prod", RUST_LOG = "info" }
files = [
  { kind = "stdin" }, { kind = "stdout", name = "stdout" }, { kind = "stderr" },
  { kind = "listen", name = "LISTEN", port = 8080, addr = "::", prot = "tls" },
]
""",
]

DIFFERENT_MEANING = [
    BASE.replace('"8080"]', '"8081"]'),  # an argument
    BASE.replace('MODE = "prod"', 'MODE = "dev"'),  # an env value
    BASE.replace("port = 8080", 'port = 8080\nprot = "tcp"'),  # the protocol
    BASE.replace('name = "LISTEN"', 'name = "LISTEN2"'),  # an fd name
    BASE.replace("steward.example.com", "other.example.com"),  # the steward
    BASE + '\n[[files]]\nkind = "null"\n',  # one more fd
    BASE.replace('args = ["--port", "8080"]', 'args = ["8080", "--port"]'),  # argument order
    'backends = ["snp"]\n' + BASE,  # the backend allow-list
]


def digest_of(text: str) -> bytes:
    return workload_digest(MODULE, parse_config(text.encode()).config)


def test_formatting_does_not_change_the_digest() -> None:
    expected = digest_of(BASE)
    for text in SAME_MEANING:
        assert digest_of(text) == expected


@pytest.mark.parametrize("text", DIFFERENT_MEANING)
def test_any_change_in_meaning_changes_the_digest(text: str) -> None:
    assert digest_of(text) != digest_of(BASE)


def test_module_bytes_change_the_digest() -> None:
    config = parse_config(BASE.encode()).config
    assert workload_digest(MODULE, config) != workload_digest(MODULE + b"\x00", config)


def test_digest_follows_the_design_formula() -> None:
    # Recomputed by hand from DESIGN.md for the config used when there is none.
    canonical = (
        b'{"args":[],"backends":null,"env":{},"files":['
        b'{"kind":"stdin","name":"stdin"},{"kind":"stdout","name":"stdout"},{"kind":"stderr","name":"stderr"}'
        b"],"
        b'"limits":{"deadline_ms":null,"instances":1,"memories":1,"memory":1073741824,"memory64":false,'
        b'"multi_memory":false,"table_elements":1048576,"tables":1},'
        b'"steward":null}'
    )
    assert canonical_config(WorkloadConfig()) == canonical
    expected = hashlib.sha256(
        b"donjon-workload-v1\x00" + hashlib.sha256(MODULE).digest() + hashlib.sha256(canonical).digest()
    ).digest()
    assert workload_digest(MODULE, WorkloadConfig()) == expected
    assert parse_config(b"").config == WorkloadConfig()


def test_canonical_config_is_utf8_json_without_escapes() -> None:
    config = parse_config('[env]\nGREETING = "grüße"\n'.encode()).config
    assert '"GREETING":"grüße"'.encode() in canonical_config(config)


def test_a_quick_run_without_fd_env_has_its_own_digest() -> None:
    # Without a config the guest gets no FD_COUNT/FD_NAMES: another environment, another identity;
    # with them (every config file) the canonical form is what it was before the key existed.
    with_config = WorkloadConfig(args=("a",))
    quick = WorkloadConfig(args=("a",), fd_env=False)
    assert b"fd_env" not in canonical_config(with_config)
    assert b'"fd_env":false' in canonical_config(quick)
    assert workload_digest(MODULE, quick) != workload_digest(MODULE, with_config)
    assert quick.guest_env() == () and with_config.guest_env()[0] == ("FD_COUNT", "3")
