"""``donjon steward``: create, run and audit a Steward.

- ``donjon steward init [--dir D] [--trust-domain T] [--curve p256|p384] [--import-ca CERT KEY]``
- ``donjon steward serve --config steward.toml``
- ``donjon steward log verify --config steward.toml``
- ``donjon steward log show --config steward.toml [--format text|json] [--serial S]``
- ``donjon steward log migrate --config steward.toml``
- ``donjon steward secret put|rotate|list|prune|delete ...`` (:mod:`donjon.cli.secret`)

Exit codes: 0 ok; 1 the log does not verify (or an old chain to convert is broken); 2 usage or
invalid configuration;
3 operational error (files, database).
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE, usage_error
from donjon.cli.args import Parser, examples

if TYPE_CHECKING:
    from donjon.steward.config import StewardConfig
    from donjon.tlog.checkpoint import NoteVerifier

__all__ = ["main", "parser"]


_INIT_EXAMPLES = examples(
    "donjon steward init --dir steward --trust-domain example.org",
    "donjon steward init --dir steward --curve p384",
    "donjon steward init --dir steward --import-ca ca.pem ca-key.pem",
)
_SERVE_EXAMPLES = examples(
    "donjon steward serve --config steward/steward.toml",
    "donjon steward serve --config steward/steward.toml --port 0",
    "kill -HUP PID    # reload policy.toml without a restart",
)
_LOG_EXAMPLES = examples(
    "donjon steward log verify --config steward/steward.toml",
    "donjon steward log show --config steward/steward.toml --format json",
)


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon steward`` and its subcommands (each with help and examples)."""
    p = Parser(
        prog="donjon steward",
        description="Create, run and audit a Steward: the attestation service that verifies a Keep's\n"
        "evidence against its policy and issues its certificate. See docs/steward.md.",
        epilog=examples(
            "donjon steward init --dir steward --trust-domain example.org",
            "donjon steward serve --config steward/steward.toml",
            "donjon steward log verify --config steward/steward.toml",
        ),
    )
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    init = sub.add_parser(
        "init",
        help="create a CA, a challenge secret, steward.toml and a starter policy",
        description="Create a Steward's files in a directory: its CA (ca.pem, ca-key.pem), the\n"
        "challenge secret, steward.toml and a commented policy.toml that allows nothing\n"
        "until edited. Secret files are mode 0600; existing files are kept unless --force.",
        epilog=_INIT_EXAMPLES,
    )
    init.add_argument("--dir", default=".", help="directory to create the files in (default: .)")
    init.add_argument(
        "--trust-domain",
        default="donjon.local",
        metavar="DOMAIN",
        help="SPIFFE trust domain of the IDs it issues (default: donjon.local)",
    )
    init.add_argument("--curve", choices=["p256", "p384"], default="p256", help="CA key curve (default p256)")
    init.add_argument("--import-ca", nargs=2, metavar=("CERT", "KEY"), help="use an existing CA (PEM files)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    serve = sub.add_parser(
        "serve",
        help="run the Steward (HTTP or HTTPS)",
        description="Run the Steward until SIGINT or SIGTERM; SIGHUP reloads the policy. While it\n"
        "serves, its log on stderr is JSON lines (docs/steward.md); errors before it\n"
        "serves are one 'donjon: ...' line.",
        epilog=_SERVE_EXAMPLES,
    )
    serve.add_argument("--config", required=True, metavar="FILE", help="the Steward's steward.toml")
    serve.add_argument("--port", type=int, help="override the configured port (0: any free port)")
    lg = sub.add_parser(
        "log",
        help="check, list or convert the decision log (a transparency log)",
        description="Check the Steward's transparency log, list its entries, or convert a log of an\n"
        "earlier version. See docs/steward.md, 'The transparency log'.",
        epilog=_LOG_EXAMPLES,
    )
    lsub = lg.add_subparsers(dest="log_command", required=True, title="commands", metavar="COMMAND")
    verify = lsub.add_parser(
        "verify",
        help="rebuild the Merkle tree from the stored entries and check every signed checkpoint",
        description="Rebuild the log's RFC 9162 Merkle tree from the stored entry bytes (parsed\n"
        "strictly), check the look-up columns against them, every stored tree node, and\n"
        "every checkpoint the log key signed. Exit 1 names the first finding and the\n"
        "entry where it shows.",
        epilog=examples("donjon steward log verify --config steward/steward.toml"),
    )
    verify.add_argument("--config", required=True, metavar="FILE", help="the Steward's steward.toml")
    show = lsub.add_parser(
        "show",
        help="list the log's entries",
        description="List the log's entries, issued and refused, oldest first, each checked against\n"
        "its hashed bytes.",
        epilog=examples(
            "donjon steward log show --config steward/steward.toml",
            "donjon steward log show --config steward/steward.toml --serial 5a0c31d2e9",
            "donjon steward log show --config steward/steward.toml --format json",
        ),
    )
    show.add_argument("--config", required=True, metavar="FILE", help="the Steward's steward.toml")
    show.add_argument(
        "--format", choices=["text", "json"], default="text", help="one line per entry, or JSON lines"
    )
    show.add_argument("--serial", help="only the entry for this certificate serial (hex)")
    migrate = lsub.add_parser(
        "migrate",
        help="convert a hash-chained log of an earlier version into the transparency log",
        description="Check the hash chain of a log written by an earlier Donjon version, then convert\n"
        "it in one transaction: every entry keeps its bytes and becomes a leaf, a first\n"
        "checkpoint is signed, and the old table is renamed (kept, never read again).\n"
        "Creates the log key (log_key, with its .pub beside it) when it does not exist.\n"
        "A broken chain is refused, not converted.",
        epilog=examples(
            "donjon steward log migrate --config steward/steward.toml",
            "donjon steward log verify --config steward/steward.toml",
        ),
    )
    migrate.add_argument("--config", required=True, metavar="FILE", help="the Steward's steward.toml")
    from donjon.cli.secret import add_parser as add_secret_parser

    add_secret_parser(sub)
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
    names = [
        "steward.toml",
        "policy.toml",
        "ca.pem",
        "ca-key.pem",
        "challenge.secret",
        "log-key.pem",
        "log-key.pub",
    ]
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
        log_key = _create_log_key(directory, args.trust_domain, force=args.force)
    except OSError as e:
        print(f"donjon steward init: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    print(
        f"created a Steward in {directory}: steward.toml, policy.toml, ca.pem, ca-key.pem, challenge.secret, "
        "log-key.pem, log-key.pub"
    )
    print(f"log verifier key (give it to witnesses and relying parties): {log_key}")
    return EXIT_OK


