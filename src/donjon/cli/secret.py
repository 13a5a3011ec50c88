"""``donjon steward secret``: the operator's side of the secret store (docs/secrets.md).

- ``put NAME (--file F | -)``: a new secret (version 1); creates the KEK on first use;
- ``rotate NAME (--file F | -)``: a new version (the old ones stay until ``prune``);
- ``list [--format text|json]``: names, versions, sizes, times — never values;
- ``prune NAME [--keep N]``: delete all but the newest N versions;
- ``delete NAME``: delete every version.

Each change is also an entry of the Steward's transparency log (name, version, size, action).
Exit codes: 0 ok; 1 refused (put of an existing name, rotate/prune/delete of a missing one);
2 usage (bad name, oversized value, bad configuration); 3 operational (the KEK missing, not
readable or not the one the store was written with; the database).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE
from donjon.cli.args import examples

if TYPE_CHECKING:
    from donjon.steward.config import StewardConfig
    from donjon.steward.secrets.store import SecretStore

__all__ = ["add_parser", "run"]

_CONFIG_HELP = "the Steward's steward.toml"


def _source(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", help="the secret's name: 1-128 of A-Z a-z 0-9 . _ -")
    p.add_argument(
        "stdin",
        nargs="?",
        choices=["-"],
        metavar="-",
        help="read the value from standard input (instead of --file)",
    )
    p.add_argument("--file", metavar="FILE", help="read the value from FILE (at most 1 MiB)")
    p.add_argument("--config", required=True, metavar="FILE", help=_CONFIG_HELP)


def add_parser(sub: Any) -> None:
    """``secret`` and its subcommands under ``donjon steward``."""
    secret = sub.add_parser(
        "secret",
        help="store, rotate, list and delete the secrets released to attested Keeps",
        description="Manage the Steward's secret store: values encrypted at rest under a key-encryption\n"
        "key ([secrets] kek in steward.toml), released by the policy's [[secret]] rules to\n"
        "attested Keeps over mutual TLS. See docs/secrets.md.",
        epilog=examples(
            "donjon steward secret put db-password --file password.txt --config steward/steward.toml",
            'printf %s "$TOKEN" | donjon steward secret put api-token - --config steward/steward.toml',
            "donjon steward secret list --config steward/steward.toml",
        ),
    )
    ssub = secret.add_subparsers(dest="secret_command", required=True, title="commands", metavar="COMMAND")
    put = ssub.add_parser(
        "put",
        help="store a new secret (version 1)",
        description="Store a new secret from a file or standard input. Refused if the name exists\n"
        "(use rotate). The first put creates the key-encryption key file (mode 0600).",
        epilog=examples(
            "donjon steward secret put db-password --file password.txt --config steward.toml",
            "donjon steward secret put api-token - --config steward.toml    # the value on standard input",
        ),
    )
    _source(put)
    rotate = ssub.add_parser(
        "rotate",
        help="store a new version of a secret (older ones kept until pruned)",
        description="Store a new version of an existing secret. Keeps receive it when they next\n"
        "fetch (at their next certificate renewal); older versions stay until 'prune'.",
        epilog=examples(
            "donjon steward secret rotate db-password --file new-password.txt --config steward.toml",
            "donjon steward secret prune db-password --keep 1 --config steward.toml",
        ),
    )
    _source(rotate)
    lst = ssub.add_parser(
        "list",
        help="list the secrets: names, versions, sizes, times (never values)",
        description="List every stored version: name, version, size in bytes, creation time and the\n"
        "KEK that wraps its key. Values are never shown.",
        epilog=examples(
            "donjon steward secret list --config steward.toml",
            "donjon steward secret list --config steward.toml --format json",
        ),
    )
    lst.add_argument("--config", required=True, metavar="FILE", help=_CONFIG_HELP)
    lst.add_argument(
        "--format", choices=["text", "json"], default="text", help="one line per version, or JSON lines"
    )
    prune = ssub.add_parser(
        "prune",
        help="delete all but the newest versions of a secret",
        description="Delete the older versions of a secret, keeping the newest N (default 1).",
        epilog=examples("donjon steward secret prune db-password --config steward.toml --keep 2"),
    )
    prune.add_argument("name", metavar="NAME", help="the secret's name")
    prune.add_argument("--keep", type=int, default=1, metavar="N", help="versions to keep (default 1)")
    prune.add_argument("--config", required=True, metavar="FILE", help=_CONFIG_HELP)
    delete = ssub.add_parser(
        "delete",
        help="delete every version of a secret",
        description="Delete a secret and all its versions. Keeps that fetch it afterwards are refused\n"
        "(secret.not_found) unless it is optional in their config.",
        epilog=examples("donjon steward secret delete db-password --config steward.toml"),
    )
    delete.add_argument("name", metavar="NAME", help="the secret's name")
    delete.add_argument("--config", required=True, metavar="FILE", help=_CONFIG_HELP)


def _error(message: str) -> None:
    print(f"donjon: {message}", file=sys.stderr, flush=True)


def _read_value(args: argparse.Namespace) -> bytes | int:
    from donjon.steward.secrets.names import MAX_SECRET_BYTES

    if (args.file is None) == (args.stdin is None):
        from donjon.cli import usage_error

        usage_error(f"donjon steward secret {args.secret_command}", "give the value as --file FILE or -")
        return EXIT_USAGE
    try:
        if args.file is not None:
            with open(args.file, "rb") as f:
                data = f.read(MAX_SECRET_BYTES + 1)
        else:
            data = sys.stdin.buffer.read(MAX_SECRET_BYTES + 1)
    except OSError as e:
        _error(f"cannot read {args.file or 'standard input'}: {e.strerror or e}")
        return EXIT_OPERATIONAL
    if len(data) > MAX_SECRET_BYTES:
        _error(f"the secret is larger than the {MAX_SECRET_BYTES}-byte limit (docs/secrets.md)")
        return EXIT_USAGE
    return data


def _open(config: StewardConfig, *, create: bool) -> SecretStore:
    """The store, its KEK checked; ``create``: make the KEK file if this is the store's first use."""
    from donjon.steward.secrets.kek import Kek, create_file_kek, kek_location, open_kek
    from donjon.steward.secrets.store import open_store

    kek: Kek
    location = kek_location(config)
    is_file = not config.secrets_kek.startswith("pkcs11:")
    if create and is_file and not location.exists() and not location.is_symlink():
        kek = create_file_kek(location)
        print(f"created the key-encryption key {location} (mode 0600): back it up apart from the database")
    else:
        kek = open_kek(config, create=create)  # a pkcs11: KEK is made in the token on the first put
    return open_store(config.log_backend, path=config.log_path, dsn=config.log_dsn, kek=kek)


