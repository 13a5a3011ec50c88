"""``donjon peer verify``: is the service at HOST:PORT the workload it should be?

::

    donjon peer verify HOST[:PORT] --ca steward-ca.pem [--spiffe-id ID]... [--workload-digest HEX]
                       [--claims-oid OID] [--allow-simulated] [--allow-unattested]
                       [--server-name NAME] [--timeout SECONDS] [--format text|json]
                       [--require-logged --steward URL --log-key PUB [--steward-ca PEM]]

Connects with TLS 1.3, verifies the presented chain to the Steward CA and the identity
(docs/keep.md "What a relying party checks"), and prints the claims the certificate
carries and the negotiated TLS parameters (the key-exchange group among them).
With ``--require-logged`` it also asks the Steward for the inclusion proof of the
certificate's serial and checks it against a checkpoint signed by the pinned log key,
and that the logged entry is the issuance of exactly this certificate (docs/steward.md
"The transparency log").

Exit codes: 0 verified; 1 refused (chain, SPIFFE ID, digest, simulated/unattested, not
logged); 2 usage (bad arguments, unreadable CA PEM or log key); 3 unreachable (cannot
connect, no TLS 1.3 handshake, the Steward cannot be reached) or the CA file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE, usage_error
from donjon.cli.args import Parser, examples

__all__ = ["main", "parser"]

#: A PEM file of Steward CA certificates larger than this is not one.
MAX_CA_FILE = 1 << 20
DEFAULT_PORT = 443


class _Usage(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon peer verify`` (with help and examples)."""
    p = Parser(
        prog="donjon peer",
        description="Verify, as a relying party, that a service is the attested workload it should be.\n"
        'See docs/keep.md, "What a relying party checks".',
        epilog=examples("donjon peer verify localhost:8443 --ca steward/ca.pem"),
    )
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    v = sub.add_parser(
        "verify",
        help="connect with TLS 1.3 and verify the peer's certificate and claims",
        description="Connect to HOST:PORT with TLS 1.3, verify the certificate chain to the Steward CA,\n"
        "the SPIFFE ID and the workload digest in its claims, and print the claims and the\n"
        "negotiated TLS parameters. Exit 0 verified, 1 refused (the failing check is\n"
        "printed), 2 usage, 3 unreachable.",
        epilog=examples(
            "donjon peer verify localhost:8443 --ca steward/ca.pem",
            "DIGEST=$(donjon run --print-digest --config Donjon.toml app.wasm)",
            "donjon peer verify localhost:8443 --ca steward/ca.pem \\",
            '    --spiffe-id spiffe://example.org/web --workload-digest "$DIGEST"',
            "donjon peer verify [::1]:8443 --ca steward/ca.pem --allow-simulated --format json",
        ),
    )
    v.add_argument("target", metavar="HOST[:PORT]", help=f"the peer (default port {DEFAULT_PORT}; [v6]:port)")
    v.add_argument("--ca", required=True, metavar="FILE", help="the Steward CA certificate(s), PEM")
    v.add_argument(
        "--spiffe-id", action="append", default=[], metavar="ID", help="an accepted SPIFFE ID (repeatable)"
    )
    v.add_argument(
        "--workload-digest", metavar="HEX", help="the workload digest the claims must carry (64 hex)"
    )
    v.add_argument(
        "--claims-oid",
        metavar="OID",
        help="the Steward's claims extension OID (default: recognise by content)",
    )
    v.add_argument(
        "--allow-simulated", action="store_true", help="accept identities issued on simulated TEEs"
    )
    v.add_argument(
        "--allow-unattested", action="store_true", help="UNSAFE: accept identities issued without evidence"
    )
    v.add_argument(
        "--server-name", metavar="NAME", help="SNI to send (default: HOST unless it is an address)"
    )
    v.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds for connect + handshake (default 10)",
    )
    v.add_argument(
        "--format", choices=["text", "json"], default="text", help="text, or one JSON document on stdout"
    )
    v.add_argument(
        "--require-logged",
        action="store_true",
        help="also require the Steward's inclusion proof for the certificate, under a signed checkpoint",
    )
    v.add_argument("--steward", metavar="URL", help="the Steward's base URL (with --require-logged)")
    v.add_argument(
        "--log-key",
        metavar="FILE",
        help="file holding the Steward's log verifier key, log-key.pub (with --require-logged)",
    )
    v.add_argument(
        "--steward-ca",
        metavar="FILE",
        help="PEM trust anchors for the Steward's HTTPS (default: system roots)",
    )
    return p