def _create_log_key(directory: Path, trust_domain: str, *, force: bool) -> str:
    """The checkpoint-signing key of a new Steward (``log-key.pem``, 0600) and its verifier key."""
    from donjon.steward.logkey import create_log_key, default_origin, public_key_path

    path = directory / "log-key.pem"
    if force:
        for old in (path, public_key_path(path)):
            if old.exists() or old.is_symlink():
                old.unlink()  # the link itself, never what it points to
    return create_log_key(path, default_origin(trust_domain)).verifier.vkey()


def _config(path: str) -> StewardConfig:
    from donjon.steward.config import load_config

    return load_config(path)


def _error(message: str) -> None:
    print(f"donjon: {message}", file=sys.stderr, flush=True)


def _check_tls(config: StewardConfig) -> int:
    """Load the serving certificate and key as the server will (stdlib ``ssl``, what uvicorn uses),
    so that a bad pair is a config error before serving, not a failure after "listening"."""
    if config.tls_cert is None or config.tls_key is None:
        return EXIT_OK
    import ssl

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(config.tls_cert, config.tls_key)
    except FileNotFoundError as e:
        _error(f"{config.path}: tls_cert/tls_key: {e.filename}: no such file")
        return EXIT_OPERATIONAL
    except ssl.SSLError as e:
        _error(
            f"{config.path}: tls_cert {config.tls_cert} and tls_key {config.tls_key} are not a PEM "
            f"certificate and its private key ({e.reason or e})"
        )
        return EXIT_USAGE
    except OSError as e:
        _error(f"{config.path}: tls_cert/tls_key: cannot read {e.filename}: {e.strerror or e}")
        return EXIT_OPERATIONAL
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from donjon.steward.app import setup_logging
    from donjon.steward.errors import ConfigError
    from donjon.steward.secrets.errors import KekError
    from donjon.steward.service import build_steward, open_secrets, serve

    # Until the Steward serves, it speaks like every other command: one `donjon: ` line per error.
    # Its log (JSON lines, docs/steward.md "Logs") starts with serving.
    if args.port is not None and not 0 <= args.port <= 65535:
        usage_error("donjon steward serve", f"--port must be 0..65535, got {args.port}")
        return EXIT_USAGE
    if not Path(args.config).is_file():
        _error(f"{args.config}: no such configuration file")
        return EXIT_OPERATIONAL
    try:
        config = _config(args.config)
        if args.port is not None:
            config = dataclasses.replace(config, port=args.port)
        steward = build_steward(config)
    except ConfigError as e:
        _error(str(e))
        return EXIT_USAGE
    except Exception as e:  # database unreachable, ...
        _error(f"cannot start the Steward: {type(e).__name__}: {e}")
        return EXIT_OPERATIONAL
    code = _check_tls(config)
    if code != EXIT_OK:
        steward.close()
        return code
    try:
        secret_service = open_secrets(config, steward)
    except KekError as e:
        # A KEK that does not decrypt the store: refuse to start rather than serve refusals.
        steward.close()
        _error(f"{e}; serving nothing")
        return EXIT_OPERATIONAL
    except Exception as e:  # the database
        steward.close()
        _error(f"cannot open the secret store: {type(e).__name__}: {e}")
        return EXIT_OPERATIONAL
    setup_logging(logging.INFO)
    try:
        serve(config, steward, secret_service)
    except OSError as e:
        steward.close()  # closing twice is harmless, if serve got as far as closing it
        host = f"[{config.listen}]" if ":" in config.listen else config.listen
        _error(f"cannot serve on {host}:{config.port}: {e.strerror or e}")
        return EXIT_OPERATIONAL
    return EXIT_OK


