"""``donjon steward``: create, run and audit a Steward.

- ``donjon steward init [--dir D] [--trust-domain T] [--curve p256|p384] [--import-ca CERT KEY]
  [--pkcs11-uri URI] [--host NAME]... [--ip ADDRESS]... [--simulated] [--insecure-http] [--force]``
- ``donjon steward tls-cert --config steward.toml [--host NAME]... [--ip ADDRESS]... [--days N]``
- ``donjon steward serve --config steward.toml``
- ``donjon steward log verify --config steward.toml``
- ``donjon steward log show --config steward.toml [--format text|json] [--serial S]``
- ``donjon steward log migrate --config steward.toml``
- ``donjon steward secret put|rotate|list|prune|delete ...`` (:mod:`donjon.cli.secret`)

Exit codes: 0 ok; 1 the log does not verify (or an old chain to convert is broken); 2 usage or
invalid configuration (``serve``: also a key or secret readable by others, or a configuration file
writable by them); 3 operational error (files, database, an address that cannot be bound);
130 ``serve`` stopped by Ctrl-C (SIGINT).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE, usage_error
from donjon.cli.args import Parser, examples

if TYPE_CHECKING:
    from donjon.hsm import Pkcs11Uri
    from donjon.steward.config import StewardConfig
    from donjon.tlog.checkpoint import NoteVerifier

__all__ = ["main", "parser"]

#: ``steward serve`` stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it.
EXIT_INTERRUPTED = 130


#: The serving certificate's default validity (donjon.steward.https.DEFAULT_VALIDITY_DAYS).
DEFAULT_TLS_DAYS = 365

_INIT_EXAMPLES = examples(
    "donjon steward init --dir steward --simulated    # development: simulated TEEs, localhost",
    "donjon steward init --dir steward --trust-domain example.org --host steward.example.org --ip 192.0.2.7",
    "donjon steward init --dir steward --curve p384",
    "donjon steward init --dir steward --import-ca ca.pem ca-key.pem",
    "donjon steward init --dir steward \\\n"
    "      --pkcs11-uri 'pkcs11:token=steward;object=donjon-ca?pin-source=file:/etc/donjon/pin'",
)
_TLS_EXAMPLES = examples(
    "donjon steward tls-cert --config steward/steward.toml    # renew, same names",
    "donjon steward tls-cert --config steward/steward.toml --host steward.example.org --ip 192.0.2.7",
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
        help="create a CA, an HTTPS certificate, a challenge secret, steward.toml and a starter policy",
        description="Create a Steward in a directory: its CA (ca.pem, ca-key.pem), an HTTPS\n"
        "certificate issued by that CA (for --host and --ip), the challenge secret, the\n"
        "log key, steward.toml and a commented policy.toml that allows nothing until\n"
        "edited. Secret files are mode 0600; existing files are kept unless --force.\n"
        "All or nothing: if a step fails, the directory is left as it was.\n"
        "Prints the next steps, down to the exact 'donjon run' line of a Keep.",
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
    init.add_argument(
        "--host",
        action="append",
        metavar="NAME",
        help="a DNS name Keeps reach the Steward by, for its HTTPS certificate (repeatable; "
        "without --host and --ip: localhost, 127.0.0.1 and ::1)",
    )
    init.add_argument(
        "--ip",
        action="append",
        metavar="ADDRESS",
        help="an IP address Keeps reach the Steward by (repeatable)",
    )
    init.add_argument(
        "--simulated",
        action="store_true",
        help="also create SIMULATED SEV-SNP and TDX vendors in DIR/sim-vendor and trust them "
        "(development only: a simulated TEE proves nothing)",
    )
    init.add_argument(
        "--insecure-http",
        action="store_true",
        help="UNSAFE: no HTTPS certificate; the Steward serves plain HTTP (only behind a TLS proxy "
        "on the same machine; Keeps must then be run with --steward-insecure-http)",
    )
    init.add_argument(
        "--force", action="store_true", help="replace existing files (a simulated vendor is kept)"
    )
    init.add_argument(
        "--pkcs11-uri",
        metavar="URI",
        help="keep the CA key (object=LABEL) and the log key (LABEL-log) in this PKCS#11 token "
        "(RFC 7512 URI; created there unless they exist; see docs/steward.md 'Keys in an HSM')",
    )
    tls = sub.add_parser(
        "tls-cert",
        help="issue the Steward's HTTPS certificate again (renewal, other names)",
        description="Issue a new HTTPS certificate for the Steward, signed by its CA, and replace\n"
        "tls_cert and tls_key (atomically). Without --host/--ip the names of the current\n"
        "certificate are kept. Restart 'donjon steward serve' to use it.",
        epilog=_TLS_EXAMPLES,
    )
    tls.add_argument("--config", required=True, metavar="FILE", help="the Steward's steward.toml")
    tls.add_argument("--host", action="append", metavar="NAME", help="a DNS name (repeatable)")
    tls.add_argument("--ip", action="append", metavar="ADDRESS", help="an IP address (repeatable)")
    tls.add_argument(
        "--days",
        type=int,
        default=DEFAULT_TLS_DAYS,
        metavar="N",
        help=f"validity in days (default {DEFAULT_TLS_DAYS})",
    )
    serve = sub.add_parser(
        "serve",
        help="run the Steward (HTTPS, or HTTP if so configured)",
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


def _names(args: argparse.Namespace) -> tuple[list[str], list[Any]] | str:
    """The host names and addresses of ``--host``/``--ip``, or the usage error."""
    from donjon.steward.https import parse_host, parse_ip

    try:
        hosts = [parse_host(h) for h in args.host or []]
        ips = [parse_ip(i) for i in args.ip or []]
    except ValueError as e:
        return str(e)
    return list(dict.fromkeys(hosts)), list(dict.fromkeys(ips))


def _init(args: argparse.Namespace) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from donjon.steward.ca import CaKey, create_ca
    from donjon.steward.config import is_trust_domain, starter_config
    from donjon.steward.files import StagedFolder, make_dir, write_public, write_secret
    from donjon.steward.https import (
        DEFAULT_HOSTS,
        DEFAULT_IPS,
        issue_serving_certificate,
        write_serving_certificate,
    )

    def fail(message: str, code: int) -> int:
        print(f"donjon steward init: {message}", file=sys.stderr)
        return code

    if not is_trust_domain(args.trust_domain):
        # Refuse before writing anything: serve would refuse the steward.toml written with it.
        return fail(
            f"--trust-domain {args.trust_domain!r}: "
            "not a lowercase SPIFFE trust domain ([a-z0-9._-], e.g. example.org)",
            EXIT_USAGE,
        )
    names = _names(args)
    if isinstance(names, str):
        return fail(names, EXIT_USAGE)
    https = not args.insecure_http
    if not https and (args.host or args.ip):
        return fail("--host and --ip name the HTTPS certificate: not with --insecure-http", EXIT_USAGE)
    hosts = names[0] or ([] if names[1] else list(DEFAULT_HOSTS))
    ips = names[1] or ([] if names[0] else list(DEFAULT_IPS))
    token = _token_uris(args) if args.pkcs11_uri else None
    if isinstance(token, str):
        usage_error("donjon steward init", token)
        return EXIT_USAGE
    directory = Path(args.dir)
    files = ["steward.toml", "policy.toml", "ca.pem", "challenge.secret", "log-key.pub"]
    if token is None:
        files += ["ca-key.pem", "log-key.pem"]
    if https:
        files += ["tls.pem", "tls-key.pem"]
    existing = [n for n in files if os.path.lexists(directory / n)]
    if existing and not args.force:
        return fail(f"{', '.join(existing)} already exist in {directory} (use --force)", EXIT_USAGE)
    now = datetime.now(UTC)
    key: CaKey
    vkey: str | None = None
    if token is not None:
        from donjon.hsm import HsmError, ObjectNotFound
        from donjon.hsm.keys import create_ec_key, open_ec_signer
        from donjon.steward.ca import create_ca_certificate

        ca_uri, log_uri = token
        base = directory.resolve()  # a relative pin-source is relative to steward.toml, as in serve
        try:
            try:
                signer = open_ec_signer(ca_uri, base=base)
            except ObjectNotFound:
                signer = create_ec_key(ca_uri, args.curve, base=base)
            vkey = _token_log_key(log_uri, base, args.trust_domain)
            cert = create_ca_certificate(signer, f"Donjon Steward CA ({args.trust_domain})", now=now)
        except HsmError as e:
            _error(str(e))
            return EXIT_OPERATIONAL
        key = signer
    elif args.import_ca:
        try:
            cert = x509.load_pem_x509_certificate(Path(args.import_ca[0]).read_bytes())
            imported = serialization.load_pem_private_key(Path(args.import_ca[1]).read_bytes(), password=None)
        except OSError as e:
            return fail(f"cannot read {e.filename}: {e.strerror}", EXIT_OPERATIONAL)
        except (ValueError, TypeError) as e:
            return fail(f"--import-ca: {e}", EXIT_USAGE)
        if not isinstance(imported, ec.EllipticCurvePrivateKey) or imported.public_key() != cert.public_key():
            return fail("--import-ca needs an EC key matching the certificate", EXIT_USAGE)
        key = imported
    else:
        key, cert = create_ca(f"Donjon Steward CA ({args.trust_domain})", curve=args.curve, now=now)
    # Everything is written into a stage and moved into place at the end, all or nothing: a
    # failure half-way (a token, a full disk, Ctrl-C) must not leave a partial Steward that a
    # second init refuses or that serve half-uses. The stage is new, so nothing in it is replaced.
    try:
        stage = StagedFolder(directory)
    except OSError as e:
        if token is not None:
            key.close()  # type: ignore[union-attr]
        return fail(f"cannot create {directory}: {e.strerror or e}", EXIT_OPERATIONAL)
    with stage:
        sim_roots: list[str] = []
        policy = _starter_policy(simulated=args.simulated)
        staged = stage.path
        try:
            if isinstance(key, ec.EllipticCurvePrivateKey):
                write_secret(
                    staged / "ca-key.pem",
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ),
                )
            write_public(staged / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
            write_secret(staged / "challenge.secret", secrets.token_bytes(32))
            if https:
                tls_key, tls_cert = issue_serving_certificate(key, cert, hosts=hosts, ips=ips, now=now)
                write_serving_certificate(staged / "tls.pem", staged / "tls-key.pem", tls_key, tls_cert)
            make_dir(staged / "collateral")
            if args.simulated:
                from donjon.steward.simulated import install_simulated_vendors

                _keep_simulated_vendors(directory / SIM_VENDOR_DIR, staged / SIM_VENDOR_DIR)
                sim = install_simulated_vendors(staged / "collateral", staged / SIM_VENDOR_DIR, now=now)
                sim_roots = [str(root.relative_to(staged)) for root in sim.roots]
            text = starter_config(args.trust_domain, https=https, simulated_roots=sim_roots)
            if token is not None:
                text = _in_token(text, "ca_key", token[0])
                if vkey is not None:
                    text = _in_token(text, "log_key", token[1])
            write_public(staged / "steward.toml", text)
            write_public(staged / "policy.toml", policy)
            if vkey is None:
                vkey = _create_log_key(staged, args.trust_domain)
            else:
                write_public(staged / "log-key.pub", vkey + "\n")
            stage.commit()
        except OSError as e:
            where = _unstaged(e.filename, staged, directory)
            return fail(f"{where}: {e.strerror or e}", EXIT_OPERATIONAL)
        except Exception as e:  # a simulated vendor that cannot be loaded or saved, a token that fails
            return fail(f"{type(e).__name__}: {e}", EXIT_OPERATIONAL)
        finally:
            if token is not None:
                key.close()  # type: ignore[union-attr]
    where = f"; in the token: {', '.join(u.redacted() for u in token)}" if token is not None else ""
    print(f"created a Steward in {directory}: {', '.join(sorted(files))}{where}")
    print(f"log verifier key (give it to witnesses and relying parties): {vkey}")
    if https:
        shown = ", ".join([*hosts, *(str(ip) for ip in ips)])
        print(f"its HTTPS certificate names {shown}; renew it with: donjon steward tls-cert --config "
              f"{_q(directory / 'steward.toml')}")  # fmt: skip
    else:
        print(
            "donjon steward init: WARNING: --insecure-http: this Steward serves PLAIN HTTP. Anyone on "
            "the path can read and deny its traffic; use it only behind a TLS proxy on this machine.",
            file=sys.stderr,
        )
    if args.simulated:
        print(
            f"SIMULATED SEV-SNP and TDX vendors in {directory / SIM_VENDOR_DIR} are trusted (development "
            "only); a Keep needs --sim-vendor " + _q(directory / SIM_VENDOR_DIR)
        )
    print(_next_steps(directory, hosts, ips, https=https, simulated=args.simulated))
    return EXIT_OK


def _token_uris(args: argparse.Namespace) -> tuple[Pkcs11Uri, Pkcs11Uri] | str:
    """``--pkcs11-uri``: where the CA key (``object``) and the log key (``object-log``) live in the
    token, or the usage error."""
    from donjon.hsm import BadUri, parse_uri

    try:
        uri = parse_uri(args.pkcs11_uri)
    except BadUri as e:
        return f"--pkcs11-uri: {e}"
    if args.import_ca:
        return "--import-ca imports a key file; it cannot go with --pkcs11-uri"
    if uri.object is None:
        return "--pkcs11-uri must name the CA key: add object=LABEL"
    if uri.pin_value is not None:
        return "--pkcs11-uri must not carry pin-value (steward.toml is not secret): use pin-source=file:PATH"
    return uri.with_object(uri.object), uri.with_object(f"{uri.object}-log")


def _in_token(text: str, key: str, uri: Pkcs11Uri) -> str:
    """``steward.toml``'s ``key = "file"`` line, made to name the key in the token instead."""
    start = text.index(f"{key} = ")
    end = text.index("#", start)
    return (
        text[:start]
        + f"{key} = {json.dumps(str(uri))}  "
        + text[end:].replace("secret (mode 0600)", "in the PKCS#11 token", 1)
    )


