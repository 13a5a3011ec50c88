"""``donjon steward``: create, run and audit a Steward.

- ``donjon steward init [--dir D] [--trust-domain T] [--curve p256|p384] [--import-ca CERT KEY]
  [--host NAME]... [--ip ADDRESS]... [--simulated] [--insecure-http] [--force]``
- ``donjon steward tls-cert --config steward.toml [--host NAME]... [--ip ADDRESS]... [--days N]``
- ``donjon steward serve --config steward.toml``
- ``donjon steward log verify --config steward.toml``
- ``donjon steward log show --config steward.toml [--format text|json] [--serial S]``

Exit codes: 0 ok; 1 the log does not verify; 2 usage or invalid configuration (``serve``: also a
key or secret readable by others, or a configuration file writable by them); 3 operational error
(files, database).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE

if TYPE_CHECKING:
    from donjon.steward.config import StewardConfig

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="donjon steward", description="Run and manage a Donjon Steward.")
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser(
        "init",
        help="create a CA, an HTTPS certificate, a challenge secret, steward.toml and a starter policy",
        description="Create a Steward in a directory: its CA, an HTTPS certificate issued by that CA\n"
        "(for --host and --ip), a challenge secret, steward.toml and a starter policy. Prints the\n"
        "next steps, down to the exact 'donjon run' line of a Keep (docs/steward.md).",
        epilog=INIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--dir", default=".", help="directory to create the files in (default: .)")
    init.add_argument("--trust-domain", default="donjon.local", help="SPIFFE trust domain")
    init.add_argument("--curve", choices=["p256", "p384"], default="p256", help="CA key curve")
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
    tls = sub.add_parser(
        "tls-cert",
        help="issue the Steward's HTTPS certificate again (renewal, other names)",
        description="Issue a new HTTPS certificate for the Steward, signed by its CA, and replace\n"
        "tls_cert and tls_key (atomically). Without --host/--ip the names of the current\n"
        "certificate are kept. Restart 'donjon steward serve' to use it.",
        epilog=TLS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tls.add_argument("--config", required=True, help="the Steward's steward.toml")
    tls.add_argument("--host", action="append", metavar="NAME", help="a DNS name (repeatable)")
    tls.add_argument("--ip", action="append", metavar="ADDRESS", help="an IP address (repeatable)")
    tls.add_argument(
        "--days", type=int, default=DEFAULT_TLS_DAYS, help=f"validity (default {DEFAULT_TLS_DAYS})"
    )
    serve = sub.add_parser("serve", help="run the Steward (HTTPS, or HTTP if so configured)")
    serve.add_argument("--config", required=True, help="the Steward's steward.toml")
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


#: The serving certificate's default validity (donjon.steward.https.DEFAULT_VALIDITY_DAYS).
DEFAULT_TLS_DAYS = 365

INIT_EXAMPLES = """\
examples:
  donjon steward init --dir steward --simulated             # development: simulated TEEs, localhost
  donjon steward init --dir /etc/donjon-steward --trust-domain example.org \\
      --host steward.example.org --ip 192.0.2.7              # production
"""

TLS_EXAMPLES = """\
examples:
  donjon steward tls-cert --config steward/steward.toml                  # renew, same names
  donjon steward tls-cert --config steward.toml --host steward.example.org --ip 192.0.2.7
