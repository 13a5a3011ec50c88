"""``[limits]``: parsed with every default filled in, errors with key and line, part of the digest."""

from __future__ import annotations

import json
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.config import (
    ConfigError,
    InvalidValue,
    Limits,
    UnknownKey,
    WorkloadConfig,
    canonical_config,
    parse_config,
    workload_digest,
)
from donjon.config.limits import DEFAULT_MEMORY, LIMIT_KEYS, format_size

MODULE = b"\x00asm\x01\x00\x00\x00"


def limits(text: str) -> Limits:
    return parse_config(textwrap.dedent(text).encode(), origin="Donjon.toml").config.limits


def digest(text: str) -> bytes:
    return workload_digest(MODULE, parse_config(textwrap.dedent(text).encode()).config)


def test_defaults_without_a_limits_table() -> None:
    default = parse_config(b'args = ["x"]\n').config.limits
    assert default == Limits() == WorkloadConfig().limits
    assert default.memory == DEFAULT_MEMORY == 1 << 30
    assert (default.memories, default.tables, default.instances) == (1, 1, 1)
    assert not default.memory64 and not default.multi_memory
    assert default.deadline_ms is None
    # An empty table means the defaults too.
    assert limits("[limits]\n") == Limits()


def test_every_key_parses() -> None:
    parsed = limits(
        """\
        [limits]
        memory = "3 GiB"
        memory64 = true
        multi_memory = true
        memories = 3
        tables = 2
        table_elements = 5000
        instances = 1
        deadline = 2.5
        """
    )
    assert parsed == Limits(
        memory=3 << 30,
        memories=3,
        memory64=True,
        multi_memory=True,
        tables=2,
        table_elements=5000,
        instances=1,
        deadline_ms=2500,
    )
    # The bound covers all memories (tables) together: each gets an equal share.
    assert parsed.memory_share == 1 << 30
    assert parsed.table_share == 2500


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("268435456", 256 << 20),
        ('"256 MiB"', 256 << 20),
        ('"262144KiB"', 256 << 20),
        ('" 1 GiB "', 1 << 30),
        ('"1_048_576 B"', 1 << 20),
        ('"65536"', 65536),
        ('"2 TiB"', 2 << 40),
    ],
)
def test_sizes_are_bytes_or_binary_units(written: str, size: int) -> None:
    assert limits(f"[limits]\nmemory = {written}\n").memory == size


def test_spelling_of_a_limit_does_not_change_the_digest() -> None:
    base = digest('[limits]\nmemory = "256 MiB"\ndeadline = 2\n')
    assert digest("[limits]\nmemory = 268435456\ndeadline = 2.0\n") == base
    assert digest('limits = { deadline = 2.000, memory = "262144 KiB" }\n') == base
    assert limits("[limits]\ndeadline = 0.1\n").deadline_ms == 100  # 0.1 * 1000 is not exactly 100
    # Writing a default out is the same workload as leaving it implicit.
    assert digest(f"[limits]\nmemory = {DEFAULT_MEMORY}\ntables = 1\nmemory64 = false\n") == digest("")


@pytest.mark.parametrize(
    "change",
    [
        'memory = "512 MiB"',
        "memory64 = true",
        "multi_memory = true\nmemories = 2",
        "tables = 2",
        "table_elements = 1000",
        "instances = 2",
        "deadline = 30",
    ],
)
def test_changing_any_limit_changes_the_digest(change: str) -> None:
    assert digest(f"[limits]\n{change}\n") != digest("")


def test_canonical_form_has_every_limit_in_bytes_and_milliseconds() -> None:
    config = parse_config(b'[limits]\nmemory = "2 GiB"\ndeadline = 0.25\n').config
    document = json.loads(canonical_config(config))
    assert document["limits"] == {
        "memory": 2 << 30,
        "memories": 1,
        "memory64": False,
        "multi_memory": False,
        "tables": 1,
        "table_elements": 1 << 20,
        "instances": 1,
        "deadline_ms": 250,
    }
    assert set(document["limits"]) == {*LIMIT_KEYS, "deadline_ms"} - {"deadline"}


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text).encode(), origin="Donjon.toml")
    return info.value


