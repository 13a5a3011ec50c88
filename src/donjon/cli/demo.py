"""``donjon demo``: a local Steward, the http example in an attested simulated Keep, a verifying client.

Thin: the demo is :func:`donjon.demo.run.run_demo`. Exit codes: 0 the demo ran end to end;
1 a step failed (the line says which); 2 usage.
"""

from __future__ import annotations

import argparse
import sys

from donjon.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, usage_error
from donjon.cli.args import Parser, examples

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon demo`` (with help and examples)."""
    p = Parser(
        prog="donjon demo",
        description="Start a local Steward that trusts a SIMULATED TEE (demo only), run the http\n"
        "example in a Keep it attests, and verify the Keep's certificate and claims as a\n"
        "client would. Everything on 127.0.0.1, in a temporary directory removed at the\n"
        "end; exit 0 when it ran end to end, 1 when a step failed. See docs/demo.md.",
        epilog=examples("donjon demo", "donjon demo --backend sim-tdx --quiet-keep"),
    )
    p.add_argument("--backend", choices=["sim-snp", "sim-tdx"], default="sim-snp", help="simulated TEE")
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds each step may take (default 30)",
    )
    p.add_argument("--quiet-keep", action="store_true", help="do not show the Keep's own log lines")
    return p


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    if not 0 < args.timeout <= 600:
        usage_error("donjon demo", "--timeout must be more than 0 and at most 600 seconds")
        return EXIT_USAGE
    from donjon.demo.run import DemoFailed, DemoOptions, run_demo

    try:
        return run_demo(
            DemoOptions(backend=args.backend, step_timeout=args.timeout, show_keep_log=not args.quiet_keep)
        )
    except DemoFailed as e:
        print(f"donjon demo: FAILED: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        # The Keep, the Steward and the temporary directory were stopped and removed on the way out.
        print("donjon demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
