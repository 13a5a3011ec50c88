"""The `donjon` command line: a thin dispatcher to one module per command.

Each command lives in its own module under ``donjon.cli`` and exposes
``main(argv: list[str]) -> int``. Modules are imported only when their command
runs, so ``donjon run`` does not pay for the Steward's or the verifier's imports.

Exit codes (documented in the README and kept by every command):

- 0: success (for ``run``: the guest's own exit code is passed through);
- 1: verification or policy refused;
- 2: usage error (bad arguments, bad config);
- 3: operational error (missing file, I/O failure, service unreachable);
- 130: interrupted (Ctrl-C): ``main`` turns ``KeyboardInterrupt`` into one line and this code,
  after the command's ``with`` blocks and ``finally`` clauses have closed what it opened.

``main`` is also where the command line keeps one voice whatever happens inside a command: an
unexpected exception (a bug) is one ``donjon: internal error: ...`` line and exit 3, never a
traceback (``DONJON_DEBUG=1`` prints it as well), and a closed stdout (``| head``) is not an error.
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = [
    "COMMANDS",
    "DEBUG_ENV",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OPERATIONAL",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "internal_error",
    "main",
    "usage_error",
]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3
#: 128 + SIGINT, what a shell reports for a program that Ctrl-C stopped.
EXIT_INTERRUPTED = 130
#: Set (to anything but empty) to see the Python traceback of an internal error.
DEBUG_ENV = "DONJON_DEBUG"

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("donjon.cli.run", "run a WebAssembly workload in a Keep"),
    "evidence": ("donjon.cli.evidence", "verify or show attestation evidence"),
    "steward": ("donjon.cli.steward", "run and manage a Steward (attestation service)"),
    "policy": ("donjon.cli.policy", "test a Steward policy against recorded evidence"),
    "package": ("donjon.cli.package", "build, push, sign and verify workload packages (OCI artifacts)"),
    "peer": ("donjon.cli.peer", "verify a Keep's certificate and claims over TLS"),
    "log": ("donjon.cli.log", "witness a Steward's transparency log (audit its checkpoints)"),
    "platform": ("donjon.cli.platform", "which TEE backends work on this machine"),
    "demo": ("donjon.cli.demo", "a local Steward and an attested simulated Keep, end to end"),
    "example": ("donjon.cli.example", "write an example workload and its Donjon.toml to try a Keep with"),
}


_EXAMPLES = (
    "donjon demo",
    "donjon platform info",
    "donjon run examples/hello/hello.wasm -- alice bob",
    "donjon steward init --dir steward --trust-domain example.org",
    "donjon peer verify localhost:8443 --ca steward/ca.pem",
)


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: donjon COMMAND [ARGS...]",
        "",
        "Run WebAssembly workloads in attested Keeps (TEEs), and the Steward that attests them.",
        "",
        "commands:",
    ]
    for name, (_, summary) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {summary}")
    lines += [
        "",
        "options:",
        "  -h, --help     show this help",
        "  -V, --version  print the version",
        "",
        "Run 'donjon COMMAND --help' for a command's options and examples.",
        "Exit codes: 0 ok, 1 refused, 2 usage, 3 operational error, 130 interrupted (Ctrl-C).",
        "",
        "examples:",
        *(f"  {line}" for line in _EXAMPLES),
    ]
    return "\n".join(lines)


def usage_error(prog: str, message: str) -> None:
    """Print a usage error the way every command does: the error, then where the help is (the help
    itself would bury the error). ``donjon.cli.args.Parser`` calls it for argparse's errors."""
    print(f"{prog}: error: {message}\ntry '{prog} --help'", file=sys.stderr, flush=True)


def internal_error(error: BaseException) -> int:
    """Report an exception no command expected (a bug): one line, the traceback only on request."""
    if os.environ.get(DEBUG_ENV):
        import traceback

        traceback.print_exception(error)
    print(
        f"donjon: internal error: {type(error).__name__}: {error}"
        + ("" if os.environ.get(DEBUG_ENV) else f" (set {DEBUG_ENV}=1 to see the traceback)"),
        file=sys.stderr,
        flush=True,
    )
    return EXIT_OPERATIONAL


def _stdout_gone() -> int:
    """The reader of stdout went away (``| head``): not an error. Later writes, and the interpreter's
    last flush, go to /dev/null instead of failing with another BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file (tests capture it): nothing to redirect
        pass
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["help"] and len(args) > 1:  # `donjon help run` is `donjon run --help`
        args = [*args[1:], "--help"]
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return EXIT_OK if args else EXIT_USAGE
    if args[0] in ("-V", "--version"):
        from donjon import __version__

        print(f"donjon {__version__}")
        return EXIT_OK
    entry = COMMANDS.get(args[0])
    if entry is None:
        import difflib

        close = difflib.get_close_matches(args[0], COMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(f"donjon: unknown command {args[0]!r}{hint}\ntry 'donjon --help'", file=sys.stderr)
        return EXIT_USAGE
    try:
        try:
            module = importlib.import_module(entry[0])
        except ModuleNotFoundError as e:
            if e.name != entry[0]:
                raise
            print(f"donjon: command {args[0]!r} is not available in this build", file=sys.stderr)
            return EXIT_OPERATIONAL
        code: int = module.main(args[1:])
        sys.stdout.flush()  # here, so that a closed pipe is seen while it can still be handled
        return code
    except KeyboardInterrupt:
        # The command's own `with` blocks and `finally` clauses ran while this propagated.
        print("donjon: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _stdout_gone()
    except Exception as e:  # never a traceback for the user
        return internal_error(e)