@pytest.mark.parametrize(
    ("text", "kind", "key", "line", "says"),
    [
        ("limits = 3\n", InvalidValue, "limits", 1, "must be a table"),
        ("[limits]\nmemroy = 1\n", UnknownKey, "limits.memroy", 2, "did you mean 'memory'"),
        ('args = []\n[limits]\ndeadline = 1\nargs = ["x"]\n', UnknownKey, "limits.args", 4, "unknown key"),
        ('[limits]\n\nmemory = "256 MB"\n', InvalidValue, "limits.memory", 3, "ambiguous"),
        ('[limits]\nmemory = "1.5 GiB"\n', InvalidValue, "limits.memory", 2, '"256 MiB"'),
        ('[limits]\nmemory = "lots"\n', InvalidValue, "limits.memory", 2, "a size"),
        ("[limits]\nmemory = 1.5\n", InvalidValue, "limits.memory", 2, "got a float"),
        ("[limits]\nmemory = -1\n", InvalidValue, "limits.memory", 2, "at most"),
        ('[limits]\nmemory = "17 TiB"\n', InvalidValue, "limits.memory", 2, "at most 16 TiB"),
        ("[limits]\nmemory = 1000\n", InvalidValue, "limits.memory", 2, "less than one 64 KiB page"),
        (
            '[limits]\nmulti_memory = true\nmemories = 3\nmemory = "128 KiB"\n',
            InvalidValue,
            "limits.memory",
            4,
            "for each of the 3 memories",
        ),
        ('[limits]\nmemory64 = "yes"\n', InvalidValue, "limits.memory64", 2, "true or false"),
        ("[limits]\nmemories = 3\n", InvalidValue, "limits.memories", 2, "needs multi_memory = true"),
        ("[limits]\nmulti_memory = true\n", InvalidValue, "limits.multi_memory", 2, "memories = N"),
        ("[limits]\ntables = 0\n", InvalidValue, "limits.tables", 2, "between 1 and 1000"),
        ("[limits]\ninstances = true\n", InvalidValue, "limits.instances", 2, "an integer"),
        ("[limits]\ntable_elements = 4294967297\n", InvalidValue, "limits.table_elements", 2, "between"),
        ("[limits]\ndeadline = 0\n", InvalidValue, "limits.deadline", 2, "positive"),
        ("[limits]\ndeadline = -0.5\n", InvalidValue, "limits.deadline", 2, "positive"),
        ("[limits]\ndeadline = nan\n", InvalidValue, "limits.deadline", 2, "positive"),
        ("[limits]\ndeadline = inf\n", InvalidValue, "limits.deadline", 2, "positive"),
        ("[limits]\ndeadline = 0.0004\n", InvalidValue, "limits.deadline", 2, "at least 0.001 seconds"),
        ("[limits]\ndeadline = 1.0004\n", InvalidValue, "limits.deadline", 2, "millisecond precision"),
        ("[limits]\ndeadline = 1.5000001\n", InvalidValue, "limits.deadline", 2, "millisecond precision"),
        ("[limits]\ndeadline = 1e305\n", InvalidValue, "limits.deadline", 2, "366 days"),
        ('[limits]\ndeadline = "10 s"\n', InvalidValue, "limits.deadline", 2, "number of seconds"),
        ("[limits]\ndeadline = 40000000\n", InvalidValue, "limits.deadline", 2, "366 days"),
        ('limits = { memory = "x" }\n', InvalidValue, "limits.memory", 1, "a size"),
    ],
)
def test_errors_name_the_key_and_the_line(
    text: str, kind: type[ConfigError], key: str, line: int, says: str
) -> None:
    err = error(text)
    assert type(err) is kind
    assert (err.key, err.line) == (key, line)
    assert str(err).startswith(f"Donjon.toml:{line}: {key}: ")
    assert says in err.reason


def test_format_size_names_the_largest_exact_unit() -> None:
    assert [format_size(n) for n in (1 << 30, 256 << 20, 1000, 0, 3 << 40)] == [
        "1 GiB",
        "256 MiB",
        "1000 B",
        "0 B",
        "3 TiB",
    ]


_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*LIMIT_KEYS, "other"]), _VALUES, max_size=5))
def test_any_limits_table_parses_or_raises_config_error(table: dict[str, object]) -> None:
    """Rule: whatever [limits] holds, the parser returns bounded Limits or a ConfigError."""
    lines = ["[limits]"]
    for key, value in table.items():
        lines.append(f"{key} = {json.dumps(value) if not isinstance(value, float) else _toml_float(value)}")
    try:
        parsed = parse_config("\n".join(lines) + "\n").config.limits
    except ConfigError:
        return
    assert parsed.memories >= 1 and parsed.memory_share >= 65536
    assert parsed.deadline_ms is None or parsed.deadline_ms > 0


def _toml_float(value: float) -> str:
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return repr(value)