def _token_log_key(uri: Pkcs11Uri, base: Path, trust_domain: str) -> str | None:
    """The verifier key of the log key in the token (created there unless it exists), or None
    when the token has no Ed25519: many HSMs lack CKM_EDDSA (PKCS#11 3.0), and then the log
    key is a file, as without a token."""
    from donjon.hsm import MechanismUnsupported, ObjectNotFound
    from donjon.hsm.keys import create_ed25519_key, open_ed25519_key
    from donjon.steward.logkey import default_origin
    from donjon.tlog.checkpoint import NoteSigner

    try:
        try:
            key = open_ed25519_key(uri, base=base)
        except ObjectNotFound:
            key = create_ed25519_key(uri, base=base)
    except MechanismUnsupported as e:
        print(f"donjon steward init: {e}; the log key is a file (log-key.pem)", file=sys.stderr)
        return None
    try:
        return NoteSigner(default_origin(trust_domain), key).verifier.vkey()
    finally:
        key.close()


def _create_log_key(directory: Path, trust_domain: str) -> str:
    """The checkpoint-signing key of a new Steward (``log-key.pem``, 0600) and its verifier key."""
    from donjon.steward.logkey import create_log_key, default_origin

    return create_log_key(directory / "log-key.pem", default_origin(trust_domain)).verifier.vkey()


