"""``donjon policy``: check a Steward policy file, and ask what it would decide for recorded evidence.

- ``donjon policy check --policy P`` — validate (line-numbered errors);
- ``donjon policy test --policy P --evidence FILE... [--at TIME] [--roots F...]
  [--simulated-root F...] [--collateral DIR] [--kind K] [--certs F...]
  [--workload-digest HEX] [--legacy] [--format text|json]``

Each evidence file is a CSR (native Donjon or Enarx, DER or PEM) or, with
``--kind``, raw evidence (a report or quote; ``--certs`` for its VCEK/PCK chain).
Every check a Steward makes runs, at ``--at`` (default: now), with the given
roots and collateral (``DIR/<kind>/`` or ``DIR`` itself) — except the nonce,
which belonged to the Steward that issued it, and, for raw evidence, the binding.
No Steward needs to run; nothing is logged or issued.

Exit codes: 0 every file would be issued; 1 at least one refused; 2 usage or
invalid policy; 3 unreadable files.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE, usage_error
from donjon.cli.args import Parser, examples

if TYPE_CHECKING:
    from donjon.steward.policy import Policy

__all__ = ["main", "parser"]

_KINDS = ("snp-report", "tdx-quote", "sgx-quote", "cca-token", "azure-snp-vtpm", "azure-tdx-vtpm")


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon policy`` and its subcommands (each with help and examples)."""
    p = Parser(
        prog="donjon policy",
        description="Check a Steward policy file, and ask what it would decide for recorded evidence.\n"
        "No Steward needs to run; nothing is logged or issued. See docs/steward.md.",
        epilog=examples(
            "donjon policy check --policy steward/policy.toml",
            "donjon policy test --policy steward/policy.toml --evidence keep.csr",
        ),
    )
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    check = sub.add_parser(
        "check",
        help="validate a policy file",
        description="Validate a policy file: exit 0 and its digest, or one line naming the line and\n"
        "key that is wrong (exit 2).",
        epilog=examples("donjon policy check --policy steward/policy.toml"),
    )
    check.add_argument("--policy", required=True, metavar="FILE", help="the policy file (policy.toml)")
    test = sub.add_parser(
        "test",
        help="what would the policy decide for recorded evidence, and why",
        description="Run every check a Steward makes on recorded evidence - a CSR from a Keep\n"
        "(native or Enarx, DER or PEM), or raw evidence with --kind - except the nonce, at\n"
        "--at, with the given roots and collateral. Prints the decision per file and the\n"
        "check that refused; exit 0 if every file would be issued, 1 if any is refused.",
        epilog=examples(
            "donjon policy test --policy steward/policy.toml --evidence keep.csr",
            "donjon policy test --policy policy.toml --evidence keep.csr --simulated-root sim-ark.pem \\",
            "    --collateral steward/collateral --format json",
            "donjon policy test --policy policy.toml --kind sgx-quote --evidence quote.dat \\",
            "    --legacy --roots intel-root.der --at 2023-02-01T00:00:00Z",
        ),
    )
    test.add_argument("--policy", required=True, metavar="FILE", help="the policy file (policy.toml)")
    test.add_argument(
        "--evidence",
        required=True,
        nargs="+",
        metavar="FILE",
        help="CSRs from Keeps, or raw evidence with --kind (one or more)",
    )
    test.add_argument("--at", metavar="TIME", help="verification time, RFC 3339 (default: now)")
    test.add_argument(
        "--roots", nargs="*", default=[], metavar="FILE", help="vendor root/intermediate certificates"
    )
    test.add_argument(
        "--simulated-root", nargs="*", default=[], metavar="FILE", help="trusted simulated roots"
    )
    test.add_argument("--collateral", metavar="DIR", help="collateral directory (DIR/<kind>/ or DIR)")
    test.add_argument("--kind", choices=_KINDS, help="the files are raw evidence of this kind, not CSRs")
    test.add_argument(
        "--certs", nargs="*", default=[], metavar="FILE", help="certificates sent with raw evidence"
    )
    test.add_argument("--workload-digest", metavar="HEX", help="workload digest (hex) for raw evidence")
    test.add_argument("--legacy", action="store_true", help="treat raw evidence as from an Enarx Keep")
    test.add_argument(
        "--format", choices=["text", "json"], default="text", help="one line per file, or JSON lines"
    )
    return p


class _Flat:
    """Collateral from ``DIR/<kind>/`` when it exists, else from ``DIR`` itself."""

    def __init__(self, root: Path) -> None:
        from donjon.steward.collateral import DirectoryCollateral

        self.nested = DirectoryCollateral(root)
        self.flat = DirectoryCollateral(root.parent)
        self.root = root

    def current(self, kind: str, evidence: bytes | None = None) -> Any:
        if (self.root / kind).is_dir():
            return self.nested.current(kind)
        return self.flat.current(self.root.name)


