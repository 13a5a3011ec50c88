"""``donjon steward``: create, run and audit a Steward.

- ``donjon steward init [--dir D] [--trust-domain T] [--curve p256|p384] [--import-ca CERT KEY]``
- ``donjon steward serve --config steward.toml``
- ``donjon steward log verify --config steward.toml``
- ``donjon steward log show --config steward.toml [--format text|json] [--serial S]``

Exit codes: 0 ok; 1 the log does not verify; 2 usage or invalid configuration;
3 operational error (files, database, an address that cannot be bound); 130 ``serve``
stopped by Ctrl-C (SIGINT).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE

if TYPE_CHECKING:
    from donjon.steward.config import StewardConfig

__all__ = ["main"]

#: ``steward serve`` stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it.
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="donjon steward", description="Run and manage a Donjon Steward.")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create a CA, a challenge secret, steward.toml and a starter policy")
    init.add_argument("--dir", default=".", help="directory to create the files in (default: .)")
    init.add_argument("--trust-domain", default="donjon.local", help="SPIFFE trust domain")
    init.add_argument("--curve", choices=["p256", "p384"], default="p256", help="CA key curve")
    init.add_argument("--import-ca", nargs=2, metavar=("CERT", "KEY"), help="use an existing CA (PEM files)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    serve = sub.add_parser("serve", help="run the Steward (HTTP or HTTPS)")
    serve.add_argument("--config", required=True)
    serve.add_argument("--port", type=int, help="override the configured port (0: any free port)")
    lg = sub.add_parser("log", help="check or list the decision log")
    lsub = lg.add_subparsers(dest="log_command", required=True)
    verify = lsub.add_parser("verify", help="check the hash chain; report the first break")
    verify.add_argument("--config", required=True)
    show = lsub.add_parser("show", help="list the log's entries")
    show.add_argument("--config", required=True)
    show.add_argument("--format", choices=["text", "json"], default="text")
    show.add_argument("--serial", help="only the entry for this certificate serial (hex)")
    return p


def _init(args: argparse.Namespace) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from donjon.steward.ca import create_ca, write_private
    from donjon.steward.config import is_trust_domain, starter_config
    from donjon.steward.policy import STARTER_POLICY

    if not is_trust_domain(args.trust_domain):
        # Refuse before writing anything: serve would refuse the steward.toml written with it.
        print(
            f"donjon steward init: --trust-domain {args.trust_domain!r}: "
            "not a lowercase SPIFFE trust domain ([a-z0-9._-], e.g. example.org)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    directory = Path(args.dir)
    names = ["steward.toml", "policy.toml", "ca.pem", "ca-key.pem", "challenge.secret"]
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"donjon steward init: cannot create {directory}: {e.strerror}", file=sys.stderr)
        return EXIT_OPERATIONAL
    existing = [n for n in names if (directory / n).exists()]
    if existing and not args.force:
        print(
            f"donjon steward init: {', '.join(existing)} already exist in {directory} (use --force)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.import_ca:
        try:
            cert = x509.load_pem_x509_certificate(Path(args.import_ca[0]).read_bytes())
            key = serialization.load_pem_private_key(Path(args.import_ca[1]).read_bytes(), password=None)
        except OSError as e:
            print(f"donjon steward init: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
            return EXIT_OPERATIONAL
        except (ValueError, TypeError) as e:
            print(f"donjon steward init: --import-ca: {e}", file=sys.stderr)
            return EXIT_USAGE
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            print(
                "donjon steward init: --import-ca needs an EC key matching the certificate", file=sys.stderr
            )
            return EXIT_USAGE
    else:
        key, cert = create_ca(
            f"Donjon Steward CA ({args.trust_domain})", curve=args.curve, now=datetime.now(UTC)
        )
    try:
        write_private(
            directory / "ca-key.pem",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(directory / "challenge.secret", secrets.token_bytes(32))
        (directory / "steward.toml").write_text(starter_config(args.trust_domain))
        (directory / "policy.toml").write_text(STARTER_POLICY)
        (directory / "collateral").mkdir(exist_ok=True)
    except OSError as e:
        print(f"donjon steward init: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    print(
        f"created a Steward in {directory}: steward.toml, policy.toml, ca.pem, ca-key.pem, challenge.secret"
    )
    return EXIT_OK


def _config(path: str) -> StewardConfig:
    from donjon.steward.config import load_config

    return load_config(path)


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from donjon.steward.app import setup_logging
    from donjon.steward.errors import ConfigError
    from donjon.steward.service import ListenError, build_steward, serve

    setup_logging(logging.INFO)
    log = logging.getLogger("donjon.steward")
    if not Path(args.config).is_file():
        log.error("no configuration file", extra={"fields": {"event": "config_error", "path": args.config}})
        return EXIT_OPERATIONAL
    if args.port is not None and not 0 <= args.port <= 65535:
        log.error(
            "invalid --port", extra={"fields": {"event": "config_error", "error": "--port must be 0..65535"}}
        )
        return EXIT_USAGE
    try:
        config = _config(args.config)
        if args.port is not None:
            config = dataclasses.replace(config, port=args.port)
        steward = build_steward(config)
    except ConfigError as e:
        log.error("invalid configuration", extra={"fields": {"event": "config_error", "error": str(e)}})
        return EXIT_USAGE
    except Exception as e:  # database unreachable, ...
        log.error(
            "cannot start", extra={"fields": {"event": "start_error", "error": f"{type(e).__name__}: {e}"}}
        )
        return EXIT_OPERATIONAL
    try:
        stopped_by = serve(config, steward)
    except ListenError as e:
        log.error(str(e), extra={"fields": {"event": "serve_error", "error": str(e), "address": e.address}})
        steward.close()
        return EXIT_OPERATIONAL
    except OSError as e:
        log.error("cannot serve", extra={"fields": {"event": "serve_error", "error": str(e)}})
        steward.close()
        return EXIT_OPERATIONAL
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        steward.close()
        return EXIT_INTERRUPTED
    # Ctrl-C: 128 + SIGINT, as a shell reports it; SIGTERM is how service managers stop it (0).
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else EXIT_OK


def _log(args: argparse.Namespace) -> int:
    from donjon.steward.errors import ConfigError
    from donjon.steward.log import verify_chain
    from donjon.steward.service import open_log

    if not Path(args.config).is_file():
        print(f"donjon steward log: {args.config}: no such file", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        config = _config(args.config)
    except ConfigError as e:
        print(f"donjon steward log: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = open_log(config)
    except Exception as e:
        print(f"donjon steward log: cannot open the log: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        if args.log_command == "verify":
            count, brk = verify_chain(store.entries())
            if brk is not None:
                print(f"log BROKEN at entry {brk.seq}: {brk.reason} ({count} entries before it verify)")
                return EXIT_REFUSED
            print(f"log OK: {count} entries, chain verifies")
            return EXIT_OK
        if args.serial:
            found = store.find_serial(args.serial.lower())
            entries = [found] if found is not None else []
        else:
            entries = list(store.entries())
        if args.format == "json":
            for entry in entries:
                print(json.dumps(entry.as_dict(), sort_keys=True))
        else:
            for entry in entries:
                r = entry.record
                what = r.get("spiffe_id") if r.get("decision") == "issued" else r.get("check")
                print(
                    f"{entry.seq:>6} {entry.time} {r.get('decision', '?'):<8} {r.get('path', '?'):<12} {what}"
                )
        if args.serial and not entries:
            print(f"donjon steward log: no certificate with serial {args.serial} in the log", file=sys.stderr)
            return EXIT_REFUSED
        return EXIT_OK
    except Exception as e:
        print(f"donjon steward log: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    finally:
        store.close()


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    if args.command == "init":
        return _init(args)
    if args.command == "serve":
        try:
            return _serve(args)
        except KeyboardInterrupt:  # Ctrl-C while starting: no traceback
            return EXIT_INTERRUPTED
    return _log(args)