def _log(args: argparse.Namespace) -> int:
    from donjon.steward.errors import ConfigError
    from donjon.steward.log import LegacyLog, LogCorrupt
    from donjon.steward.service import open_log

    if not Path(args.config).is_file():
        print(f"donjon steward log: {args.config}: no such file", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        config = _config(args.config)
    except ConfigError as e:
        print(f"donjon steward log: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.log_command == "migrate":
        return _migrate(config)
    try:
        verifier = _log_verifier(config) if args.log_command == "verify" else None
        store = open_log(config)
    except ConfigError as e:
        print(f"donjon steward log: {e}", file=sys.stderr)
        return EXIT_USAGE
    except LegacyLog as e:
        print(f"donjon steward log: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        print(f"donjon steward log: cannot open the log: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        if args.log_command == "verify":
            assert verifier is not None
            try:
                result = store.verify(verifier)
            except LogCorrupt as e:
                print(f"log BROKEN: {e}")
                return EXIT_REFUSED
            print(
                f"log OK: {result.size} entries, root {result.root.hex()}, "
                f"{result.checkpoints} signed checkpoints verify (latest: size {result.latest})"
            )
            return EXIT_OK
        try:
            if args.serial:
                found = store.find_serial(args.serial.lower())
                entries = [found] if found is not None else []
            else:
                entries = list(store.entries())
        except LogCorrupt as e:
            print(
                f"donjon steward log: the stored log does not match its hashed entries: {e}", file=sys.stderr
            )
            return EXIT_REFUSED
        if args.format == "json":
            for entry in entries:
                print(json.dumps(entry.as_dict(), sort_keys=True))
        else:
            for entry in entries:
                r = entry.record
                what = r.get("spiffe_id") if r.get("decision") == "issued" else r.get("check")
                if r.get("path") in ("secret", "secret-admin"):
                    # A release, a refusal or an operator's change: the secret, its version, who.
                    version = f" v{r['version']}" if "version" in r else ""
                    who = r.get("spiffe_id") or ""
                    what = f"{r.get('secret')}{version} {who}".strip() + (
                        f" {r['check']}" if r.get("decision") == "refused" else ""
                    )
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


def _log_verifier(config: StewardConfig) -> NoteVerifier:
    """The key checkpoints must be signed with: the verifier key file beside the log key, else the key."""
    from donjon.steward.errors import ConfigError
    from donjon.steward.logkey import public_key_path
    from donjon.steward.service import log_signer
    from donjon.tlog.checkpoint import NoteError, parse_vkey

    assert config.log_key is not None
    pub = public_key_path(config.log_key)
    if pub.is_file():
        try:
            verifier = parse_vkey(pub.read_text(encoding="utf-8")[:4096])
        except (OSError, UnicodeDecodeError, NoteError) as e:
            raise ConfigError(str(pub), f"not a log verifier key: {e}") from e
        if verifier.name != config.log_origin:
            raise ConfigError(
                str(pub), f"the verifier key names log {verifier.name!r}, not {config.log_origin!r}"
            )
        return verifier
    return log_signer(config).verifier


def _migrate(config: StewardConfig) -> int:
    from donjon.steward.errors import ConfigError
    from donjon.steward.log import LogCorrupt
    from donjon.steward.logkey import create_log_key
    from donjon.steward.service import log_signer, open_log

    assert config.log_key is not None and config.log_origin is not None
    created = False
    try:
        if not config.log_key.exists() and not config.log_key.is_symlink():
            signer = create_log_key(config.log_key, config.log_origin)
            created = True
        else:
            signer = log_signer(config)
    except ConfigError as e:
        print(f"donjon steward log migrate: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"donjon steward log migrate: cannot create the log key: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    if created:
        print(f"created the log key {config.log_key}; verifier key: {signer.verifier.vkey()}")
    try:
        store = open_log(config, signer=signer, legacy_ok=True)
    except Exception as e:
        print(f"donjon steward log migrate: cannot open the log: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        if not store.has_legacy():
            print("nothing to convert: the log is already a transparency log")
            return EXIT_OK
        try:
            count = store.migrate_legacy()
        except LogCorrupt as e:
            print(f"donjon steward log migrate: REFUSED, the old log does not verify: {e}", file=sys.stderr)
            return EXIT_REFUSED
        print(f"converted {count} entries into the transparency log; the old table is kept, renamed")
        return EXIT_OK
    except Exception as e:
        print(f"donjon steward log migrate: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    finally:
        store.close()


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    if args.command == "init":
        return _init(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "secret":
        from donjon.cli.secret import run as run_secret

        return run_secret(args)
    return _log(args)