def _keep_simulated_vendors(existing: Path, staged: Path) -> None:
    """Copy the simulated vendors of an earlier ``init --simulated`` into the stage, so that
    ``--force`` keeps them (and the ``--sim-vendor`` of the Keeps that use them) as it always did."""
    from donjon.backends.sim import SIM_BACKENDS
    from donjon.steward.files import PRIVATE_DIR_MODE, make_dir, write_secret

    if existing.is_symlink() or not existing.is_dir():
        return  # nothing to keep; a link is not followed
    make_dir(staged, PRIVATE_DIR_MODE)
    for name in sorted(SIM_BACKENDS):
        vendor = existing / f"{name}-vendor.json"
        if vendor.is_file() and not vendor.is_symlink():
            write_secret(staged / vendor.name, vendor.read_bytes())


def _unstaged(filename: object, staged: Path, directory: Path) -> str:
    """The path an error names, with the stage replaced by the folder the operator gave."""
    if not filename:
        return str(directory)
    path = Path(str(filename))
    try:
        return str(directory / path.relative_to(staged))
    except ValueError:
        return str(path)


#: Where ``init --simulated`` keeps the simulated vendors (what a Keep's --sim-vendor names).
SIM_VENDOR_DIR = "sim-vendor"


def _q(path: Path | str) -> str:
    import shlex

    return shlex.quote(str(path))


