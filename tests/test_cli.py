"""The command line speaks with one voice: help that teaches, one-line usage errors, no tracebacks."""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from donjon.cli import COMMANDS, EXIT_INTERRUPTED, EXIT_OK, EXIT_OPERATIONAL, EXIT_USAGE, main
from donjon.cli import run as run_cli
from donjon.cli.args import HelpFormatter, Parser


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == EXIT_OK
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    assert "examples:" in out


def test_unknown_command_is_usage_error(capsys):
    assert main(["frobnicate"]) == EXIT_USAGE
    assert capsys.readouterr().err == "donjon: unknown command 'frobnicate'\ntry 'donjon --help'\n"
    assert main(["rnu"]) == EXIT_USAGE
    assert "(did you mean 'run'?)" in capsys.readouterr().err


def test_no_arguments_is_usage_error(capsys):
    assert main([]) == EXIT_USAGE


# -- help that teaches -----------------------------------------------------------------


def _command_parser(name: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = importlib.import_module(COMMANDS[name][0]).parser()
    return parser


def _walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for sub in action.choices.values():
                if id(sub) not in seen:  # aliases map to the same parser
                    seen.add(id(sub))
                    yield from _walk(sub)


#: Every parser of every command, subcommands included: a command added later is walked too.
PARSERS = [p for name in COMMANDS for p in _walk(_command_parser(name))]


def test_every_command_and_subcommand_is_walked():
    progs = {p.prog for p in PARSERS}
    assert {
        "donjon run",
        "donjon steward init",
        "donjon steward serve",
        "donjon steward log verify",
        "donjon steward log show",
        "donjon policy check",
        "donjon policy test",
        "donjon evidence verify",
        "donjon evidence show",
        "donjon peer verify",
        "donjon platform info",
        "donjon platform evidence",
        "donjon demo",
    } <= progs


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.prog)
def test_every_parser_has_a_description_examples_and_help_on_every_option(parser):
    assert isinstance(parser, Parser), "use donjon.cli.args.Parser: one-line usage errors"
    assert issubclass(parser.formatter_class, HelpFormatter)
    assert parser.description and parser.description.strip()
    assert parser.epilog and "examples:" in parser.epilog
    assert list(_examples(parser)), f"{parser.prog}: no example of {parser.prog} itself"
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{parser.prog} {choice.dest}: no help"
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{parser.prog} {name}: no help text"
    # The examples survive the formatting: one command per line.
    assert "\nexamples:\n  donjon " in parser.format_help()


def _examples(parser: argparse.ArgumentParser) -> Iterator[list[str]]:
    """The epilog's example commands of this parser, as argv (continuation lines joined)."""
    text = (parser.epilog or "").split("examples:", 1)[-1]
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        argv = shlex.split(line, comments=True)
        if argv[:1] == ["donjon"] and " ".join(argv).startswith(parser.prog + " "):
            yield argv


def _parses(argv: list[str]) -> None:
    """Parse a whole ``donjon ...`` command line as the command would, without running it."""
    assert argv[0] == "donjon" and argv[1] in COMMANDS, argv
    if argv[1] == "run":
        opts = run_cli.parse_args(argv[2:])  # raises UsageError
        assert not opts.help
        return
    _command_parser(argv[1]).parse_args(argv[2:])  # SystemExit(2) on a usage error


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.prog)
def test_every_example_is_a_valid_command_line(parser, capsys):
    for argv in _examples(parser):
        _parses(argv)
    assert capsys.readouterr().err == ""


def test_the_top_level_examples_are_valid_command_lines():
    from donjon.cli import _EXAMPLES

    for line in _EXAMPLES:
        _parses(shlex.split(line))


def test_run_help_and_run_parser_know_the_same_options():
    # `donjon run` reads its command line by hand (MODULE's arguments go to the guest verbatim) and
    # shows argparse's help: an option added to one and not the other fails here.
    parser = run_cli.parser()
    declared = {opt for action in parser._actions for opt in action.option_strings}
    source = inspect.getsource(run_cli.parse_args) + " ".join(f'"{o}"' for o in run_cli._WITH_VALUE)
    accepted = set(re.findall(r'"(--?[a-z][-a-z]*)"', source))
    assert accepted == declared
    for action in parser._actions:
        for option in action.option_strings:
            value = ["1"] if action.nargs != 0 else []
            opts = run_cli.parse_args([option, *value, "app.wasm"])
            assert opts.help or opts.module == "app.wasm"