class _NoCollateral:
    def current(self, kind: str, evidence: bytes | None = None) -> None:
        return None


def _pem_or_der_csr(data: bytes) -> bytes:
    # A DER CSR can hold PEM text (Enarx SGX CSRs embed the TCB signing chain): look at the start.
    if data.lstrip().startswith(b"-----BEGIN"):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        return x509.load_pem_x509_csr(data).public_bytes(serialization.Encoding.DER)
    return data


def _load_policy(args: argparse.Namespace) -> Policy | int:
    """The policy file, or the exit code once its error is printed: 3 when the file cannot be read
    (docs/steward.md "Exit codes": unreadable files), 2 when it is not a valid policy."""
    from donjon.steward.errors import ConfigError
    from donjon.steward.policy import load_policy

    try:
        return load_policy(args.policy)
    except ConfigError as e:
        print(f"donjon policy {args.command}: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL if isinstance(e.__cause__, OSError) else EXIT_USAGE


def _test(args: argparse.Namespace) -> int:
    import secrets

    from donjon.attestation.verify import TrustRoots
    from donjon.csr import is_legacy
    from donjon.steward.ca import CertificateAuthority, create_ca
    from donjon.steward.errors import Refused
    from donjon.steward.issuance import PolicyHolder, Steward
    from donjon.steward.log import NoLog
    from donjon.steward.nonce import NonceAuthority

    policy = _load_policy(args)
    if isinstance(policy, int):
        return policy
    try:
        at = datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at else datetime.now(UTC)
    except ValueError:
        usage_error("donjon policy test", f"--at {args.at!r} is not an RFC 3339 time")
        return EXIT_USAGE
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    digest = None
    if args.workload_digest:
        try:
            digest = bytes.fromhex(args.workload_digest)
        except ValueError:
            usage_error("donjon policy test", "--workload-digest is not hex")
            return EXIT_USAGE
    try:
        roots = TrustRoots.from_bytes(
            *(Path(f).read_bytes() for f in args.roots),
            extra_trusted=[Path(f).read_bytes() for f in args.simulated_root],
        )
        certs = [Path(f).read_bytes() for f in args.certs]
        files = [(f, Path(f).read_bytes()) for f in args.evidence]
    except OSError as e:
        print(f"donjon policy test: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except Exception as e:
        print(f"donjon policy test: bad certificate file: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.collateral and not Path(args.collateral).is_dir():
        # A mistyped directory would otherwise read as "no collateral" and refuse every file.
        print(f"donjon policy test: --collateral {args.collateral}: no such directory", file=sys.stderr)
        return EXIT_OPERATIONAL
    key, cert = create_ca("policy test (not a Steward)", now=at)
    steward = Steward(
        ca=CertificateAuthority(key, cert, trust_domain="policy.test"),
        policy=PolicyHolder(args.policy, policy),
        nonces=NonceAuthority(secrets.token_bytes(32)),
        roots=roots,
        collateral=_Flat(Path(args.collateral)) if args.collateral else _NoCollateral(),
        log=NoLog(),
        clock=lambda: at,
    )
    refused = 0
    for name, data in files:
        record: dict[str, Any] = {"file": name}
        try:
            if args.kind:
                decision, _ = steward.check_evidence(
                    args.kind, data, certs, record, at, workload_digest=digest, legacy=args.legacy
                )
            else:
                der = _pem_or_der_csr(data)
                if is_legacy(der):
                    _, decision, _, _ = steward.check_legacy(der, record, at)
                else:
                    _, decision, _, _ = steward.check_native(der, record, at, check_nonce=False)
            record.update(
                decision="would issue",
                spiffe_path=decision.spiffe_path,
                dns_names=list(decision.dns_names),
                ip_addresses=[str(a) for a in decision.ip_addresses],
                lifetime_seconds=decision.lifetime,
                simulated=decision.simulated,
                fresh=decision.fresh,
                rule=decision.rule,
            )
        except Refused as e:
            refused += 1
            record.update(decision="refused", check=e.check, reason=e.reason)
        except ValueError as e:
            refused += 1
            record.update(decision="refused", check="csr.parse", reason=str(e))
        if args.format == "json":
            print(json.dumps(record, sort_keys=True, default=str))
        elif record["decision"] == "refused":
            print(f"{name}: REFUSED by {record['check']}: {record['reason']}")
        else:
            print(
                f"{name}: would issue {record['spiffe_path']} ({record['rule']}; "
                f"lifetime {record['lifetime_seconds']}s; collateral {record.get('collateral', 'none')})"
            )
    return EXIT_REFUSED if refused else EXIT_OK


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    if args.command == "check":
        policy = _load_policy(args)
        if isinstance(policy, int):
            return policy
        print(f"{args.policy}: OK (digest {policy.digest})")
        return EXIT_OK
    return _test(args)