def _starter_policy(*, simulated: bool) -> str:
    from donjon.steward.policy import STARTER_POLICY

    if not simulated:
        return STARTER_POLICY
    from donjon.steward.simulated import simulated_platforms

    switch = "allow_simulated = true  # init --simulated: development only, never in production"
    if "allow_simulated = false" in STARTER_POLICY:
        text = STARTER_POLICY.replace("allow_simulated = false", switch, 1)
    else:
        text = f"{switch}\n{STARTER_POLICY}"
    return (
        f"{text}\n# Written by 'donjon steward init --simulated': the measurement the simulators "
        "report\n# unless told otherwise (48 zero bytes). Real hardware never reports it.\n"
        f"{simulated_platforms()}"
    )


def _next_steps(directory: Path, hosts: list[str], ips: list[Any], *, https: bool, simulated: bool) -> str:
    """What to do next, down to the exact ``donjon run`` line of a Keep."""
    import ipaddress

    if hosts:
        host = hosts[0]
    elif ips:
        address = ipaddress.ip_address(ips[0])
        host = f"[{address}]" if address.version == 6 else str(address)
    else:
        host = "127.0.0.1"
    url = f"{'https' if https else 'http'}://{host}:8443"
    run = ["donjon", "run"]
    if simulated:
        run += ["--backend", "sim-snp", "--sim-vendor", _q(directory / SIM_VENDOR_DIR)]
    if not https:
        run += ["--steward-insecure-http"]
    run += ["--steward", url, "--steward-ca", _q(directory / "ca.pem"), "--config", "Donjon.toml", "app.wasm"]
    policy = _q(directory / "policy.toml")
    return "\n".join(
        [
            "",
            "next steps:",
            "  1. the workload digest of your Keep (no workload yet? 'donjon example http -o app.wasm'",
            "     writes one, and its Donjon.toml beside it):",
            "       donjon run --print-digest --config Donjon.toml app.wasm",
            f"  2. allow it: a [[workload]] with that digest in {policy}"
            + (' (platforms = ["sev-snp", "simulated"])' if simulated else "")
            + ", then:",
            f"       donjon policy check --policy {policy}",
            "  3. serve (port 8443, see steward.toml):",
            f"       donjon steward serve --config {_q(directory / 'steward.toml')}",
            "  4. run the Keep:",
            "       " + " ".join(run),
        ]
    )


