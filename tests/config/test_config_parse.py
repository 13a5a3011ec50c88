"""Donjon.toml / Enarx.toml parsing: Enarx's keys and defaults, Donjon's additions, errors with key + line."""

from __future__ import annotations

import textwrap

import pytest

from donjon.config import (
    DEFAULT_FILES,
    ConfigError,
    ConfigSyntaxError,
    ConnectEntry,
    DirEntry,
    DuplicateName,
    InvalidValue,
    ListenEntry,
    MissingKey,
    StdioEntry,
    UnknownKey,
    WorkloadConfig,
    parse_config,
)


def parse(text: str) -> WorkloadConfig:
    return parse_config(textwrap.dedent(text).encode(), origin="Enarx.toml").config


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text).encode(), origin="Enarx.toml")
    return info.value


# Realistic Enarx.toml files, as Enarx's `enarx config init` template and its examples wrote them.
ENARX_TEMPLATE = """\
## Configuration for a WASI application in an Enarx Keep

## Arguments
# args = [
#      "--argument1",
#      "--argument2=foo"
# ]

## Steward
# steward = "https://attest.profian.com"

## Environment variables
# [env]
# VAR1 = "var1"
# VAR2 = "var2"

## Pre-opened file descriptors
[[files]]
kind = "stdin"

[[files]]
kind = "stdout"

[[files]]
kind = "stderr"

## A listen socket
# [[files]]
# name = "LISTEN"
# kind = "listen"
# prot = "tls" # or prot = "tcp"
# port = 12345
"""

ENARX_ECHO_SERVER = """\
steward = "https://attest.profian.com"
args = ["--verbose", "--port=12345"]

[env]
RUST_LOG = "info"
"WITH SPACE" = 'x'

[[files]]
kind = "stdin"

[[files]]
kind = "stdout"

[[files]]
kind = "stderr"

[[files]]
name = "LISTEN"
kind = "listen"
prot = "tls"
port = 12345

[[files]]
kind = "connect"
host = "example.com"
prot = "tcp"
"""


def test_enarx_template_is_three_stdio_files() -> None:
    config = parse(ENARX_TEMPLATE)
    assert config.files == DEFAULT_FILES
    assert config.args == () and config.env == () and config.steward is None
    assert config.guest_env() == (("FD_COUNT", "3"), ("FD_NAMES", "stdin:stdout:stderr"))
    assert config.guest_args() == ("main.wasm",)


def test_enarx_server_config_fills_enarx_defaults() -> None:
    config = parse(ENARX_ECHO_SERVER)
    assert config.steward == "https://attest.profian.com"
    assert config.args == ("--verbose", "--port=12345")
    assert config.env == (("RUST_LOG", "info"), ("WITH SPACE", "x"))
    listen, connect = config.files[3], config.files[4]
    assert listen == ListenEntry(name="LISTEN", addr="::", port=12345, prot="tls")
    # connect: name defaults to the host; tcp's default port is 80; no trust anchors for tcp.
    assert connect == ConnectEntry(name="example.com", host="example.com", port=80, prot="tcp", trust=None)
    assert config.guest_env()[:2] == (
        ("FD_COUNT", "5"),
        ("FD_NAMES", "stdin:stdout:stderr:LISTEN:example.com"),
    )
    assert config.guest_args() == ("main.wasm", "--verbose", "--port=12345")


def test_enarx_crate_example_mixed_kinds_and_names() -> None:
    config = parse(
        """
        [[files]]
        kind = "stdin"

        [[files]]
        name = "X"
        kind = "listen"
        prot = "tcp"
        port = 9000

        [[files]]
        kind = "stdout"

        [[files]]
        kind = "null"

        [[files]]
        kind = "stderr"

        [[files]]
        kind = "connect"
        host = "example.com"
        """
    )
    assert config.fd_names == ("stdin", "X", "stdout", "null", "stderr", "example.com")
    assert config.files[5] == ConnectEntry("example.com", "example.com", 443, "tls", "system")
    assert config.files[1] == ListenEntry("X", "::", 9000, "tcp")


