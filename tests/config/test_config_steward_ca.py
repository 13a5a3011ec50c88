"""``steward_ca``: where the Keep reads the Steward CA it pins; parsed, checked, not in the digest."""

from __future__ import annotations

import pytest

from donjon.config import InvalidValue, WorkloadConfig, parse_config, workload_digest

MODULE = b"\x00asm\x01\x00\x00\x00"


def test_steward_ca_is_parsed_as_written() -> None:
    parsed = parse_config(b'steward = "https://s.example.org"\nsteward_ca = "ca/steward.pem"\n')
    assert parsed.config.steward_ca == "ca/steward.pem"
    assert parsed.warnings == ()


def test_steward_ca_defaults_to_none() -> None:
    assert parse_config(b'steward = "https://s.example.org"\n').config.steward_ca is None


@pytest.mark.parametrize("value", ['""', "3", '["a.pem"]'])
def test_steward_ca_must_be_a_non_empty_string(value: str) -> None:
    with pytest.raises(InvalidValue) as e:
        parse_config(f"\nsteward_ca = {value}\n".encode(), origin="Donjon.toml")
    assert "steward_ca" in str(e.value)
    assert e.value.line == 2


def test_steward_ca_does_not_change_the_workload_digest() -> None:
    plain = parse_config(b'steward = "https://s.example.org"\n').config
    pinned = parse_config(b'steward = "https://s.example.org"\nsteward_ca = "ca.pem"\n').config
    assert workload_digest(MODULE, plain) == workload_digest(MODULE, pinned)
    # ... while the Steward URL does.
    assert workload_digest(MODULE, plain) != workload_digest(MODULE, WorkloadConfig())