def _tls_cert(args: argparse.Namespace) -> int:
    from cryptography import x509

    from donjon.hsm import HsmError, Pkcs11Uri
    from donjon.steward.errors import ConfigError
    from donjon.steward.https import issue_serving_certificate, write_serving_certificate
    from donjon.steward.service import load_ca

    def fail(message: str, code: int) -> int:
        print(f"donjon steward tls-cert: {message}", file=sys.stderr)
        return code

    names = _names(args)
    if isinstance(names, str):
        return fail(names, EXIT_USAGE)
    if not Path(args.config).is_file():
        return fail(f"{args.config}: no such file", EXIT_OPERATIONAL)
    try:
        config = _config(args.config)
        if config.tls_cert is None or config.tls_key is None:
            raise ConfigError(
                str(config.path),
                'no tls_cert and tls_key: add tls_cert = "tls.pem" and tls_key = "tls-key.pem" '
                "to [steward], then run this again",
            )
        files = [config.ca_cert] + ([] if isinstance(config.ca_key, Pkcs11Uri) else [config.ca_key])
        missing = [p for p in files if not p.is_file()]
        if missing:
            return fail(f"{missing[0]}: no such file (the Steward's CA)", EXIT_OPERATIONAL)
        ca = load_ca(config)
    except ConfigError as e:
        return fail(str(e), EXIT_USAGE)
    except HsmError as e:
        return fail(str(e), EXIT_OPERATIONAL)
    hosts, ips = names
    if not hosts and not ips:  # renewal: the names of the certificate in place
        try:
            current = x509.load_pem_x509_certificate(config.tls_cert.read_bytes())
            san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            hosts = san.get_values_for_type(x509.DNSName)
            ips = san.get_values_for_type(x509.IPAddress)
        except (OSError, ValueError, x509.ExtensionNotFound):
            from donjon.steward.https import DEFAULT_HOSTS, DEFAULT_IPS

            hosts, ips = list(DEFAULT_HOSTS), list(DEFAULT_IPS)
    try:
        key, cert = issue_serving_certificate(
            ca.key, ca.cert, hosts=hosts, ips=ips, now=datetime.now(UTC), days=args.days
        )
    except ValueError as e:
        return fail(str(e), EXIT_USAGE)
    except HsmError as e:
        return fail(str(e), EXIT_OPERATIONAL)
    finally:
        ca.close()
    try:
        write_serving_certificate(config.tls_cert, config.tls_key, key, cert, replace=True)
    except OSError as e:
        return fail(f"{e.filename}: {e.strerror or e}", EXIT_OPERATIONAL)
    shown = ", ".join([*hosts, *(str(ip) for ip in ips)])
    print(
        f"wrote {config.tls_cert} for {shown}, valid until {cert.not_valid_after_utc:%Y-%m-%d}; "
        "restart 'donjon steward serve' to use it"
    )
    return EXIT_OK


def _config(path: str) -> StewardConfig:
    from donjon.steward.config import load_config

    return load_config(path)


def _error(message: str) -> None:
    print(f"donjon: {message}", file=sys.stderr, flush=True)


