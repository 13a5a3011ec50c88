"""``donjon example``: write an example workload shipped with Donjon, to try a Keep with.

- ``donjon example http -o http.wasm``: the ``examples/http`` workload (a tiny web server, written
  in C and built for wasm32-wasi; its source is ``examples/http/http.c`` in the repository), the
  same module ``donjon demo`` runs. The wheel ships it as ``donjon/demo/http.wasm``
  (:func:`donjon.demo.run.demo_module`).
- ``donjon example --list``: the names.

Exit codes: 0 written; 2 usage (unknown name, no ``-o``); 3 the file cannot be written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_USAGE, usage_error

__all__ = ["EXAMPLES", "main", "parser"]

#: name -> what it is
EXAMPLES = {
    "http": "a tiny HTTP server (examples/http/http.c): answers every request with one page; "
    "give it a listen socket named in its Donjon.toml",
}


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon example`` (with help and examples)."""
    from donjon.cli.args import Parser, examples

    p = Parser(
        prog="donjon example",
        description="Write an example WebAssembly workload shipped with Donjon to a file, to try a\n"
        "Keep with (docs/tutorial.md).",
        epilog=examples(
            "donjon example http -o http.wasm",
            "donjon example --list",
        ),
    )
    p.add_argument("name", nargs="?", choices=sorted(EXAMPLES), help="the example to write")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the module (.wasm)")
    p.add_argument("--list", action="store_true", help="list the examples and exit")
    return p


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    if args.list:
        for name, summary in EXAMPLES.items():
            print(f"{name}  {summary}")
        return EXIT_OK
    if args.name is None or args.output is None:
        usage_error("donjon example", "give a NAME and -o FILE")
        return EXIT_USAGE
    from donjon.demo.run import DemoFailed, demo_module

    try:
        module = demo_module(args.name)
    except DemoFailed as e:
        print(f"donjon example: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        Path(args.output).write_bytes(module)
    except OSError as e:
        print(f"donjon example: cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    print(f"wrote {args.output} ({len(module)} bytes): the {args.name} example")
    return EXIT_OK