def _target(text: str) -> tuple[str, int]:
    host, port = text, str(DEFAULT_PORT)
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _Usage(f"bad address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _Usage(f"bad address {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text.count(":") > 1:
        raise _Usage(f"bad address {text!r}: write an IPv6 address as [addr]:port")
    if not host:
        raise _Usage(f"bad address {text!r}: empty host")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _Usage(f"bad port in {text!r}")
    return host, int(port)


def _anchors(path: str) -> list[Any]:
    from cryptography import x509

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CA_FILE + 1)
    except OSError as e:
        raise OSError(f"cannot read --ca {path}: {e.strerror or e}") from e
    if len(data) > MAX_CA_FILE:
        raise _Usage(f"--ca {path} is larger than {MAX_CA_FILE} bytes")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise _Usage(f"--ca {path} is not a PEM certificate file: {e}") from e
    return certs


def _text(session: Any, identity: Any) -> str:
    d = identity.as_dict()
    lines = [
        f"OK: {session.address} is {d['spiffe_id']}",
        f"  tls          {session.version} {session.cipher}, key exchange group {session.group or 'unknown'}",
        f"  spiffe_id    {d['spiffe_id']}",
        f"  dns_names    {', '.join(d['dns_names']) or '-'}",
        f"  ip_addresses {', '.join(d['ip_addresses']) or '-'}",
        f"  issuer       {d['issuer']}",
        f"  valid        {d['not_before']} .. {d['not_after']}",
        f"  serial       {d['serial']}",
    ]
    if identity.simulated:
        lines.append("  simulated    YES: issued on evidence from a simulated TEE, not real hardware")
    if identity.unattested:
        lines.append("  unattested   YES: issued WITHOUT attestation evidence")
    if identity.claims is None:
        lines.append("  claims       none in the certificate (neither TCG DICE nor JSON claims)")
    else:
        lines.append(f"  claims       (extension {identity.claims.oid})")
        for key in sorted(identity.claims.values):
            lines.append(f"    {key:<16} {identity.claims.values[key]}")
    return "\n".join(lines)


def _emit(fmt: str, doc: dict[str, Any], text: str, *, stream: Any = None) -> None:
    if fmt == "json":
        print(json.dumps(doc, sort_keys=True))
    else:
        print(text, file=stream or sys.stdout)


def _verify(args: argparse.Namespace) -> int:
    from donjon.peer import PeerExpectation, PeerRefused, PeerUnreachable, fetch_peer_chain, verify_peer
    from donjon.tls.errors import InvalidSpiffeId

    try:
        host, port = _target(args.target)
        digest = None
        if args.workload_digest is not None:
            try:
                digest = bytes.fromhex(args.workload_digest)
            except ValueError as e:
                raise _Usage("--workload-digest must be hex") from e
            if len(digest) != 32:
                raise _Usage("--workload-digest must be 32 bytes (64 hex digits)")
        if args.timeout <= 0 or args.timeout > 600:
            raise _Usage("--timeout must be more than 0 and at most 600 seconds")
        try:
            expectation = PeerExpectation.of(
                args.spiffe_id,
                workload_digest=digest,
                claims_oid=args.claims_oid,
                allow_simulated=args.allow_simulated,
                allow_unattested=args.allow_unattested,
            )
        except InvalidSpiffeId as e:
            raise _Usage(f"--spiffe-id: {e}") from e
        if args.claims_oid is not None:
            from donjon.oids import require_certificate_safe

            try:
                require_certificate_safe(args.claims_oid)
            except ValueError as e:
                raise _Usage(f"--claims-oid: {e}") from e
        anchors = _anchors(args.ca)
        log_key = None
        if args.require_logged:
            from donjon.cli.log import read_vkey

            if not args.steward or not args.log_key:
                raise _Usage("--require-logged needs --steward URL and --log-key FILE")
            if not args.steward.startswith(("http://", "https://")):
                raise _Usage("--steward must be an http:// or https:// URL")
            try:
                log_key = read_vkey(args.log_key)
            except ValueError as e:  # not a verifier key
                raise _Usage(str(e)) from e
        elif args.steward or args.log_key or args.steward_ca:
            raise _Usage("--steward, --log-key and --steward-ca go with --require-logged")
    except _Usage as e:
        usage_error("donjon peer verify", str(e))
        return EXIT_USAGE
    except OSError as e:
        print(f"donjon peer verify: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        session = fetch_peer_chain(host, port, timeout=args.timeout, server_name=args.server_name)
    except PeerUnreachable as e:
        doc = {"ok": False, "error": "unreachable", "address": e.address, "reason": e.reason}
        _emit(args.format, doc, f"donjon peer verify: UNREACHABLE {e}", stream=sys.stderr)
        return EXIT_OPERATIONAL
    try:
        identity = verify_peer(
            session.chain, anchors, expectation, at=datetime.now(UTC), anchors_source=args.ca
        )
    except PeerRefused as e:
        doc = {"ok": False, "error": "refused", "address": session.address, "tls": session.as_dict()}
        doc.update(e.as_dict())
        _emit(args.format, doc, f"REFUSED: {session.address}: {e}")
        return EXIT_REFUSED
    doc = {"ok": True, "tls": session.as_dict(), "peer": identity.as_dict()}
    text = _text(session, identity)
    if log_key is not None:
        from cryptography.hazmat.primitives.serialization import Encoding

        from donjon.audit import AuditRefused, LogClient, LogUnreachable, check_inclusion

        try:
            with LogClient(args.steward, ca_file=args.steward_ca, timeout=args.timeout) as client:
                answer = client.inclusion(identity.serial)
            logged = check_inclusion(
                answer,
                log_key,
                serial=identity.serial,
                certificate_der=identity.chain[0].public_bytes(Encoding.DER),
            )
        except LogUnreachable as e:
            doc = {"ok": False, "error": "unreachable", "address": e.url, "reason": e.reason}
            _emit(args.format, doc, f"donjon peer verify: UNREACHABLE Steward {e}", stream=sys.stderr)
            return EXIT_OPERATIONAL
        except AuditRefused as e:
            doc = {"ok": False, "error": "refused", "address": session.address, "tls": session.as_dict(),
                   "check": f"logged.{e.check}", "reason": e.reason}  # fmt: skip
            _emit(args.format, doc, f"REFUSED: {session.address}: logged.{e.check}: {e.reason}")
            return EXIT_REFUSED
        doc["logged"] = {
            "index": logged.index,
            "tree_size": logged.checkpoint.size,
            "root": logged.checkpoint.root.hex(),
            "origin": logged.checkpoint.origin,
        }
        text += (
            f"\n  logged       entry {logged.entry.seq} of {logged.checkpoint.size} in "
            f"{logged.checkpoint.origin} (inclusion proof verified, "
            f"root {logged.checkpoint.root.hex()[:16]}...)"
        )
    _emit(args.format, doc, text)
    return EXIT_OK


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    try:
        return _verify(args)
    except BrokenPipeError:
        return EXIT_OPERATIONAL
    except Exception as e:  # never a traceback for the user
        from donjon.cli import internal_error

        return internal_error(e)
