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


# -- the scanner finds every key's own line, however the file is laid out ------------------

_FILLERS = st.sampled_from(
    [
        "",
        "# a comment with [[files]] and key = 1 in it",
        "   ",
        'note = """\n[[files]]\nkind = "x"\n"""',
        "list = [\n  '[[files]]',  # inside an array\n  \"a = b\",\n]",
        "quoted = 'kind = \"listen\"'",
    ]
)
_VALUES = st.sampled_from(['"stdin"', "443", "true", "'lit'", '"a # b"', "[1, [2]]", "{ x = 1 }"])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(
                st.tuples(st.sampled_from(["kind", "name", "port", "prot", "x-y", "k_1"]), _VALUES),
                max_size=4,
            ),
            st.lists(_FILLERS, max_size=3),
        ),
        max_size=5,
    ),
    st.lists(_FILLERS, max_size=3, unique=True),
)
def test_scanner_reports_each_keys_own_line(
    entries: list[tuple[list[tuple[str, str]], list[str]]], preamble: list[str]
) -> None:
    import tomllib

    lines: list[str] = []
    expected: dict[tuple[str | int, ...], int] = {}

    def emit(text: str) -> int:
        lines.extend(text.split("\n"))
        return len(lines) - text.count("\n")  # the 1-based line the text starts on

    for filler in preamble:
        emit(filler.replace("note", "pre_note").replace("list", "pre_list").replace("quoted", "pre_quoted"))
    for index, (keys, fillers) in enumerate(entries):
        expected[("files", index)] = emit("[[files]]  # entry" if index % 2 else "[[files]]")
        seen: set[str] = set()
        for key, value in keys:
            if key in seen:
                continue
            seen.add(key)
            expected[("files", index, key)] = emit(f"{key} = {value}")
        for filler in fillers:
            name = filler.split(" ", 1)[0]
            if filler.strip() and not filler.startswith("#") and name not in seen:
                seen.add(name)
                expected[("files", index, name)] = emit(filler)
            elif not filler.strip() or filler.startswith("#"):
                emit(filler)
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # the generated layout is valid TOML
    found = scan(text).lines
    for path, line in expected.items():
        assert found[path] == line, (path, text)
