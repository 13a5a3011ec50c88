"""The `donjon` command line: a thin dispatcher to one module per command.

Each command lives in its own module under ``donjon.cli`` and exposes
``main(argv: list[str]) -> int``. Modules are imported only when their command
runs, so ``donjon run`` does not pay for the Steward's or the verifier's imports.

Exit codes (documented in the README and kept by every command):

- 0: success (for ``run``: the guest's own exit code is passed through);
- 1: verification or policy refused;
- 2: usage error (bad arguments, bad config);
- 3: operational error (missing file, I/O failure, service unreachable).
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_OPERATIONAL", "EXIT_REFUSED", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("donjon.cli.run", "run a WebAssembly workload in a Keep"),
    "evidence": ("donjon.cli.evidence", "verify or show attestation evidence"),
    "steward": ("donjon.cli.steward", "run and manage a Steward (attestation service)"),
    "policy": ("donjon.cli.policy", "test a Steward policy against recorded evidence"),
    "peer": ("donjon.cli.peer", "verify a Keep's certificate and claims over TLS"),
    "platform": ("donjon.cli.platform", "which TEE backends work on this machine"),
    "demo": ("donjon.cli.demo", "a local Steward and an attested simulated Keep, end to end"),
    "example": ("donjon.cli.example", "write an example workload (http.wasm) to try a Keep with"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: donjon COMMAND [ARGS...]", "", "commands:"]
    for name, (_, summary) in COMMANDS.items():
        lines.append(f"  {name.ljust(width)}  {summary}")
    lines += ["", "Run 'donjon COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return EXIT_OK if args else EXIT_USAGE
    if args[0] in ("-V", "--version"):
        from donjon import __version__

        print(f"donjon {__version__}")
        return EXIT_OK
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"donjon: unknown command {args[0]!r}\n\n{_usage()}", file=sys.stderr)
        return EXIT_USAGE
    try:
        module = importlib.import_module(entry[0])
    except ModuleNotFoundError as e:
        if e.name != entry[0]:
            raise
        print(f"donjon: command {args[0]!r} is not available in this build", file=sys.stderr)
        return EXIT_OPERATIONAL
    code: int = module.main(args[1:])
    return code
