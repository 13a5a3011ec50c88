"""``donjon evidence``: verify or decode attestation evidence (SEV-SNP, TDX, SGX, CCA).

Thin: read the files, recognise what they are by content
(:mod:`donjon.attestation.detect`), call the library's one dispatcher
(:func:`donjon.attestation.verify.verify_evidence`) and print. Data goes to
stdout (``--format json`` for scripts), diagnostics to stderr.

Exit codes: 0 verified (or decoded, for ``show``); 1 refused, with the failing
check; 2 usage error (bad option, unrecognised collateral or roots file);
3 a file could not be read.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["main", "parser"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3

#: The evidence kinds (EvidenceKind's values; spelled out so --help needs no attestation import).
KINDS = ["snp-report", "tdx-quote", "sgx-quote", "cca-token", "azure-snp-vtpm", "azure-tdx-vtpm"]

#: Largest file the command reads (evidence, collateral or roots).
MAX_FILE_BYTES = 4 << 20


class _Usage(Exception):
    pass


class _Unreadable(Exception):
    pass


def parser() -> argparse.ArgumentParser:
    """The command line of ``donjon evidence`` and its subcommands (each with help and examples)."""
    from donjon.cli.args import Parser, examples

    parser = Parser(
        prog="donjon evidence",
        description="Verify or decode attestation evidence offline: SEV-SNP reports, TDX and SGX\n"
        "quotes, CCA tokens, Azure vTPM evidence (SEV-SNP or TDX). See docs/attestation.md.",
        epilog=examples(
            "donjon evidence verify report.bin --collateral vcek.der --collateral ask_ark_milan.pem",
            "donjon evidence show quote.dat --format json",
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    verify = sub.add_parser(
        "verify",
        help="verify evidence and print its claims",
        description="Verify evidence against pinned vendor roots, at a given time; print the verified\n"
        "claims (exit 0) or REFUSED and the failing check (exit 1). The evidence kind is\n"
        "detected; certificates, CRLs, TCB info and QE identity are recognised by content.",
        epilog=examples(
            "donjon evidence verify report.bin --collateral vcek.der --collateral ask_ark_milan.pem \\",
            "    --at 2026-01-01T00:00:00Z",
            "donjon evidence verify quote.dat --collateral tcb_info.json --collateral qe_identity.json \\",
            "    --collateral pck_chain.pem --collateral pck_crl.der --format json",
            "donjon evidence verify token.cbor --cca-platform-key cpak.pem",
            "donjon evidence verify azure-evidence.json --kind azure-snp-vtpm --roots ask_ark_milan.pem \\",
            "    --report-data 6368616c6c656e6765",
        ),
    )
    verify.add_argument(
        "file",
        help="evidence: raw binary or hex (SNP report, TDX/SGX quote, CCA token), or Azure vTPM JSON",
    )
    verify.add_argument(
        "--collateral",
        action="append",
        default=[],
        metavar="FILE",
        help="certificates, chains, CRLs, TCB info or QE identity, recognised by content (repeatable)",
    )
    verify.add_argument(
        "--roots",
        action="append",
        default=[],
        metavar="FILE",
        help="vendor root/intermediate certificates; used only if they match the pinned fingerprints",
    )
    verify.add_argument(
        "--trust-simulated",
        action="append",
        default=[],
        metavar="FILE",
        help="ALSO trust this self-signed root without a pin (a simulated vendor); claims say simulated",
    )
    verify.add_argument(
        "--at", default="now", metavar="TIME", help="verification time, ISO 8601 (default: now)"
    )
    verify.add_argument(
        "--kind",
        choices=KINDS,
        help="evidence kind (default: detected)",
    )
    verify.add_argument("--allow-debug", action="store_true", help="accept a debuggable guest/enclave")
    verify.add_argument(
        "--report-data",
        metavar="HEX",
        help="the expected 64-byte report data, in hex; for azure-*-vtpm the TPM quote's qualifying data",
    )
    verify.add_argument("--max-vmpl", type=int, default=0, metavar="N", help="SNP: highest VMPL accepted (0)")
    verify.add_argument("--product", choices=["Milan", "Genoa", "Turin"], help="SNP: required product line")
    verify.add_argument("--allow-migration-agent", action="store_true", help="SNP: accept MIGRATE_MA")
    verify.add_argument("--require-crl", action="store_true", help="SNP: refuse without the ARK's CRL")
    verify.add_argument(
        "--min-tcb", metavar="BL,TEE,SNP,UCODE[,FMC]", help="SNP: minimum TCB components, e.g. 3,0,8,115"
    )
    verify.add_argument("--allow-missing-crls", action="store_true", help="TDX/SGX: accept without CRLs")
    verify.add_argument(
        "--allow-missing-qe-identity", action="store_true", help="TDX/SGX: accept without a QE identity"
    )
    verify.add_argument(
        "--cca-platform-key",
        action="append",
        default=[],
        metavar="FILE",
        help="CCA: a pinned platform (CPAK) public key, PEM/DER SPKI or JWK (repeatable)",
    )
    verify.add_argument(
        "--format", choices=["text", "json"], default="text", help="text, or one JSON document on stdout"
    )
    show = sub.add_parser(
        "show",
        help="decode evidence without verifying it",
        description="Decode evidence and print every field. Nothing is verified.",
        epilog=examples("donjon evidence show report.bin", "donjon evidence show quote.dat --format json"),
    )
    show.add_argument(
        "file",
        help="evidence: raw binary or hex (SNP report, TDX/SGX quote, CCA token), or Azure vTPM JSON",
    )
    show.add_argument(
        "--kind",
        choices=KINDS,
        help="evidence kind (default: detected)",
    )
    show.add_argument(
        "--format", choices=["text", "json"], default="text", help="text, or one JSON document on stdout"
    )
    return parser


def _read(path: str) -> bytes:
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise _Unreadable(f"cannot read {path}: {e.strerror or e}") from e
    if len(data) > MAX_FILE_BYTES:
        raise _Unreadable(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data


def _time(text: str) -> datetime:
    if text == "now":
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as e:
        raise _Usage(f"--at: not an ISO 8601 time: {text!r}") from e
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _text(doc: Mapping[str, Any], indent: str = "") -> list[str]:
    lines: list[str] = []
    for key, value in doc.items():
        if isinstance(value, Mapping) and value:
            lines.append(f"{indent}{key}:")
            lines.extend(_text(value, indent + "  "))
        else:
            lines.append(f"{indent}{key}: {json.dumps(value) if not isinstance(value, str) else value}")
    return lines


def _emit(doc: Mapping[str, Any], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        print("\n".join(_text(doc)))


def _min_tcb(text: str | None) -> Any:
    if text is None:
        return None
    from donjon.attestation.snp import SnpTcb

    try:
        parts = [int(p, 0) for p in text.split(",")]
    except ValueError as e:
        raise _Usage(f"--min-tcb: not integers: {text!r}") from e
    if len(parts) not in (4, 5) or any(not 0 <= p <= 255 for p in parts):
        raise _Usage("--min-tcb wants BL,TEE,SNP,UCODE[,FMC], each 0..255")
    return SnpTcb(
        bootloader=parts[0],
        tee=parts[1],
        snp=parts[2],
        microcode=parts[3],
        fmc=parts[4] if len(parts) == 5 else None,
    )


def _verify(args: argparse.Namespace) -> int:
    from donjon.attestation.detect import decode_evidence, detect_evidence_kind, recognise_collateral
    from donjon.attestation.errors import AttestationError, CollateralError, MalformedEvidence
    from donjon.attestation.snp import SnpOptions
    from donjon.attestation.verify import Collateral, EvidenceKind, TrustRoots, verify_evidence

    at = _time(args.at)
    report_data = None
    if args.report_data is not None:
        try:
            report_data = bytes.fromhex(args.report_data)
        except ValueError as e:
            raise _Usage("--report-data is not hex") from e
    min_tcb = _min_tcb(args.min_tcb)
    if not 0 <= args.max_vmpl <= 3:
        # SEV-SNP ABI: VMPL is 0..3; another bound would refuse every report or mean nothing.
        raise _Usage(f"--max-vmpl must be 0..3, got {args.max_vmpl}")
    evidence_raw = _read(args.file)
    collateral = Collateral()
    try:
        for path in args.collateral:
            collateral = collateral + recognise_collateral(_read(path), source=path)
        root_certs: list[x509.Certificate] = []
        for path in args.roots:
            root_certs.extend(recognise_collateral(_read(path), source=path).certificates)
        extra: list[x509.Certificate] = []
        for path in args.trust_simulated:
            extra.extend(recognise_collateral(_read(path), source=path).certificates)
    except (CollateralError, MalformedEvidence) as e:
        raise _Usage(str(e)) from e
    roots = TrustRoots(certificates=tuple(root_certs), extra_trusted=tuple(extra))
    try:
        evidence = decode_evidence(evidence_raw)
        kind = EvidenceKind(args.kind) if args.kind else detect_evidence_kind(evidence)
        options: object | None
        if kind in (EvidenceKind.AZURE_SNP_VTPM, EvidenceKind.AZURE_TDX_VTPM):
            from donjon.attestation.azure import AzureOptions

            # The binding is in the vTPM quote; the hardware report's REPORT_DATA is the runtime claims'.
            options = AzureOptions(
                qualifying_data=report_data,
                snp=SnpOptions(
                    allow_debug=args.allow_debug,
                    max_vmpl=args.max_vmpl,
                    product=args.product,
                    allow_migration_agent=args.allow_migration_agent,
                    require_crl=args.require_crl,
                    min_tcb=min_tcb,
                ),
                tdx={
                    "allow_debug": args.allow_debug,
                    "allow_missing_crls": args.allow_missing_crls,
                    "allow_missing_qe_identity": args.allow_missing_qe_identity,
                },
            )
        elif kind is EvidenceKind.SNP_REPORT:
            options = SnpOptions(
                allow_debug=args.allow_debug,
                max_vmpl=args.max_vmpl,
                report_data=report_data,
                product=args.product,
                allow_migration_agent=args.allow_migration_agent,
                require_crl=args.require_crl,
                min_tcb=min_tcb,
            )
        elif kind is EvidenceKind.CCA_TOKEN:
            # No vendor root exists for CCA: the platform key (CPAK) is pinned by the caller.
            if not args.cca_platform_key:
                raise _Usage("a CCA token needs --cca-platform-key FILE (the pinned CPAK)")
            from donjon.attestation.cca import load_platform_key

            keys = [load_platform_key(_read(path)) for path in args.cca_platform_key]
            options = {"platform_keys": keys, "expected_challenge": report_data}
        else:
            options = {
                "allow_debug": args.allow_debug,
                "report_data": report_data,
                "allow_missing_crls": args.allow_missing_crls,
                "allow_missing_qe_identity": args.allow_missing_qe_identity,
            }
        verified = verify_evidence(kind, evidence, collateral=collateral, roots=roots, at=at, options=options)
    except AttestationError as e:
        if args.format == "json":
            _emit({"verified": False, **e.as_dict()}, "json")
        else:
            print(f"REFUSED: {e}")
        return EXIT_REFUSED
    claims = verified.claims
    doc = {
        "verified": True,
        "kind": kind.value,
        "verified_at": verified.verified_at.isoformat(),
        "evidence_sha256": verified.evidence_sha256.hex(),
        **claims.as_dict(),
    }
    if claims.simulated and args.format == "text":
        # A CCA token is "simulated" when its pinned CPAK is a published sample key (docs/attestation.md),
        # not because of --trust-simulated: name the real reason.
        why = (
            "signed by a known sample CCA platform key (anyone can make one)"
            if kind is EvidenceKind.CCA_TOKEN
            else "trusted only because of --trust-simulated"
        )
        print(f"WARNING: simulated evidence (not a TEE): {why}", file=sys.stderr)
    _emit(doc, args.format)
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from donjon.attestation.detect import decode_evidence, detect_evidence_kind
    from donjon.attestation.errors import AttestationError
    from donjon.attestation.verify import EvidenceKind

    raw = _read(args.file)
    try:
        evidence = decode_evidence(raw)
        kind = EvidenceKind(args.kind) if args.kind else detect_evidence_kind(evidence)
        decoded = _decode(kind, evidence)
    except AttestationError as e:
        print(f"REFUSED: {e}" if args.format == "text" else json.dumps({"decoded": False, **e.as_dict()}))
        return EXIT_REFUSED
    _emit({"kind": kind.value, "verified": False, **decoded}, args.format)
    return EXIT_OK


def _decode(kind: Any, evidence: bytes) -> dict[str, Any]:
    from donjon.attestation.errors import MalformedEvidence
    from donjon.attestation.verify import EvidenceKind

    if kind is EvidenceKind.SNP_REPORT:
        from donjon.attestation.snp import decode_tcb, parse_report

        report = parse_report(evidence)
        doc: dict[str, Any] = _jsonable(report)
        product = report.cpuid_product
        doc["signing_key"] = report.signing_key_name
        doc["chip_id_masked"] = report.chip_id_masked
        doc["policy_flags"] = report.policy_flags()
        doc["platform_flags"] = report.platform_flags()
        doc["product_from_cpuid"] = None if product is None else product.value
        for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
            doc[f"{name}_decoded"] = decode_tcb(getattr(report, name), product).components()
        return doc
    if kind in (EvidenceKind.AZURE_SNP_VTPM, EvidenceKind.AZURE_TDX_VTPM):
        return _decode_azure(kind, evidence)
    try:
        if kind is EvidenceKind.CCA_TOKEN:
            from donjon.attestation.cca import parse_cca_token

            return {"token": _jsonable(parse_cca_token(evidence))}
        from donjon.attestation.dcap import parse_quote

        return {"quote": _jsonable(parse_quote(evidence))}
    except ModuleNotFoundError as e:
        raise MalformedEvidence("evidence.unsupported", f"this build cannot decode {kind.value}") from e


def _decode_azure(kind: Any, evidence: bytes) -> dict[str, Any]:
    from donjon.attestation import hcl, tpm
    from donjon.attestation.azure import parse_azure_evidence
    from donjon.attestation.verify import EvidenceKind

    tee = "sev-snp" if kind is EvidenceKind.AZURE_SNP_VTPM else "tdx"
    parsed = parse_azure_evidence(evidence, tee)
    report = hcl.parse_hcl_report(parsed.hcl_report)
    quote = tpm.parse_quote(parsed.quote)
    runtime = hcl.parse_runtime_claims(report.runtime_claims)
    hardware = (
        _decode(EvidenceKind.SNP_REPORT, report.hw_report)
        if tee == "sev-snp"
        else _decode(EvidenceKind.TDX_QUOTE, parsed.td_quote or b"")
    )
    doc: dict[str, Any] = _jsonable(
        {
            "evidence_version": parsed.version,
            "hcl_report": _jsonable(report),
            "runtime_claims": {
                "sha256": report.claims_digest(),
                "key_ids": list(runtime.key_ids),
                "vm_configuration": _jsonable(runtime.vm_configuration),
                "user_data": _jsonable(runtime.user_data),
            },
            "tpm_quote": _jsonable(quote),
            "pcrs": {str(i): v.hex() for (_alg, i), v in zip(quote.selected, parsed.pcrs, strict=False)},
            "hardware": hardware,
        }
    )
    return doc


def main(argv: Sequence[str]) -> int:
    try:
        args = parser().parse_args(list(argv))
        if args.command == "verify":
            return _verify(args)
        return _show(args)
    except _Usage as e:  # (only verify's options are checked after parsing)
        from donjon.cli import usage_error

        usage_error("donjon evidence verify", str(e))
        return EXIT_USAGE
    except _Unreadable as e:
        print(f"donjon evidence: {e}", file=sys.stderr)
        return EXIT_OPERATIONAL
    except SystemExit as e:  # --help, or a usage error the parser has printed
        return e.code if isinstance(e.code, int) else EXIT_OK
    except BrokenPipeError:  # stdout closed early (| head): not an error of ours
        sys.stderr.close()
        return EXIT_OK
    except Exception as e:  # a bug of ours: one line, never a traceback for the user
        from donjon.cli import internal_error

        return internal_error(e)