def test_inline_env_table_and_stdio_names() -> None:
    config = parse(
        """
        env = { "FOO" = "foo", "BAR" = "bar" }
        files = [ { kind = "null", name = "devnull" }, { kind = "stdout" } ]
        """
    )
    assert config.env == (("FOO", "foo"), ("BAR", "bar"))
    assert config.files == (StdioEntry("null", "devnull"), StdioEntry("stdout", "stdout"))


def test_no_files_and_empty_files_mean_stdio() -> None:
    assert parse('args = ["a"]').files == DEFAULT_FILES
    assert parse("files = []").files == DEFAULT_FILES
    assert parse("").files == DEFAULT_FILES


def test_donjon_additions() -> None:
    config = parse(
        """
        backends = ["snp", "tdx"]

        [[files]]
        kind = "stdin"
        [[files]]
        kind = "stdout"
        [[files]]
        kind = "stderr"

        [[files]]
        kind = "dir"
        path = "data"
        guest_path = "/data"

        [[files]]
        kind = "dir"
        name = "scratch"
        path = "../tmp"
        writable = true

        [[files]]
        kind = "listen"
        name = "api"
        port = 8443
        client_auth = "steward"
        client_identity = "spiffe://example.org/workload/db"

        [[files]]
        kind = "connect"
        host = "db.internal"
        port = 5432
        trust = "file"
        trust_file = "ca.pem"
        """
    )
    assert config.backends == ("snp", "tdx")
    assert config.files[3] == DirEntry(name="/data", path="data", guest_path="/data", writable=False)
    assert config.files[4] == DirEntry(name="scratch", path="../tmp", guest_path="../tmp", writable=True)
    assert config.files[5] == ListenEntry(
        "api", "::", 8443, "tls", "steward", "spiffe://example.org/workload/db"
    )
    assert config.files[6] == ConnectEntry("db.internal", "db.internal", 5432, "tls", "file", "ca.pem")


@pytest.mark.parametrize(
    ("text", "key", "line", "suggestion"),
    [
        # The two: a typo that silently dropped the backend allow-list, and one that
        # dropped every socket.
        ('steward = "https://s.example"\n\nbackend = ["snp"]\n', "backend", 3, "backends"),
        ('args = []\n\n[[file]]\nkind = "listen"\nname = "web"\n', "file", 3, "files"),
        ('[enviroment]\nA = "1"\n', "enviroment", 1, None),
        ('Steward = "https://s.example"\n', "Steward", 1, "steward"),
        ('stewardca = "ca.pem"\n', "stewardca", 1, "steward_ca"),
    ],
)
def test_unknown_top_level_key_is_an_error_with_line_and_suggestion(
    text: str, key: str, line: int, suggestion: str | None
) -> None:
    err = error(text)
    assert isinstance(err, UnknownKey)
    assert (err.key, err.line, err.origin) == (key, line, "Enarx.toml")
    assert str(err).startswith(f"Enarx.toml:{line}: {key}: unknown top-level key")
    if suggestion is None:
        assert "did you mean" not in str(err)
    else:
        assert f'did you mean "{suggestion}"?' in str(err)


def test_unknown_key_in_a_files_entry_suggests_the_close_one() -> None:
    err = error('[[files]]\nkind = "listen"\nname = "web"\nprt = "tcp"\n')
    assert (err.key, err.line) == ("files[0].prt", 4)
    assert 'did you mean "prot"?' in str(err)


def test_a_hostile_key_is_not_echoed_whole() -> None:
    err = error("k" * 100_000 + " = 1\n")
    assert isinstance(err, UnknownKey) and len(str(err)) < 400


