"""``donjon log audit``: a witness of a Steward's transparency log.

::

    donjon log audit --steward URL --state FILE [--log-key PUB] [--ca CA.pem] [--timeout S]
                     [--format text|json]

Fetches the latest signed checkpoint, checks its signature with the log key (given
explicitly with ``--log-key``, a file holding the verifier key the Steward's ``init``
printed, or pinned in FILE by an earlier run that was given it) and, when FILE
holds an earlier checkpoint, the consistency proof between the two. The new
checkpoint replaces the old one in FILE only if every check passed.

Exit codes: 0 consistent (or first checkpoint recorded); 1 refused — truncated,
rewritten, bad signature, a malformed answer (FILE is left as it was); 2 usage (bad
arguments, a state file pinning another key, no key); 3 the Steward cannot be
reached, or FILE cannot be read or written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE

__all__ = ["main", "read_vkey"]

MAX_KEY_FILE = 4096


class _Usage(ValueError):
    pass


def read_vkey(path: str) -> Any:
    """The verifier key in file ``path`` (``<origin>+<key id>+<base64 key>``); ValueError if it is not
    one, OSError if it cannot be read."""
    from donjon.tlog.checkpoint import NoteError, parse_vkey

    with open(path, "rb") as f:
        data = f.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise _Usage(f"--log-key {path} is larger than {MAX_KEY_FILE} bytes")
    try:
        return parse_vkey(data.decode("utf-8"))
    except (UnicodeDecodeError, NoteError) as e:
        raise _Usage(f"--log-key {path} is not a log verifier key: {e}") from e


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon log`` (each subcommand with help and examples)."""
    from donjon.cli.args import Parser, examples

    p = Parser(
        prog="donjon log",
        description="Audit a Steward's transparency log from outside it: a witness keeps the last\n"
        "checkpoint it saw and refuses one that does not extend it. See docs/steward.md.",
        epilog=examples(
            "donjon log audit --steward https://steward.example.org:8443 --state w.json --log-key log-key.pub"
        ),
    )
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    a = sub.add_parser(
        "audit",
        help="witness a Steward's log: check its new checkpoint extends the one seen before",
        description="Fetch the Steward's latest signed checkpoint, verify its signature with the log\n"
        "key and its consistency with the checkpoint kept in --state; record it there\n"
        "only if every check passes. Exit 1 on truncation, rewrite or a bad signature\n"
        "(the state file is left untouched).",
        epilog=examples(
            "donjon log audit --steward https://steward.example.org:8443 --state steward.witness "
            "--log-key log-key.pub --ca steward-ca.pem    # first run: pins the key",
            "donjon log audit --steward https://steward.example.org:8443 --state steward.witness",
        ),
    )
    a.add_argument("--steward", required=True, help="the Steward's base URL (http:// or https://)")
    a.add_argument(
        "--state", required=True, help="file keeping the last verified checkpoint (created if missing)"
    )
    a.add_argument(
        "--log-key",
        help="file holding the log's verifier key (log-key.pub from `steward init`); required when --state "
        "does not exist yet",
    )
    a.add_argument(
        "--ca", help="PEM trust anchors for the Steward's HTTPS certificate (default: system roots)"
    )
    a.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    a.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    return p


def _audit(args: argparse.Namespace) -> int:
    from donjon.audit.client import LogClient, LogUnreachable
    from donjon.audit.state import StateError, WitnessState, load_state, save_state
    from donjon.audit.verify import AuditRefused, check_extension, decode_proof
    from donjon.tlog.checkpoint import NoteError, open_checkpoint

    state_path = Path(args.state)
    try:
        if not 0 < args.timeout <= 600:
            raise _Usage("--timeout must be more than 0 and at most 600 seconds")
        given = read_vkey(args.log_key) if args.log_key else None
        state = load_state(state_path)
        if state is not None and given is not None and given.vkey() != state.verifier.vkey():
            raise _Usage(
                f"{state_path} pins another log key ({state.verifier.vkey()}); use another state file"
            )
        verifier = given if given is not None else state.verifier if state is not None else None
        if verifier is None:
            raise _Usage(
                "--log-key is required to start a witness (the key is never taken from the log itself)"
            )
        client = LogClient(args.steward, ca_file=args.ca, timeout=args.timeout)
    except _Usage as e:
        print(f"donjon log audit: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:
        print(f"donjon log audit: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, StateError) as e:
        print(f"donjon log audit: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    old = state.checkpoint if state is not None else None
    try:
        with client:
            note = client.checkpoint()
            try:
                new = open_checkpoint(note, verifier)
            except NoteError as e:
                raise AuditRefused(
                    "checkpoint.signature", f"the checkpoint is not signed by the log key: {e}"
                ) from e
            proof = None
            if old is not None and 0 < old.size < new.size:
                answer = client.consistency(old.size, new.size)
                if answer.get("from") != old.size or answer.get("to") != new.size:
                    raise AuditRefused("answer.format", "the consistency proof is for other sizes")
                proof = decode_proof(answer.get("proof"))
            check_extension(old, new, proof)
    except LogUnreachable as e:
        print(f"donjon log audit: cannot reach the Steward: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except AuditRefused as e:
        doc = {"ok": False, "check": e.check, "reason": e.reason, "seen": old.size if old else None}
        _emit(args.format, doc, f"REFUSED: {e.check}: {e.reason}")
        return EXIT_REFUSED
    try:
        save_state(state_path, WitnessState(verifier=verifier, note=note, checkpoint=new))
    except OSError as e:
        print(f"donjon log audit: cannot write {state_path}: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    seen = f"consistent with size {old.size} seen before" if old is not None else "first checkpoint recorded"
    doc = {
        "ok": True,
        "size": new.size,
        "root": new.root.hex(),
        "origin": new.origin,
        "previous": old.size if old else None,
    }
    _emit(args.format, doc, f"OK: {new.origin} size {new.size} root {new.root.hex()}: {seen}")
    return EXIT_OK


def _emit(fmt: str, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, sort_keys=True) if fmt == "json" else text)


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    try:
        return _audit(args)
    except BrokenPipeError:
        return EXIT_OPERATIONAL
    except Exception as e:  # never a traceback for the user
        print(f"donjon log audit: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
