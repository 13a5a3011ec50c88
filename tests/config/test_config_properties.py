"""Property tests: hostile config bytes either parse or raise ConfigError, never anything else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.config import ConfigError, WorkloadConfig, parse_config
from donjon.config.locate import scan

REALISTIC = b"""\
steward = "https://steward.example.com"
args = ["--port", "8443", '''multi
line''']

[env]
RUST_LOG = "info"

[[files]]
kind = "stdin"

[[files]]
name = "LISTEN"   # comment
kind = "listen"
port = 8443
prot = "tls"

[[files]]
kind = "dir"
path = "assets"
writable = false
"""


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_config_error(data: bytes) -> None:
    try:
        result = parse_config(data)
    except ConfigError:
        return
    assert isinstance(result.config, WorkloadConfig)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(REALISTIC)), st.integers(0, 40), st.binary(min_size=0, max_size=12))
def test_mutated_realistic_config_parses_or_raises_config_error(at: int, cut: int, insert: bytes) -> None:
    data = REALISTIC[:at] + insert + REALISTIC[at + cut :]
    try:
        result = parse_config(data)
    except ConfigError as e:
        assert e.line is None or 1 <= e.line <= data.count(b"\n") + 1
        return
    assert isinstance(result.config, WorkloadConfig)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(REALISTIC)), st.integers(0, 40), st.binary(min_size=0, max_size=12))
def test_scanner_never_fails_on_valid_toml(at: int, cut: int, insert: bytes) -> None:
    import tomllib

    data = REALISTIC[:at] + insert + REALISTIC[at + cut :]
    try:
        text = data.decode()
        tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    lines = scan(text).lines  # must not raise on any document tomllib accepts
    assert all(1 <= line <= text.count("\n") + 1 for line in lines.values())