@pytest.mark.parametrize(
    ("text", "kind", "key", "line"),
    [
        # Unknown key inside a [[files]] entry: an error naming the key and its line.
        (
            '[[files]]\nkind = "stdin"\n\n[[files]]\nkind = "null"\ncolour = "red"\n',
            UnknownKey,
            "files[1].colour",
            6,
        ),
        # A key valid for another kind is still unknown for this one.
        ('[[files]]\nkind = "stdin"\nport = 80\n', UnknownKey, "files[0].port", 3),
        # Bad ports: zero, too large, a string, a boolean.
        ('[[files]]\nkind = "listen"\nname = "L"\nport = 0\n', InvalidValue, "files[0].port", 4),
        ('[[files]]\nkind = "connect"\nhost = "h"\n\nport = 70000\n', InvalidValue, "files[0].port", 5),
        ('[[files]]\nkind = "listen"\nname = "L"\nport = "443"\n', InvalidValue, "files[0].port", 4),
        ('[[files]]\nkind = "listen"\nname = "L"\nport = true\n', InvalidValue, "files[0].port", 4),
        ('[[files]]\nkind = "listen"\nname = "L"\nprot = "udp"\n', InvalidValue, "files[0].prot", 4),
        ('[[files]]\nkind = "pipe"\n', InvalidValue, "files[0].kind", 2),
        ('[[files]]\nname = "x"\n', MissingKey, "files[0]", 1),
        ('args = []\n[[files]]\nkind = "listen"\nport = 1\n', MissingKey, "files[0]", 2),
        ('[[files]]\nkind = "connect"\nport = 1\n', MissingKey, "files[0]", 1),
        ('[[files]]\nkind = "null"\nname = "a:b"\n', InvalidValue, "files[0].name", 3),
        ('[[files]]\nkind = "null"\nname = 5\n', InvalidValue, "files[0].name", 3),
        # Duplicate explicit names: the second one is reported.
        (
            '[[files]]\nkind = "stdin"\nname = "io"\n[[files]]\nkind = "stdout"\nname = "io"\n',
            DuplicateName,
            "files[1].name",
            6,
        ),
        # Top-level types and values.
        ('args = "not-a-list"\n', InvalidValue, "args", 1),
        ('args = ["ok", 3]\n', InvalidValue, "args[1]", 1),
        ('\nsteward = "http://plain.example"\n', InvalidValue, "steward", 2),
        ("steward = 1\n", InvalidValue, "steward", 1),
        ('[env]\nA = "1"\nB = 2\n', InvalidValue, "env.B", 3),
        ('[env]\nFD_COUNT = "9"\n', InvalidValue, "env.FD_COUNT", 2),
        ('backends = ["nil", "vmware"]\n', InvalidValue, "backends[1]", 1),
        ("backends = []\n", InvalidValue, "backends", 1),
        ('files = { kind = "stdin" }\n', InvalidValue, "files", 1),
        # Donjon additions are validated too.
        ('[[files]]\nkind = "dir"\nguest_path = "/d"\n', MissingKey, "files[0]", 1),
        ('[[files]]\nkind = "dir"\npath = "d"\nwritable = "yes"\n', InvalidValue, "files[0].writable", 4),
        (
            '[[files]]\nkind = "listen"\nname = "L"\nprot = "tcp"\nclient_auth = "steward"\n',
            InvalidValue,
            "files[0].client_auth",
            5,
        ),
        (
            '[[files]]\nkind = "listen"\nname = "L"\nclient_identity = "spiffe://x/y"\n',
            InvalidValue,
            "files[0].client_identity",
            4,
        ),
        ('[[files]]\nkind = "connect"\nhost = "h"\ntrust = "file"\n', MissingKey, "files[0].trust", 4),
        (
            '[[files]]\nkind = "connect"\nhost = "h"\ntrust_file = "ca.pem"\n',
            InvalidValue,
            "files[0].trust_file",
            4,
        ),
    ],
)
def test_errors_name_the_key_and_the_line(text: str, kind: type[ConfigError], key: str, line: int) -> None:
    err = error(text)
    assert type(err) is kind
    assert (err.key, err.line) == (key, line)
    assert str(err).startswith(f"Enarx.toml:{line}: {key}: ")