def _log(config: StewardConfig, record: dict[str, Any]) -> None:
    """The operator's change as a log entry (never the value)."""
    from donjon.steward.service import log_signer, open_log

    store = open_log(config, signer=log_signer(config))
    try:
        store.append({"path": "secret-admin", **record}, datetime.now(UTC).isoformat())
    finally:
        store.close()


def run(args: argparse.Namespace) -> int:
    from donjon.steward.config import load_config
    from donjon.steward.errors import ConfigError
    from donjon.steward.secrets.errors import (
        BadSecretName,
        KekError,
        SecretError,
        SecretNotFound,
        SecretTooLarge,
    )
    from donjon.steward.secrets.names import check_name

    command = args.secret_command
    if not Path(args.config).is_file():
        _error(f"{args.config}: no such configuration file")
        return EXIT_OPERATIONAL
    try:
        config = load_config(args.config)
    except ConfigError as e:
        _error(str(e))
        return EXIT_USAGE
    value: bytes | None = None
    if command in ("put", "rotate"):
        try:
            check_name(args.name)
        except BadSecretName as e:
            _error(str(e))
            return EXIT_USAGE
        read = _read_value(args)
        if isinstance(read, int):
            return read
        value = read
    elif command in ("prune", "delete"):
        try:
            check_name(args.name)
        except BadSecretName as e:
            _error(str(e))
            return EXIT_USAGE
        if command == "prune" and args.keep < 1:
            _error("--keep must be at least 1 (use delete to remove a secret)")
            return EXIT_USAGE
    from donjon.steward.secrets.kek import kek_location

    location = kek_location(config)
    if command != "put" and not config.secrets_kek.startswith("pkcs11:") and not location.exists():
        if location.is_symlink():
            _error(f"key-encryption key {location}: a dangling symbolic link")
            return EXIT_OPERATIONAL
        # No KEK file: no secret was ever stored here.
        if command == "list":
            return EXIT_OK
        _error(f"no secret {args.name} (this Steward stores no secrets yet)")
        return EXIT_REFUSED
    try:
        store = _open(config, create=command == "put")
    except KekError as e:
        _error(f"{e}; nothing was changed")
        return EXIT_OPERATIONAL
    except Exception as e:  # the database
        _error(f"cannot open the secret store: {type(e).__name__}: {e}")
        return EXIT_OPERATIONAL
    try:
        if command == "list":
            for v in store.versions():
                if args.format == "json":
                    doc = {"name": v.name, "version": v.version, "size": v.size, "created": v.created}
                    print(json.dumps({**doc, "kek": v.kek}, sort_keys=True))
                else:
                    print(f"{v.name}\t{v.version}\t{v.size}\t{v.created}")
            return EXIT_OK
        if command in ("put", "rotate"):
            assert value is not None
            exists = bool(store.versions(args.name))
            if command == "put" and exists:
                _error(f"secret {args.name} exists; 'rotate' stores a new version")
                return EXIT_REFUSED
            if command == "rotate" and not exists:
                _error(f"no secret {args.name}; 'put' stores a new one")
                return EXIT_REFUSED
            stored = store.put(args.name, value)
            _log(
                config,
                {"decision": command, "secret": stored.name, "version": stored.version, "size": stored.size},
            )
            print(f"{stored.name} version {stored.version}: {stored.size} bytes")
            return EXIT_OK
        if command == "prune":
            count = store.prune(args.name, args.keep)
            _log(config, {"decision": "prune", "secret": args.name, "deleted_versions": count})
            print(f"{args.name}: deleted {count} older version(s)")
            return EXIT_OK
        count = store.delete(args.name)
        _log(config, {"decision": "delete", "secret": args.name, "deleted_versions": count})
        print(f"{args.name}: deleted ({count} version(s))")
        return EXIT_OK
    except SecretNotFound as e:
        _error(str(e))
        return EXIT_REFUSED
    except (BadSecretName, SecretTooLarge) as e:
        _error(str(e))
        return EXIT_USAGE
    except ConfigError as e:  # the log key
        _error(str(e))
        return EXIT_USAGE
    except (KekError, SecretError) as e:
        _error(str(e))
        return EXIT_OPERATIONAL
    except Exception as e:
        _error(f"{type(e).__name__}: {e}")
        return EXIT_OPERATIONAL
    finally:
        store.close()