def _check_files(config: StewardConfig) -> None:
    """Refuse to start on secrets others may read or configuration others may write (as ssh does)."""
    from donjon.steward.files import check_steward_files

    secret_files = [config.challenge_secret]
    secret_files += [key for key in (config.ca_key, config.log_key, config.tls_key) if isinstance(key, Path)]
    if not config.secrets_kek.startswith("pkcs11:"):
        from donjon.steward.secrets.kek import kek_location

        kek = kek_location(config)
        if kek.exists():
            secret_files.append(kek)
    check_steward_files(secrets=secret_files, configuration=[config.path, config.policy])


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

    from donjon.hsm import HsmError
    from donjon.steward.app import setup_logging
    from donjon.steward.errors import ConfigError
    from donjon.steward.files import UnsafePermissions
    from donjon.steward.secrets.errors import KekError
    from donjon.steward.service import ListenError, build_steward, format_hostport, open_secrets, serve

    # Until the Steward serves, it speaks like every other command: one `donjon: ` line per error.
    # Its log (JSON lines, docs/steward.md "Logs") starts with serving.
    if args.port is not None and not 0 <= args.port <= 65535:
        usage_error("donjon steward serve", f"--port must be 0..65535, got {args.port}")
        return EXIT_USAGE
    if not Path(args.config).is_file():
        _error(f"{args.config}: no such configuration file")
        return EXIT_OPERATIONAL
    # Files the Steward creates (the SQLite log and its journals, the collateral cache) are never
    # writable by group or others, whatever umask it was started under.
    os.umask(os.umask(0o022) | 0o022)
    try:
        config = _config(args.config)
        if args.port is not None:
            config = dataclasses.replace(config, port=args.port)
        _check_files(config)
        steward = build_steward(config)
    except UnsafePermissions as e:
        _error(str(e))
        return EXIT_USAGE
    except ConfigError as e:
        _error(str(e))
        return EXIT_USAGE
    except HsmError as e:  # the PKCS#11 token: missing, locked, wrong PIN, no such key
        _error(f"cannot start the Steward: {e}")
        return EXIT_OPERATIONAL
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
    if config.tls_cert is None:
        logging.getLogger("donjon.steward").warning(
            "UNSAFE: serving plain HTTP (no tls_cert/tls_key in steward.toml): only behind a TLS proxy "
            "on this machine",
            extra={"fields": {"event": "insecure_http"}},
        )
    try:
        stopped_by = serve(config, steward, secret_service)
    except ListenError as e:  # before serving: one 'donjon:' line, like every other error then
        steward.close()
        _error(str(e))
        return EXIT_OPERATIONAL
    except OSError as e:
        steward.close()  # closing twice is harmless, if serve got as far as closing it
        _error(f"cannot serve on {format_hostport(config.listen, config.port)}: {e.strerror or e}")
        return EXIT_OPERATIONAL
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signal
        steward.close()
        return EXIT_INTERRUPTED
    # Ctrl-C: 128 + SIGINT, as a shell reports it; SIGTERM is how service managers stop it (0).
    return EXIT_INTERRUPTED if stopped_by == signal.SIGINT else EXIT_OK


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
    # A log key in a token: its verifier key is log-key.pub beside steward.toml (init wrote it).
    pub = (
        public_key_path(config.log_key)
        if isinstance(config.log_key, Path)
        else config.path.resolve().parent / "log-key.pub"
    )
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
    from donjon.hsm import HsmError
    from donjon.steward.errors import ConfigError
    from donjon.steward.log import LogCorrupt
    from donjon.steward.logkey import create_log_key
    from donjon.steward.service import log_signer, open_log

    assert config.log_key is not None and config.log_origin is not None
    created = False
    try:
        if isinstance(config.log_key, Path) and not (config.log_key.exists() or config.log_key.is_symlink()):
            signer = create_log_key(config.log_key, config.log_origin)
            created = True
        else:
            signer = log_signer(config)
    except ConfigError as e:
        print(f"donjon steward log migrate: {e}", file=sys.stderr)
        return EXIT_USAGE
    except HsmError as e:
        print(f"donjon steward log migrate: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
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
        try:
            return _serve(args)
        except KeyboardInterrupt:  # Ctrl-C while starting: no traceback
            return EXIT_INTERRUPTED
    if args.command == "tls-cert":
        return _tls_cert(args)
    if args.command == "secret":
        from donjon.cli.secret import run as run_secret

        return run_secret(args)
    return _log(args)
