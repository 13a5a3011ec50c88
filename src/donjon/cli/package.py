"""``donjon package``: workload packages as OCI artifacts (docs/deploy.md).

``build`` a module, its config and the files it names into an OCI image layout directory;
``push`` it to a registry; ``sign`` it there with a cosign-compatible key-based signature;
``verify`` a package in a registry as ``donjon run oci://`` would; ``keygen`` a signer key pair.

Exit codes: 0 ok; 1 refused (a package that does not verify); 2 usage (bad arguments, a bad
config or reference); 3 operational (a file that cannot be read, a registry that is down or
refuses the credentials).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_USAGE
from donjon.cli.args import Parser, examples
from donjon.oci.options import REGISTRY_CA_ENV, registry_client, trusted_keys

if TYPE_CHECKING:
    from donjon.oci.artifact import Manifest
    from donjon.oci.reference import Reference
    from donjon.oci.registry import RegistryClient
    from donjon.oci.signature import PublicKey, Signature

__all__ = ["add_registry_options", "main", "parser"]


def add_registry_options(p: argparse.ArgumentParser) -> None:
    """The options every command that talks to a registry takes (``donjon run`` lists them too)."""
    p.add_argument(
        "--registry-ca",
        metavar="FILE",
        help=f"the registry's CA certificate(s), PEM (default ${REGISTRY_CA_ENV}, else the system roots)",
    )
    p.add_argument(
        "--registry-user",
        metavar="NAME",
        help="registry user name (password from $DONJON_REGISTRY_PASSWORD or --registry-password-file; "
        "default: the docker config / $REGISTRY_AUTH_FILE entry for the registry)",
    )
    p.add_argument("--registry-password-file", metavar="FILE", help="a file holding the registry password")


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="donjon package",
        description="Build, push, sign and verify workload packages: OCI artifacts holding a module, its\n"
        "config and the files it names, identified by the workload digest (docs/deploy.md).",
        epilog=examples(
            "donjon package build --config Donjon.toml app.wasm -o app.oci",
            "donjon package push app.oci registry.example:5000/team/app:v1",
        ),
    )
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    b = sub.add_parser(
        "build",
        help="build a package (an OCI image layout directory)",
        description="Build the package of MODULE with its config: an OCI image layout directory with\n"
        "an image manifest (artifactType application/vnd.donjon.workload.v1), layers for the\n"
        "module, the config and every directory or file the config names, and the workload\n"
        "digest as an annotation. Deterministic: the same inputs give the same bytes. Prints\n"
        "the manifest digest; with --push, pushes it too and prints REGISTRY/REPO@sha256:...",
        epilog=examples(
            "donjon package build --config Donjon.toml app.wasm -o app.oci",
            "donjon package build --config Donjon.toml app.wasm --push registry.example:5000/team/app:v1",
            "donjon package build --config examples/http/Donjon.toml examples/http/http.wasm -o http.oci",
            "donjon package build --config Donjon.toml app.wasm -o app.oci \\",
            "    --encrypt-to steward:app-key --key-out app.key",
        ),
    )
    b.add_argument("module", metavar="MODULE", help="the WebAssembly module (.wasm)")
    b.add_argument("--config", required=True, metavar="FILE", help="the workload config (Donjon.toml)")
    b.add_argument(
        "--encrypt-to",
        metavar="steward:NAME",
        help="encrypt the module and files (AES-256-GCM) to a content key the Steward keeps as secret NAME",
    )
    b.add_argument(
        "--key-out",
        metavar="FILE",
        help="with --encrypt-to: the content key file (32 bytes, 0600; reused if it exists) to store "
        "with 'donjon steward secret put NAME --file FILE'",
    )
    b.add_argument("-o", "--output", metavar="DIR", help="the OCI image layout directory to write")
    b.add_argument(
        "--push",
        metavar="REGISTRY/REPO:TAG",
        help="push the package straight to a registry (with or without -o)",
    )
    add_registry_options(b)

    u = sub.add_parser(
        "push",
        help="push a built package to a registry",
        description="Push the package in an OCI image layout directory to REGISTRY/REPO:TAG and print\n"
        "REGISTRY/REPO@sha256:... (the name to sign and to run).",
        epilog=examples(
            "donjon package push app.oci registry.example:5000/team/app:v1",
            "donjon package push app.oci localhost:5000/app:v1 --registry-ca ca.pem --registry-user ci",
        ),
    )
    u.add_argument("layout", metavar="LAYOUT", help="the directory 'donjon package build' wrote")
    u.add_argument("reference", metavar="REGISTRY/REPO:TAG", help="where to push it")
    add_registry_options(u)

    s = sub.add_parser(
        "sign",
        help="sign a package in a registry (cosign key-based format)",
        description="Sign the package REGISTRY/REPO@sha256:... with a key: a cosign simple-signing\n"
        "payload, stored under the tag sha256-<hex>.sig next to it (cosign's layout; other\n"
        "signers' signatures there are kept) and attached as an OCI 1.1 referrer (listed in\n"
        "the sha256-<hex> index on a registry without the referrers API). 'cosign verify\n"
        "--key KEY.pub --insecure-ignore-tlog' checks it. Prints the signer's fingerprint.",
        epilog=examples(
            "donjon package sign localhost:5000/app@sha256:0123456789abcdef0123456789abcdef"
            "0123456789abcdef0123456789abcdef --key signer.key",
        ),
    )
    s.add_argument("reference", metavar="REGISTRY/REPO@DIGEST", help="the package, by digest")
    s.add_argument(
        "--key", required=True, metavar="FILE", help="the signing key: PEM, ECDSA P-256 or Ed25519"
    )
    add_registry_options(s)

    v = sub.add_parser(
        "verify",
        help="pull and verify a package as 'donjon run oci://' would",
        description="Resolve REFERENCE to a digest, verify its signature against the trusted signer\n"
        "keys, fetch and check every layer and the workload digest, check that its config\n"
        "does not widen a run on --backend, and print the digest, the workload digest, the\n"
        "signer, the name it was signed for and whether it is encrypted. Runs nothing.",
        epilog=examples(
            "donjon package verify localhost:5000/app:v1 --trust-signer signer.pub --registry-ca ca.pem",
        ),
    )
    v.add_argument("reference", metavar="REFERENCE", help="REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...")
    v.add_argument(
        "--trust-signer",
        action="append",
        default=[],
        metavar="PUB",
        help="a trusted signer's public key, PEM (repeatable)",
    )
    v.add_argument(
        "--allow-unsigned", action="store_true", help="accept a package without a trusted signature (UNSAFE)"
    )
    v.add_argument(
        "--signed-as",
        action="append",
        default=[],
        metavar="REGISTRY/REPO",
        help="also accept a signature made for this repository (a mirror or copy; repeatable)",
    )
    v.add_argument(
        "--backend",
        default="auto",
        metavar="NAME",
        help="check the config as a run on this backend would (default auto: as on a TEE, where "
        "a package may not allow nil, unattested or simulated peers)",
    )
    add_registry_options(v)

    k = sub.add_parser(
        "keygen",
        help="make a signer key pair (ECDSA P-256, as cosign's)",
        description="Write PREFIX.key (PKCS#8 PEM, mode 0600, unencrypted: keep it safe) and PREFIX.pub\n"
        "(mode 0644), never over an existing file or through a link, and print the public\n"
        "key's fingerprint (sha256 of its SubjectPublicKeyInfo).",
        epilog=examples("donjon package keygen signer"),
    )
    k.add_argument("prefix", metavar="PREFIX", help="the key files' name without .key/.pub")
    return p


def _error(message: str) -> None:
    print(f"donjon: {message}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        return EXIT_OK if e.code == 0 else EXIT_USAGE
    from donjon.oci.errors import OciError, exit_code

    try:
        command = {"build": _build, "push": _push, "sign": _sign, "verify": _verify, "keygen": _keygen}
        return command[args.command](args)
    except OciError as e:
        _error(str(e))
        return exit_code(e)


def _client(ref: Reference, args: argparse.Namespace) -> RegistryClient:
    return registry_client(
        ref, ca=args.registry_ca, user=args.registry_user, password_file=args.registry_password_file
    )


def _build(args: argparse.Namespace) -> int:
    from donjon.config.errors import ConfigError
    from donjon.config.parse import MAX_CONFIG_BYTES, parse_config
    from donjon.oci.build import build_package
    from donjon.oci.layout import write_layout
    from donjon.runtime.errors import InvalidModule, MissingFile
    from donjon.runtime.keep import check_module_header, read_module

    if args.output is None and args.push is None:
        _error("say where the package goes: -o DIR, --push REGISTRY/REPO:TAG, or both")
        return EXIT_USAGE
    target = _tag_reference(args.push) if args.push is not None else None
    if isinstance(target, int):
        return target
    config_path = Path(args.config)
    try:
        with open(config_path, "rb") as stream:
            source = stream.read(MAX_CONFIG_BYTES + 1)
        module = read_module(Path(args.module))
    except MissingFile as e:
        _error(str(e))
        return EXIT_OPERATIONAL
    except OSError as e:
        _error(f"{args.config}: cannot read config: {e.strerror or e}")
        return EXIT_OPERATIONAL
    try:
        check_module_header(module)
        config = parse_config(source, origin=args.config).config
    except InvalidModule as e:
        _error(f"{args.module}: {e}")
        return EXIT_USAGE
    except ConfigError as e:
        _error(str(e))
        return EXIT_USAGE
    seal = None
    if args.encrypt_to is not None or args.key_out is not None:
        if args.encrypt_to is None or args.key_out is None:
            _error("--encrypt-to and --key-out go together")
            return EXIT_USAGE
        from donjon.oci.encryption import parse_key_target

        parse_key_target(args.encrypt_to)
        key = _content_key(Path(args.key_out))
        if isinstance(key, int):
            return key
        seal = (args.encrypt_to, key)
    built = build_package(module, config, source, config_path.resolve().parent, seal=seal)
    if args.output is not None:
        try:
            write_layout(Path(args.output), built.manifest, built.blobs)
        except OSError as e:
            _error(f"{args.output}: cannot write: {e.strerror or e}")
            return EXIT_OPERATIONAL
    if target is None:
        print(built.manifest.digest)
    else:
        print(_upload(target, built.manifest, built.blobs, args))
    if seal is not None:
        name = seal[0].removeprefix("steward:")
        _error(
            f"encrypted to steward:{name}: store the content key with 'donjon steward secret put {name} "
            f"--file {args.key_out} --config steward.toml' and give the workload a [[secret]] rule; "
            f"keep {args.key_out} offline for the next build (a signed update reuses it), or remove it"
        )
    return EXIT_OK


def _content_key(path: Path) -> bytes | int:
    """The content key in ``path`` (32 bytes), or a new one written there (0600, never over a link)."""
    from donjon.oci.encryption import KEY_BYTES, new_content_key

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as stream:
            key = stream.read(KEY_BYTES + 1)
        if len(key) != KEY_BYTES:
            _error(f"{path}: not a content key ({KEY_BYTES} bytes)")
            return EXIT_USAGE
        return key
    except FileNotFoundError:
        pass
    except OSError as e:
        _error(f"{path}: cannot read the content key: {e.strerror or e}")
        return EXIT_OPERATIONAL
    key = new_content_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(key)
    except OSError as e:
        _error(f"{path}: cannot write the content key: {e.strerror or e}")
        return EXIT_OPERATIONAL
    return key


def _tag_reference(text: str) -> Reference | int:
    from donjon.oci.reference import parse_reference

    ref = parse_reference(text)
    if ref.tag is None or ref.digest is not None:
        _error(f"{text}: push to a tag (REGISTRY/REPO:TAG)")
        return EXIT_USAGE
    return ref


def _upload(ref: Reference, manifest: Manifest, blobs: dict[str, bytes], args: argparse.Namespace) -> str:
    """Push the blobs, then the manifest under ``ref``'s tag; ``REGISTRY/REPO@DIGEST``."""
    from donjon.oci.artifact import MANIFEST_MEDIA_TYPE

    assert ref.tag is not None
    with _client(ref, args) as client:
        for digest, data in blobs.items():
            client.push_blob(ref, digest, data)
        digest = client.push_manifest(ref, ref.tag, manifest.raw, MANIFEST_MEDIA_TYPE)
    return f"{ref.name}@{digest}"