"""


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

    from donjon.steward.ca import create_ca
    from donjon.steward.config import is_trust_domain, starter_config
    from donjon.steward.files import make_dir, write_public, write_secret
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
    directory = Path(args.dir)
    files = ["steward.toml", "policy.toml", "ca.pem", "ca-key.pem", "challenge.secret"]
    if https:
        files += ["tls.pem", "tls-key.pem"]
    try:
        make_dir(directory, chmod_existing=False)
    except OSError as e:
        return fail(f"cannot create {directory}: {e.strerror}", EXIT_OPERATIONAL)
    existing = [n for n in files if os.path.lexists(directory / n)]
    if existing and not args.force:
        return fail(f"{', '.join(existing)} already exist in {directory} (use --force)", EXIT_USAGE)
    now = datetime.now(UTC)
    if args.import_ca:
        try:
            cert = x509.load_pem_x509_certificate(Path(args.import_ca[0]).read_bytes())
            key = serialization.load_pem_private_key(Path(args.import_ca[1]).read_bytes(), password=None)
        except OSError as e:
            return fail(f"cannot read {e.filename}: {e.strerror}", EXIT_OPERATIONAL)
        except (ValueError, TypeError) as e:
            return fail(f"--import-ca: {e}", EXIT_USAGE)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            return fail("--import-ca needs an EC key matching the certificate", EXIT_USAGE)
    else:
        key, cert = create_ca(f"Donjon Steward CA ({args.trust_domain})", curve=args.curve, now=now)
    replace = bool(args.force)
    sim_roots: list[str] = []
    policy = _starter_policy(simulated=args.simulated)
    try:
        write_secret(
            directory / "ca-key.pem",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            replace=replace,
        )
        write_public(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), replace=replace)
        write_secret(directory / "challenge.secret", secrets.token_bytes(32), replace=replace)
        if https:
            tls_key, tls_cert = issue_serving_certificate(key, cert, hosts=hosts, ips=ips, now=now)
            write_serving_certificate(
                directory / "tls.pem", directory / "tls-key.pem", tls_key, tls_cert, replace=replace
            )
        make_dir(directory / "collateral")
        if args.simulated:
            from donjon.steward.simulated import install_simulated_vendors

            sim = install_simulated_vendors(directory / "collateral", directory / SIM_VENDOR_DIR, now=now)
            sim_roots = [str(root.relative_to(directory)) for root in sim.roots]
        write_public(
            directory / "steward.toml",
            starter_config(args.trust_domain, https=https, simulated_roots=sim_roots),
            replace=replace,
        )
        write_public(directory / "policy.toml", policy, replace=replace)
    except FileExistsError as e:
        return fail(f"{e.filename} appeared while writing (use --force to replace it)", EXIT_USAGE)
    except OSError as e:
        return fail(f"{e.filename or directory}: {e.strerror or e}", EXIT_OPERATIONAL)
    except Exception as e:  # a simulated vendor that cannot be loaded or saved
        return fail(f"{type(e).__name__}: {e}", EXIT_OPERATIONAL)
    print(f"created a Steward in {directory}: {', '.join(files)}")
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
            "  1. the workload digest of your Keep:",
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

    from donjon.steward.ca import CertificateAuthority
    from donjon.steward.errors import ConfigError
    from donjon.steward.https import issue_serving_certificate, write_serving_certificate

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
        missing = [p for p in (config.ca_cert, config.ca_key) if not p.is_file()]
        if missing:
            return fail(f"{missing[0]}: no such file (the Steward's CA)", EXIT_OPERATIONAL)
        ca = CertificateAuthority.load(
            str(config.ca_cert), str(config.ca_key), trust_domain=config.trust_domain
        )
    except ConfigError as e:
        return fail(str(e), EXIT_USAGE)
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


def _check_files(config: StewardConfig) -> None:
    """Refuse to start on secrets others may read or configuration others may write (as ssh does)."""
    from donjon.steward.files import check_steward_files

    secret_files = [config.ca_key, config.challenge_secret]
    if config.tls_key is not None:
        secret_files.append(config.tls_key)
    check_steward_files(secrets=secret_files, configuration=[config.path, config.policy])


def _serve(args: argparse.Namespace) -> int:
    import dataclasses

    from donjon.steward.app import setup_logging
    from donjon.steward.errors import ConfigError
    from donjon.steward.files import UnsafePermissions
    from donjon.steward.service import build_steward, serve

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
        log.error("unsafe file permissions", extra={"fields": {"event": "config_error", "error": str(e)}})
        return EXIT_USAGE
    except ConfigError as e:
        log.error("invalid configuration", extra={"fields": {"event": "config_error", "error": str(e)}})
        return EXIT_USAGE
    except Exception as e:  # database unreachable, ...
        log.error(
            "cannot start", extra={"fields": {"event": "start_error", "error": f"{type(e).__name__}: {e}"}}
        )
        return EXIT_OPERATIONAL
    if config.tls_cert is None:
        log.warning(
            "UNSAFE: serving plain HTTP (no tls_cert/tls_key in steward.toml): only behind a TLS proxy "
            "on this machine",
            extra={"fields": {"event": "insecure_http"}},
        )
    try:
        serve(config, steward)
    except OSError as e:
        log.error("cannot serve", extra={"fields": {"event": "serve_error", "error": str(e)}})
        return EXIT_OPERATIONAL
    return EXIT_OK


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
        return _serve(args)
    if args.command == "tls-cert":
        return _tls_cert(args)
    return _log(args)