def test_syntax_error_reports_tomllib_line() -> None:
    err = error('args = ["a"]\n\n[[files]\nkind = "stdin"\n')
    assert isinstance(err, ConfigSyntaxError)
    assert err.line == 3
    assert "not valid TOML" in str(err)


def test_duplicate_toml_key_is_a_syntax_error() -> None:
    err = error('steward = "https://a.example"\nsteward = "https://b.example"\n')
    assert isinstance(err, ConfigSyntaxError) and err.line == 2


def test_non_utf8_and_oversized_input_are_refused() -> None:
    with pytest.raises(ConfigSyntaxError) as info:
        parse_config(b'args = ["ok"]\nsteward = "\xff"\n')
    assert info.value.line == 2
    with pytest.raises(ConfigSyntaxError, match="limit"):
        parse_config(b"#" * ((1 << 20) + 1))


def test_default_names_may_repeat() -> None:
    # Two null devices (or two connections to one host) are fine: only explicit names must be unique.
    config = parse('[[files]]\nkind = "null"\n[[files]]\nkind = "null"\n')
    assert config.fd_names == ("null", "null")


def test_lines_found_past_multiline_values() -> None:
    # Text inside multi-line strings and arrays that looks like a table header must not shift the count.
    text = '''\
args = [
  "[[files]]",
  """
[[files]]
kind = "bogus"
""",
]
steward_ca = \'\'\'
[[files]]
\'\'\'

[[files]]
kind = "stdin"

[[files]]   # the second entry
kind = "stdout"
"extra" = 1
'''
    err = error(text)
    assert (err.key, err.line) == ("files[1].extra", 17)


def test_lines_with_tricky_toml() -> None:
    from donjon.config.locate import scan

    text = """\
"quoted.key" = "a \\" b # not a comment"
when = 1979-05-27T07:32:00Z
lit = 'C:\\path\\'
ml = \"\"\"ends with an escaped quote \\\"\"\"\"
ml2 = '''it's '' fine'''''
env.DOTTED = "x"
files = [
  { kind = "stdin" },  # inline
  { kind = "stdout", name = "out" },
]
[ "tbl" . sub ]
k = [1, [2, 3], {a = "]"}]
after = true
[[ arr ]]   # comment
x = 1
"""
    lines = scan(text).lines
    assert lines[("quoted.key",)] == 1
    assert lines[("when",)] == 2
    assert lines[("lit",)] == 3
    assert lines[("ml",)] == 4
    assert lines[("ml2",)] == 5
    assert lines[("env", "DOTTED")] == 6
    assert lines[("files",)] == 7
    assert lines[("tbl", "sub")] == 11
    assert lines[("tbl", "sub", "k")] == 12
    assert lines[("tbl", "sub", "after")] == 13
    assert lines[("arr", 0)] == 14
    assert lines[("arr", 0, "x")] == 15
    import tomllib

    tomllib.loads(text)  # the fixture is valid TOML, as the scanner assumes


def test_sub_table_of_a_files_entry_is_located() -> None:
    # ``[files.tls]`` belongs to the latest [[files]] entry; as an unknown key it is reported there.
    err = error(
        '[[files]]\nkind = "stdin"\n\n[[files]]\nkind = "listen"\nname = "L"\n\n[files.tls]\ncert = "x"\n'
    )
    assert (err.key, err.line) == ("files[1].tls", 8)


def test_pre_1_0_enarx_layout_is_refused_with_its_line() -> None:
    # Early Enarx releases described stdio as top-level tables; a current Enarx rejects them, and
    # so does Donjon, at the first one, rather than run with defaults the user did not write.
    err = error('[stdin]\nkind = "host"\n\n[stdout]\nkind = "host"\n')
    assert isinstance(err, UnknownKey) and (err.key, err.line) == ("stdin", 1)


def test_stdio_kinds_in_any_order() -> None:
    # fd 0 need not be stdin: a config may put /dev/null there and stdin elsewhere.
    config = parse('[[files]]\nkind = "null"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stdin"\n')
    assert config.fd_names == ("null", "stdout", "stdin")