def test_run_help_prints_the_parser_help(capsys):
    assert main(["run", "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("usage: donjon run [OPTIONS] MODULE [--] [ARGS...]")
    assert "--dir HOST[::GUEST]" in out and "\nexamples:\n  donjon run " in out


# -- usage errors: one line, then where the help is ------------------------------------


@pytest.mark.parametrize(
    ("argv", "prog"),
    [
        (["run"], "donjon run"),
        (["run", "--frobnicate", "x.wasm"], "donjon run"),
        (["run", "--attest-timeout", "soon", "x.wasm"], "donjon run"),
        (["run", "--env", "=x", "x.wasm"], "donjon run"),  # found after parsing, the same way
        (["steward"], "donjon steward"),
        (["steward", "bogus"], "donjon steward"),
        (["steward", "serve"], "donjon steward serve"),
        (["steward", "log", "show", "--config", "s.toml", "--format", "xml"], "donjon steward log show"),
        (["policy", "check"], "donjon policy check"),
        (["policy", "test", "--policy", "p.toml"], "donjon policy test"),
        (["peer", "verify", "host:1"], "donjon peer verify"),
        (["evidence", "verify"], "donjon evidence verify"),
        (["evidence", "show", "f", "--kind", "tpm"], "donjon evidence show"),
        (["evidence", "verify", "f", "--at", "soon"], "donjon evidence verify"),
        (["platform"], "donjon platform"),
        (["platform", "info", "--format", "xml"], "donjon platform info"),
        (["platform", "evidence", "--backend", "sim-tdx", "--binding", "zz"], "donjon platform evidence"),
        (["demo", "--backend", "snp"], "donjon demo"),
        (["demo", "--timeout", "soon"], "donjon demo"),
        (["demo", "--timeout", "0"], "donjon demo"),
        (["peer", "verify", "host:1", "--ca", "ca.pem", "--timeout", "0"], "donjon peer verify"),
        (["steward", "serve", "--config", "s.toml", "--port", "99999"], "donjon steward serve"),
    ],
)
def test_a_usage_error_is_one_line_and_a_pointer_to_help(argv, prog, capsys):
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2, captured.err
    assert lines[0].startswith(f"{prog}: error: ")
    assert lines[1] == f"try '{prog} --help'"
    assert "usage:" not in captured.err and captured.out == ""


def test_help_is_not_an_error(capsys):
    for name in COMMANDS:
        assert main([name, "--help"]) == EXIT_OK
        out = capsys.readouterr().out
        assert "examples:" in out
        assert main(["help", name]) == EXIT_OK
        assert capsys.readouterr().out == out
    assert main(["help", "steward", "init"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("usage: donjon steward init")


# -- no traceback, whatever happens ----------------------------------------------------

#: (argv, module, function): a command line and a function it calls on the way.
_ON_THE_WAY = [
    (["platform", "info"], "donjon.cli.platform", "_info"),
    (["peer", "verify", "host:1", "--ca", "ca.pem"], "donjon.cli.peer", "_verify"),
    (["run", "app.wasm"], "donjon.cli.run", "_run"),
    (["evidence", "show", "f"], "donjon.cli.evidence", "_show"),
    (["policy", "check", "--policy", "p.toml"], "donjon.cli.policy", "_load_policy"),
    (["steward", "init"], "donjon.cli.steward", "_init"),
    (["demo"], "donjon.demo.run", "run_demo"),
]


@pytest.mark.parametrize(("argv", "module", "function"), _ON_THE_WAY, ids=lambda v: str(v))
def test_a_bug_is_one_internal_error_line_and_exit_3(argv, module, function, capsys, monkeypatch):
    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(importlib.import_module(module), function, bug)
    monkeypatch.delenv("DONJON_DEBUG", raising=False)
    assert main(argv) == EXIT_OPERATIONAL
    assert capsys.readouterr().err == (
        "donjon: internal error: RuntimeError: boom (set DONJON_DEBUG=1 to see the traceback)\n"
    )
    monkeypatch.setenv("DONJON_DEBUG", "1")
    assert main(argv) == EXIT_OPERATIONAL
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("donjon: internal error: RuntimeError: boom\n")


@pytest.mark.parametrize(("argv", "module", "function"), _ON_THE_WAY, ids=lambda v: str(v))
def test_ctrl_c_anywhere_is_exit_130_and_one_line(argv, module, function, capsys, monkeypatch):
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), function, interrupted)
    assert main(argv) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("donjon") and err.endswith("interrupted\n")


def test_steward_serve_speaks_donjon_lines_until_it_serves(tmp_path, capsys):
    # JSON lines are the Steward's log while it serves (docs/steward.md); before, it is a command.
    d = tmp_path / "steward"
    assert main(["steward", "init", "--dir", str(d)]) == EXIT_OK
    capsys.readouterr()
    config = str(d / "steward.toml")

    assert main(["steward", "serve", "--config", str(tmp_path / "nope.toml")]) == EXIT_OPERATIONAL
    assert capsys.readouterr().err == f"donjon: {tmp_path / 'nope.toml'}: no such configuration file\n"

    (d / "policy.toml").write_text("version = 1\nnonsense = true\n")
    assert main(["steward", "serve", "--config", config, "--port", "0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("donjon: ") and len(err.splitlines()) == 1 and "policy.toml:2" in err

    assert main(["steward", "init", "--dir", str(d), "--force"]) == EXIT_OK
    capsys.readouterr()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["steward", "serve", "--config", config, "--port", str(port)]) == EXIT_OPERATIONAL
    err = capsys.readouterr().err
    assert err.startswith(f"donjon: cannot listen on 127.0.0.1:{port}: ") and len(err.splitlines()) == 1

    # A serving certificate that cannot be loaded: before serving, not after "listening".
    (d / "tls.pem").write_text("not PEM\n")
    os.chmod(d / "tls.pem", 0o600)  # it stands in for the key too: a key others may read is refused first
    text = re.sub(r"(?m)^tls_(cert|key) *=.*$", "", (d / "steward.toml").read_text())  # (if init wrote them)
    (d / "steward.toml").write_text(
        text.replace("[steward]", '[steward]\ntls_cert = "tls.pem"\ntls_key = "tls.pem"')
    )
    assert main(["steward", "serve", "--config", config, "--port", "0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"donjon: {config}: tls_cert ") and len(err.splitlines()) == 1


def test_a_closed_stdout_is_not_an_error():
    # `donjon policy --help | head -1`: the reader is gone before the help is flushed.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "donjon", "policy", "--help"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == EXIT_OK