def _push(args: argparse.Namespace) -> int:
    from donjon.oci.layout import read_layout
    from donjon.oci.pull import Limits

    ref = _tag_reference(args.reference)
    if isinstance(ref, int):
        return ref
    manifest, blobs = read_layout(Path(args.layout), limit=Limits().layer)
    print(_upload(ref, manifest, blobs, args))
    return EXIT_OK


def _replaced(client: RegistryClient, ref: Reference, key: PublicKey, signature: Signature | None) -> bool:
    """Whether re-signing with ``key`` drops this layer of the earlier ``.sig`` manifest: it is
    the key's own earlier signature of ``ref``, or a signature whose payload is gone (it
    verifies nothing, and a registry refuses a manifest listing a blob it does not hold)."""
    from donjon.oci.errors import NotFound, SignatureError
    from donjon.oci.signature import verify_signatures

    if signature is None:
        return False  # not a cosign simple-signing layer: another tool's, kept as it is
    assert ref.digest is not None
    wanted = signature.payload
    try:
        payload = client.get_blob(ref, wanted.digest, limit=wanted.size)
    except NotFound:
        return True
    try:
        verify_signatures(ref.digest, [(signature, payload)], [key])
    except SignatureError:
        return False
    return True


def _sign(args: argparse.Namespace) -> int:
    from donjon.oci.artifact import MANIFEST_MEDIA_TYPE, Descriptor, parse_manifest
    from donjon.oci.errors import MalformedPackage, NotFound
    from donjon.oci.reference import parse_reference
    from donjon.oci.signature import (
        INDEX_MEDIA_TYPE,
        SIGNATURE_ARTIFACT_TYPE,
        add_referrer,
        fingerprint,
        load_private_key,
        make_payload,
        referrers_tag,
        sign_payload,
        signature_layers,
        signature_manifest,
        signature_tag,
    )

    ref = parse_reference(args.reference, require_digest=True)
    assert ref.digest is not None
    try:
        key = load_private_key(Path(args.key).read_bytes(), what=args.key)
    except OSError as e:
        raise MalformedPackage(args.key, f"cannot read: {e.strerror or e}") from e
    with _client(ref, args) as client:
        # Sign only what is a Donjon package (and exists): the digest is checked on the way.
        package = client.get_manifest(ref, ref.digest)
        parse_manifest(package, expected_digest=ref.digest)
        payload = make_payload(ref.name, ref.digest)
        try:
            earlier: bytes | None = client.get_manifest(ref, signature_tag(ref.digest))
        except NotFound:
            earlier = None
        # Every other signer's layer stays verbatim - with its annotations, such as cosign
        # keyless's certificate, chain and bundle - and this key's earlier one is replaced.
        kept = [
            layer
            for layer, signature in (signature_layers(earlier) if earlier is not None else ())
            if not _replaced(client, ref, key.public_key(), signature)
        ]
        subject = Descriptor(MANIFEST_MEDIA_TYPE, ref.digest, len(package))
        raw, blobs = signature_manifest([(payload, sign_payload(key, payload))], subject, kept=kept)
        for digest, data in blobs.items():
            client.push_blob(ref, digest, data)
        client.push_manifest(ref, signature_tag(ref.digest), raw, MANIFEST_MEDIA_TYPE)
        # A registry with the referrers API indexed the manifest by its subject; on one without
        # it, the signer keeps the referrers tag schema index (Distribution Specification v1.1).
        if client.get_referrers(ref, ref.digest, artifact_type=SIGNATURE_ARTIFACT_TYPE) is None:
            tag = referrers_tag(ref.digest)
            try:
                index: bytes | None = client.get_manifest(ref, tag)
            except NotFound:
                index = None
            client.push_manifest(ref, tag, add_referrer(index, raw), INDEX_MEDIA_TYPE)
    print(fingerprint(key.public_key()))
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from donjon.oci.pull import pull
    from donjon.oci.reference import parse_reference
    from donjon.oci.unpack import check_within, package_config

    ref = parse_reference(args.reference)
    if not args.trust_signer and not args.allow_unsigned:
        _error("name the trusted signers (--trust-signer KEY.pub), or --allow-unsigned")
        return EXIT_USAGE
    with _client(ref, args) as client:
        pulled = pull(
            client,
            ref,
            trusted=trusted_keys(args.trust_signer),
            allow_unsigned=args.allow_unsigned,
            warn=lambda m: _error(f"warning: {m}"),
            signed_as=[name.removeprefix("oci://") for name in args.signed_as],
        )
    check_within(package_config(pulled), args.backend)
    signature = pulled.signature
    print(f"package {pulled.reference.name}@{pulled.reference.digest}")
    print(f"workload digest {pulled.manifest.workload_digest}")
    print(f"signer {signature.signer if signature else 'NONE (unsigned)'}")
    if signature is not None:
        print(f"signed for {signature.docker_reference or '(no name)'}")
    sealed = pulled.manifest.sealed_to
    print(f"encrypted {'to ' + sealed if sealed else 'no'}")
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from donjon.oci.signature import fingerprint

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    written: list[str] = []
    try:
        # Never through a link, never over a file: O_EXCL with O_NOFOLLOW, and the modes named.
        files = ((f"{args.prefix}.key", private, 0o600), (f"{args.prefix}.pub", public, 0o644))
        for path, data, mode in files:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
    except OSError as e:
        for path in written:  # no half key pair: the .key without its .pub is no use
            with contextlib.suppress(OSError):
                os.unlink(path)
        what = e.filename or f"{args.prefix}.key"
        if isinstance(e, FileExistsError):
            _error(f"{what} exists; not overwriting a key")
        else:
            _error(f"cannot write {what}: {e.strerror or e}")
        return EXIT_OPERATIONAL
    print(fingerprint(key.public_key()))
    return EXIT_OK
