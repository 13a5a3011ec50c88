"""``donjon platform``: which TEE backends work on this machine, and why the others do not.

Commands:

- ``donjon platform info [--format text|json] [--backend NAME]``: each
  backend, usable here or not, the reason and how to fix it, plus what
  ``auto`` would pick. Exit 0 whatever it finds (the report is the result).
- ``donjon platform evidence --backend NAME [--binding HEX] [--out FILE]``:
  obtain evidence for a binding (random when not given) and write it to
  ``FILE``; prints a JSON summary. For checking a real TEE by hand.
  Exit 0 with evidence, 1 when the backend refuses by design (``nil``),
  3 when the platform fails.

``--root BASE`` reads every host path below ``BASE`` instead of ``/`` (fake trees).
Data goes to stdout, diagnostics to stderr; exit 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from donjon.backends import (
    AUTO,
    AUTO_ORDER,
    BACKEND_NAMES,
    BINDING_SIZE,
    Availability,
    Backend,
    BackendError,
    PlatformRoots,
    UnattestedBackend,
    UnknownBackend,
    create_backend,
    select_backend,
)
from donjon.backends.platform import platform_hints
from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE
from donjon.cli.args import Parser, examples, usage_error

__all__ = ["main", "parser"]


class _UsageError(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon platform`` and its subcommands (each with help and examples)."""
    parser = Parser(
        prog="donjon platform",
        description="Which TEE backends work on this machine, why the others do not, and how to\n"
        "fix them. See docs/backends.md.",
        epilog=examples("donjon platform info", "donjon platform info --format json"),
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        metavar="BASE",
        help="read host paths below this directory (testing)",
    )
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    info = sub.add_parser(
        "info",
        help="list the backends, usable or not, and why",
        description="List every backend: usable here or not, the reason and how to fix it, and what\n"
        "'donjon run --backend auto' would pick. Exit 0 whatever it finds.",
        epilog=examples(
            "donjon platform info",
            "donjon platform info --backend snp",
            "donjon platform info --format json",
        ),
    )
    info.add_argument(
        "--format", choices=("text", "json"), default="text", help="text, or one JSON document on stdout"
    )
    info.add_argument("--backend", choices=BACKEND_NAMES, default=None, help="show only this backend")
    ev = sub.add_parser(
        "evidence",
        help="obtain evidence for a binding (checks a real TEE)",
        description="Obtain evidence from a backend for a binding (random unless given), write it to\n"
        "--out and print a JSON summary: a quick check of a real TEE by hand.",
        epilog=examples(
            "donjon platform evidence --backend snp --out report.bin",
            "donjon platform evidence --backend sim-tdx --out quote.dat",
        ),
    )
    ev.add_argument(
        "--backend", required=True, choices=(AUTO, *BACKEND_NAMES), help="the backend to ask for evidence"
    )
    ev.add_argument(
        "--binding", default=None, metavar="HEX", help=f"{BINDING_SIZE} bytes as hex (default: random)"
    )
    ev.add_argument("--out", type=Path, default=None, metavar="FILE", help="write the evidence bytes here")
    return parser


def _roots(base: Path | None) -> PlatformRoots:
    return PlatformRoots() if base is None else PlatformRoots.under(base)


def _auto_choice(results: Sequence[tuple[Backend, Availability]]) -> str:
    usable = {backend.name for backend, availability in results if availability.usable}
    for name in AUTO_ORDER:
        if name in usable:
            return name
    return "nil"


def _info(args: argparse.Namespace, roots: PlatformRoots) -> int:
    names = BACKEND_NAMES if args.backend is None else (args.backend,)
    results = [(backend, backend.probe()) for backend in (create_backend(n, roots=roots) for n in names)]
    all_results = results if args.backend is None else None
    auto = _auto_choice(all_results) if all_results is not None else None
    hints = platform_hints(roots)
    if args.format == "json":
        doc: dict[str, object] = {
            "backends": [
                {
                    "name": backend.name,
                    "attested": backend.attested,
                    "simulated": backend.simulated,
                    **availability.as_dict(),
                }
                for backend, availability in results
            ],
            "hints": list(hints),
        }
        if auto is not None:
            doc["auto"] = auto
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    width = max(len(backend.name) for backend, _ in results)
    for backend, availability in results:
        status = "usable" if availability.usable else "no"
        tags = []
        if not backend.attested:
            tags.append("unattested")
        if backend.simulated:
            tags.append("simulated")
        tag = f" [{', '.join(tags)}]" if tags else ""
        print(f"{backend.name.ljust(width)}  {status.ljust(6)}  {availability.reason}{tag}")
        if availability.fix:
            print(f"{' ' * width}  {' ' * 6}  fix: {availability.fix}")
    if auto is not None:
        note = "" if auto != "nil" else " (no attested backend is usable: NO TEE, NO attestation)"
        print(f"\nauto selects: {auto}{note}")
    if hints:
        print("\nhints:")
        for hint in hints:
            print(f"  - {hint}")
    return EXIT_OK


def _evidence(args: argparse.Namespace, roots: PlatformRoots) -> int:
    if args.binding is None:
        binding = secrets.token_bytes(BINDING_SIZE)
    else:
        try:
            binding = bytes.fromhex(args.binding)
        except ValueError as e:
            raise _UsageError(f"--binding is not hex: {e}") from e
        if len(binding) != BINDING_SIZE:
            raise _UsageError(f"--binding must be {BINDING_SIZE} bytes ({2 * BINDING_SIZE} hex digits)")
    backend = select_backend(
        args.backend, None, roots=roots, warn=lambda m: print(f"donjon: warning: {m}", file=sys.stderr)
    )
    evidence = backend.evidence(binding)
    if args.out is not None:
        try:
            args.out.write_bytes(evidence.data)
        except OSError as e:
            print(f"donjon platform: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
            return EXIT_OPERATIONAL
    print(json.dumps(evidence.summary(), indent=2))
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    prog = "donjon platform"
    try:
        args = parser().parse_args(list(argv))
        if args.command is not None:
            prog = f"donjon platform {args.command}"
        if args.command is None:
            raise _UsageError("a command is required: info or evidence")
        roots = _roots(args.root)
        if args.command == "info":
            return _info(args, roots)
        return _evidence(args, roots)
    except BrokenPipeError:
        # The reader stopped early (``| head``): not an error, and no traceback at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    except SystemExit as e:  # --help, or a usage error the parser has printed
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except _UsageError as e:
        usage_error(prog, str(e))
        return EXIT_USAGE
    except UnknownBackend as e:
        print(f"donjon platform: {e}", file=sys.stderr)
        return EXIT_USAGE
    except UnattestedBackend as e:
        print(f"donjon platform: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except BackendError as e:
        print(f"donjon platform: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
