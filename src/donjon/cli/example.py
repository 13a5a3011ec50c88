"""``donjon example``: write an example workload shipped with Donjon, to try a Keep with.

- ``donjon example http -o http.wasm``: the ``examples/http`` workload (a tiny web server, written
  in C and built for wasm32-wasi; its source is ``examples/http/http.c`` in the repository), the
  same module ``donjon demo`` runs. The wheel ships it as ``donjon/demo/http.wasm``
  (:func:`donjon.demo.run.demo_module`). Beside it goes its ``Donjon.toml``
  (:func:`donjon.demo.run.example_config`; ``--config-out`` puts it elsewhere, ``--port`` chooses
  the port it listens on), because no next step (``donjon run --print-digest``, a Keep) works
  without one.
- ``donjon example --list``: the names.

Neither file replaces an existing one unless ``--force``: both are checked before either is
written, created ``O_EXCL | O_NOFOLLOW`` with mode 0644 (``--force``: a new file renamed over the
old, never written through a symlink; :func:`donjon.steward.files.write_file`). What was written
is said on stderr; stdout stays empty.

Exit codes: 0 written; 2 usage (unknown name, no ``-o``, a file already there); 3 a file cannot be
written.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_USAGE, usage_error

__all__ = ["CONFIG_NAME", "EXAMPLES", "main", "parser"]

#: name -> what it is
EXAMPLES = {
    "http": "a tiny HTTP server (examples/http/http.c): answers every request with one page, "
    "on the TLS socket its Donjon.toml declares",
}
#: The config's file name when ``--config-out`` is not given: beside the module.
CONFIG_NAME = "Donjon.toml"
#: Mode of both files: a workload and its config are not secrets.
_MODE = 0o644


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon example`` (with help and examples)."""
    from donjon.cli.args import Parser, examples
    from donjon.demo.run import EXAMPLE_PORT

    p = Parser(
        prog="donjon example",
        description="Write an example WebAssembly workload shipped with Donjon, and its Donjon.toml\n"
        "beside it, to try a Keep with (docs/tutorial.md).",
        epilog=examples(
            "donjon example http -o http.wasm          # http.wasm and Donjon.toml",
            "donjon run --config Donjon.toml http.wasm",
            "donjon example http -o app/http.wasm --port 9443 --config-out app/http.toml",
            "donjon example --list",
        ),
    )
    p.add_argument("name", nargs="?", choices=sorted(EXAMPLES), help="the example to write")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the module (.wasm)")
    p.add_argument(
        "--config-out",
        metavar="FILE",
        help=f"where to write its config (default: {CONFIG_NAME} in the folder of the module)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=EXAMPLE_PORT,
        help=f"the TCP port the workload listens on, on 127.0.0.1 (default {EXAMPLE_PORT})",
    )
    p.add_argument("--force", action="store_true", help="replace files that already exist")
    p.add_argument("--list", action="store_true", help="list the examples and exit")
    return p


def _say(message: str) -> None:
    print(f"donjon example: {message}", file=sys.stderr)


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
    if not 1 <= args.port <= 65535:
        usage_error("donjon example", f"--port {args.port}: not a TCP port (1 to 65535)")
        return EXIT_USAGE
    from donjon.demo.run import DemoFailed, demo_module, example_config
    from donjon.steward.files import write_file

    module_path = Path(args.output)
    config_path = Path(args.config_out) if args.config_out else module_path.parent / CONFIG_NAME
    if module_path.absolute() == config_path.absolute():
        usage_error("donjon example", f"-o and --config-out both name {module_path}")
        return EXIT_USAGE
    try:
        module = demo_module(args.name)
        config = example_config(args.name, args.port).encode()
    except DemoFailed as e:
        _say(str(e))
        return EXIT_OPERATIONAL
    # Both checked before either is written: a refusal leaves nothing behind. A link counts as a
    # file (lexists), dangling or not: it is never written through.
    existing = [str(p) for p in (module_path, config_path) if os.path.lexists(p)]
    if existing and not args.force:
        _say(f"{' and '.join(existing)} already exist (use --force to replace)")
        return EXIT_USAGE
    written: list[Path] = []
    try:
        for path, data in ((module_path, module), (config_path, config)):
            write_file(path, data, mode=_MODE, replace=args.force)
            written.append(path)
    except OSError as e:
        if not args.force:  # the module without its config is what this command exists to avoid
            for path in written:
                path.unlink(missing_ok=True)
        what = "already exists (use --force to replace)" if isinstance(e, FileExistsError) else e.strerror
        _say(f"cannot write {e.filename or path}: {what or e}")
        return EXIT_OPERATIONAL
    _say(f"wrote {module_path} ({len(module)} bytes): the {args.name} example's module")
    _say(f"wrote {config_path}: its config, a TLS socket listening on 127.0.0.1:{args.port}")
    _say(f"try it: donjon run --config {shlex.quote(str(config_path))} {shlex.quote(str(module_path))}")
    return EXIT_OK
