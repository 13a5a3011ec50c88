"""``donjon run``: run a wasm32-wasi command module in a Keep.

Thin: parse the command line, read the files, select the backend (``donjon.backends``, under
the config's allow-list), obtain the Keep's TLS identity (``donjon.keep.launch``: attested by
the Steward, or self-signed on ``nil`` without one), hand a :class:`~donjon.runtime.Workload`
to the runtime, and map every failure to one message on stderr and one exit code
(docs/run.md "Exit codes"). Imports are lazy: start-up time is benchmarked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import argparse
    import contextlib
    from collections.abc import Callable, Sequence

    from cryptography import x509

    from donjon.backends.base import Backend
    from donjon.config.limits import Limits
    from donjon.config.model import FileEntry, WorkloadConfig
    from donjon.keep.attest import AttestedIdentity
    from donjon.keep.launch import KeepTls, StewardSettings
    from donjon.keep.secrets import SecretSet
    from donjon.keep.steward_client import StewardEndpoint
    from donjon.oci.pull import PulledPackage
    from donjon.oci.signature import VerifiedSignature
    from donjon.runtime.keep import Workload
    from donjon.runtime.net import BoundListeners

__all__ = ["EXIT_DEADLINE", "EXIT_TRAP", "main", "parse_args", "parser"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3
#: A guest trap exits like wasmtime's CLI does on Unix: 128 + SIGABRT.
EXIT_TRAP = 134
#: A guest stopped at its ``limits.deadline``: what timeout(1) returns for a command it stopped.
EXIT_DEADLINE = 124
EXIT_INTERRUPTED = 130

#: One line under the command name in ``donjon run --help``.
DESCRIPTION = """\
Run a wasm32-wasi command module (WASI preview 1, exported _start) in a Keep
and exit with the guest's exit code. On an attested backend the Keep first
attests to its Steward, and every tls socket of its config presents the
certificate the Steward issued; on nil it runs as an ordinary process, NOT
attested, and says so."""

EPILOG = """\
Without --config, the guest gets exactly the ARGS after MODULE (argv[0] is
main.wasm) and the --env variables, as under wasmtime. With --config, arguments,
environment and files come from the config only, and the guest also gets
FD_COUNT and FD_NAMES (docs/run.md, "Workload config").

exit codes: the guest's own (0-255); 1 refused (allow-list, Steward); 2 usage,
bad config or bad module; 3 missing file, unavailable backend or unreachable
Steward; 124 past limits.deadline; 134 the guest trapped; 130 interrupted
(Ctrl-C).

examples:
  donjon run examples/hello/hello.wasm -- alice bob
  donjon run --env GREETING_NAME=keep examples/hello/hello.wasm
  donjon run --dir examples::/data examples/filereader/filereader.wasm \\
      /data/hello/hello.c
  donjon run --print-digest --config examples/http/Donjon.toml \\
      examples/http/http.wasm
  donjon run --backend sim-snp --sim-vendor sim-vendor \\
      --steward https://localhost:8443 --steward-ca ca.pem \\
      --config Donjon.toml app.wasm
  donjon run --backend sim-snp --steward https://localhost:8443 \\
      --steward-ca ca.pem --trust-signer signer.pub \\
      oci://registry.example:5000/team/app:v1"""


def parser() -> argparse.ArgumentParser:
    """``donjon run``'s options, for ``--help`` and for the test that every option is explained.

    The command line itself is read by :func:`parse_args`: everything after MODULE belongs to the
    guest verbatim, which argparse cannot promise, and argparse's import is not paid on every run
    (start-up time is benchmarked). A test checks that both know the same options.
    """
    from donjon.cli.args import Parser

    p = Parser(
        prog="donjon run",
        usage="donjon run [OPTIONS] MODULE [--] [ARGS...]",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument(
        "module",
        metavar="MODULE",
        help="the WebAssembly module (.wasm), or a package: oci://REGISTRY/REPO:TAG or @sha256:...",
    )
    p.add_argument("args", metavar="ARGS", nargs="*", help="the guest's arguments (without --config)")
    p.add_argument("--config", metavar="FILE", help="workload config (Donjon.toml, or any Enarx.toml)")
    p.add_argument(
        "--backend",
        metavar="NAME",
        help="TEE backend: auto (default: the TEE found here, else nil, which is NOT attested), "
        "snp, tdx, cca, sgx, azure-snp, azure-tdx, sim-snp, sim-tdx, nil",
    )
    p.add_argument(
        "--steward", metavar="URL", help="the Steward to attest to (default: the config's steward)"
    )
    p.add_argument(
        "--steward-ca",
        metavar="FILE",
        help="the Steward's CA certificate(s), PEM, pinned (default: the config's steward_ca)",
    )
    p.add_argument(
        "--attest-timeout",
        metavar="S",
        help="how long to retry an unreachable Steward at start, in seconds (default 30; 0: once)",
    )
    p.add_argument(
        "--steward-insecure-http",
        action="store_true",
        help="UNSAFE: allow an http:// Steward URL (a Steward behind a TLS proxy on this machine; "
        "the issued chain is still checked against --steward-ca)",
    )
    p.add_argument(
        "--sim-vendor",
        metavar="DIR",
        help="the simulated vendor shared with the Steward (sim-snp, sim-tdx; or $DONJON_SIM_VENDOR)",
    )
    p.add_argument(
        "--dir",
        metavar="HOST[::GUEST]",
        help="pre-open a host directory read-only (repeatable; fds from 3, in order)",
    )
    p.add_argument("--dir-rw", metavar="HOST[::GUEST]", help="the same, writable")
    p.add_argument(
        "--env",
        metavar="KEY[=VALUE]",
        help="set a guest environment variable (repeatable; KEY alone copies the host's)",
    )
    p.add_argument(
        "--max-memory",
        metavar="SIZE",
        help='bound the guest\'s linear memory, e.g. "256 MiB" (default 1 GiB; [limits] memory)',
    )
    p.add_argument(
        "--deadline",
        metavar="SECONDS",
        help="stop the guest after this long, exit 124 (default none; [limits] deadline)",
    )
    p.add_argument("--no-cache", action="store_true", help="do not use the compiled-module cache")
    p.add_argument(
        "--cache-dir", metavar="DIR", help="module cache directory (default $XDG_CACHE_HOME/donjon/modules)"
    )
    p.add_argument(
        "--print-digest",
        action="store_true",
        help="print the workload digest (hex) and exit without running",
    )
    p.add_argument(
        "--trust-signer",
        metavar="PUB",
        help="oci://: a trusted package signer's public key, PEM (repeatable; docs/deploy.md)",
    )
    p.add_argument(
        "--signed-as",
        metavar="REGISTRY/REPO",
        help="oci://: also accept a signature made for this repository (a mirror or copy of it; "
        "repeatable). By default only the pulled repository's own name is accepted",
    )
    p.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="oci://: run a package that no trusted signer signed (UNSAFE, said loudly)",
    )
    p.add_argument(
        "--package-cache",
        metavar="DIR",
        help="oci://: where pulled blobs are cached by digest (default $XDG_CACHE_HOME/donjon/blobs)",
    )
    p.add_argument("--no-package-cache", action="store_true", help="oci://: pull every blob afresh")
    from donjon.cli.package import add_registry_options

    add_registry_options(p)
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="report the workload digest, attestation time and cache outcome on stderr",
    )
    return p


class UsageError(Exception):
    """A bad command line."""


class Options:
    """The parsed command line (a plain class: a dataclass costs a millisecond of start-up)."""

    def __init__(self) -> None:
        self.module = ""
        self.args: list[str] = []
        self.config: str | None = None
        self.backend = "auto"
        self.steward: str | None = None
        self.steward_ca: str | None = None
        self.attest_timeout = 30.0
        self.sim_vendor: str | None = None
        self.steward_insecure_http = False
        self.dirs: list[tuple[str, bool]] = []
        self.env: list[str] = []
        self.limits: dict[str, object] = {}
        self.cache = True
        self.cache_dir: str | None = None
        self.print_digest = False
        self.verbose = False
        self.help = False
        self.trust_signers: list[str] = []
        self.signed_as: list[str] = []
        self.allow_unsigned = False
        self.package_cache: str | None = None
        self.use_package_cache = True
        self.registry_ca: str | None = None
        self.registry_user: str | None = None
        self.registry_password_file: str | None = None
        #: Set by the pull: the signed package's manifest and signature, the evidence its CSR
        #: carries (docs/deploy.md "By signer"); encoded only by a Keep that attests.
        self.package_signed: tuple[bytes, VerifiedSignature] | None = None
        #: Set by the pull of an encrypted package: opened after attestation (_unseal).
        self.sealed: PulledPackage | None = None
        #: What a package run removes when it ends (its unpacked files), set by _run.
        self.cleanup: contextlib.ExitStack | None = None


_WITH_VALUE = {
    "--config",
    "--backend",
    "--dir",
    "--dir-rw",
    "--env",
    "--cache-dir",
    "--steward",
    "--steward-ca",
    "--attest-timeout",
    "--sim-vendor",
    "--max-memory",
    "--deadline",
    "--trust-signer",
    "--signed-as",
    "--package-cache",
    "--registry-ca",
    "--registry-user",
    "--registry-password-file",
}


def parse_args(argv: list[str]) -> Options:
    """Options up to MODULE; everything after MODULE (minus a leading ``--``) goes to the guest."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            if i >= len(argv):
                raise UsageError("missing MODULE")
            opts.module = argv[i]
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            opts.module = arg
            i += 1
            break
        name, eq, inline = arg.partition("=")
        if name in _WITH_VALUE:
            if eq:
                value = inline
            else:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{name} needs a value")
                value = argv[i]
            if name == "--config":
                opts.config = value
            elif name == "--backend":
                opts.backend = value
            elif name in ("--dir", "--dir-rw"):
                opts.dirs.append((value, name == "--dir-rw"))
            elif name == "--env":
                opts.env.append(value)
            elif name == "--steward":
                opts.steward = value
            elif name == "--steward-ca":
                opts.steward_ca = value
            elif name == "--sim-vendor":
                opts.sim_vendor = value
            elif name == "--max-memory":
                opts.limits["memory"] = value
            elif name == "--deadline":
                try:
                    opts.limits["deadline"] = float(value)
                except ValueError:
                    raise UsageError(f"--deadline {value!r}: expected seconds") from None
            elif name == "--trust-signer":
                opts.trust_signers.append(value)
            elif name == "--signed-as":
                opts.signed_as.append(value.removeprefix("oci://"))
            elif name == "--package-cache":
                opts.package_cache = value
            elif name == "--registry-ca":
                opts.registry_ca = value
            elif name == "--registry-user":
                opts.registry_user = value
            elif name == "--registry-password-file":
                opts.registry_password_file = value
            elif name == "--attest-timeout":
                try:
                    opts.attest_timeout = float(value)
                except ValueError:
                    raise UsageError(f"--attest-timeout {value!r}: expected seconds") from None
                if not 0 <= opts.attest_timeout <= 3600:
                    raise UsageError("--attest-timeout: between 0 and 3600 seconds")
            else:
                opts.cache_dir = value
        elif arg == "--steward-insecure-http":
            opts.steward_insecure_http = True
        elif arg == "--no-cache":
            opts.cache = False
        elif arg == "--allow-unsigned":
            opts.allow_unsigned = True
        elif arg == "--no-package-cache":
            opts.use_package_cache = False
        elif arg == "--print-digest":
            opts.print_digest = True
        elif arg in ("-v", "--verbose"):
            opts.verbose = True
        elif arg in ("-h", "--help"):
            opts.help = True
            return opts
        else:
            raise UsageError(f"unknown option {arg!r}")
        i += 1
    if not opts.module:
        raise UsageError("missing MODULE")
    rest = argv[i:]
    opts.args = rest[1:] if rest[:1] == ["--"] else rest
    if opts.config is not None and (opts.dirs or opts.env or opts.args):
        raise UsageError("with --config, put args, env and directories in the config (not --dir/--env/ARGS)")
    if opts.config is not None and opts.limits:
        raise UsageError("with --config, put limits in its [limits] table (not --max-memory/--deadline)")
    if opts.module.startswith("oci://"):
        if opts.config is not None or opts.dirs or opts.env or opts.args:
            raise UsageError("a package (oci://) brings its own config: no --config, --dir, --env or ARGS")
        if opts.limits:
            raise UsageError(
                "a package (oci://) brings its own [limits], part of its workload digest: "
                "no --max-memory or --deadline"
            )
        if not opts.trust_signers and not opts.allow_unsigned:
            raise UsageError("oci://: name the trusted signers (--trust-signer KEY.pub), or --allow-unsigned")
    return opts


def _flag_config(opts: Options) -> WorkloadConfig:
    """The config a quick run without --config describes (it has a digest like any other)."""
    from donjon.config.model import DEFAULT_FILES, DirEntry, WorkloadConfig

    files: list[FileEntry] = list(DEFAULT_FILES)
    for spec, writable in opts.dirs:
        host, sep, guest = spec.partition("::")
        guest = guest if sep else host
        if not host or not guest:
            raise UsageError(f"--dir {spec!r}: expected HOST[::GUEST]")
        if ":" in guest or "\x00" in spec:
            raise UsageError(f"--dir {spec!r}: the guest path may not contain ':' or NUL")
        files.append(DirEntry(name=guest, path=host, guest_path=guest, writable=writable))
    env: dict[str, str] = {}
    for item in opts.env:
        key, eq, value = item.partition("=")
        if not eq:
            host_value = os.environ.get(key)
            if host_value is None:
                raise UsageError(f"--env {key}: not set in the host environment (use KEY=VALUE)")
            value = host_value
        if not key or "\x00" in item:
            raise UsageError(f"--env {item!r}: expected KEY=VALUE with a non-empty KEY")
        env[key] = value
    if any("\x00" in arg for arg in opts.args):
        raise UsageError("guest arguments may not contain NUL")
    # WASI passes arguments and the environment as UTF-8; undecodable bytes from the host's
    # command line arrive here as surrogates and are refused rather than mangled.
    for text in (*opts.args, *env, *env.values(), *(g for g, _ in opts.dirs)):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise UsageError(f"{text!r} is not valid UTF-8") from e
    # DESIGN.md "Workload config": without a config the guest gets exactly the arguments and the
    # environment given, as under wasmtime (no FD_COUNT/FD_NAMES, which only a config implies).
    return WorkloadConfig(
        args=tuple(opts.args),
        env=tuple(env.items()),
        files=tuple(files),
        fd_env=False,
        limits=_flag_limits(opts),
    )


def _flag_limits(opts: Options) -> Limits:
    """``--max-memory`` and ``--deadline`` as ``[limits]`` (the same rules; part of the digest)."""
    from donjon.config.errors import ConfigError
    from donjon.config.limits import Limits, parse_limits

    if not opts.limits:
        return Limits()
    flags = {"memory": "--max-memory", "deadline": "--deadline"}

    def fail(_kind: type[ConfigError], path: tuple[str | int, ...], reason: str) -> NoReturn:
        raise UsageError(f"{flags.get(str(path[-1]), 'limits')} {reason}")

    return parse_limits(dict(opts.limits), fail)


def _error(message: str) -> None:
    print(f"donjon: {message}", file=sys.stderr, flush=True)


def _stderr_log(name: str, level: int) -> None:
    """Log records of logger ``name`` as ``donjon: <message>`` lines on stderr (once per process)."""
    import logging

    from donjon.stderrlog import CurrentStderrHandler

    logger = logging.getLogger(name)
    if not any(getattr(h, "_donjon_run", False) for h in logger.handlers):
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("donjon: %(message)s"))
        handler._donjon_run = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def _log_connections() -> None:
    """One stderr line per TLS connection (``donjon.tls``: handshakes, failures, the Keep's identity)."""
    _stderr_log("donjon.tls", 20)  # logging.INFO


def main(argv: list[str]) -> int:
    try:
        opts = parse_args(argv)
    except UsageError as e:
        from donjon.cli import usage_error

        usage_error("donjon run", str(e))
        return EXIT_USAGE
    if opts.help:
        parser().print_help()
        return EXIT_OK
    try:
        return _run(opts)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as e:  # never a traceback for the user (set DONJON_DEBUG=1 to see one)
        from donjon.cli import internal_error

        return internal_error(e)


def _run(opts: Options) -> int:
    if opts.module.startswith("oci://"):
        import contextlib
        import tempfile

        # The package's files are unpacked here for the run's duration (removed after it); an
        # encrypted package's, decrypted after attestation, go to a memory filesystem (_unseal).
        with contextlib.ExitStack() as cleanup:
            unpacked = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="donjon-package-"))
            opts.cleanup = cleanup
            pulled = _pull_package(opts, Path(unpacked))
            if isinstance(pulled, int):
                return pulled
            return _run_workload(opts, pulled)
    from donjon.config.errors import ConfigError
    from donjon.runtime import errors

    try:
        if opts.config is not None:
            from donjon.config.parse import MAX_CONFIG_BYTES, parse_config

            config_path = Path(opts.config)
            try:
                with open(config_path, "rb") as stream:
                    source = stream.read(MAX_CONFIG_BYTES + 1)  # parse_config refuses anything larger
            except FileNotFoundError:
                _error(f"{opts.config}: no such config file")
                return EXIT_OPERATIONAL
            except OSError as e:
                _error(f"{opts.config}: cannot read config: {e.strerror or e}")
                return EXIT_OPERATIONAL
            parsed = parse_config(source, origin=opts.config)
            for warning in parsed.warnings:
                _error(f"warning: {warning}")
            config = parsed.config
            base_dir = config_path.resolve().parent
        else:
            config = _flag_config(opts)
            base_dir = Path.cwd()
    except ConfigError as e:
        _error(str(e))
        return EXIT_USAGE
    except UsageError as e:
        from donjon.cli import usage_error

        usage_error("donjon run", str(e))
        return EXIT_USAGE

    from donjon.runtime.keep import Workload, check_module_header, read_module

    try:
        module = read_module(Path(opts.module))
        # A text or ELF file given by mistake is named as such, before a Keep attests for it.
        check_module_header(module)
    except errors.MissingFile as e:
        _error(str(e))
        return EXIT_OPERATIONAL
    except errors.InvalidModule as e:
        _error(f"{opts.module}: {e}")
        return EXIT_USAGE
    return _run_workload(opts, Workload(module=module, config=config, base_dir=base_dir))


def _pull_package(opts: Options, root: Path) -> Workload | int:
    """The workload of the package ``opts.module`` names, pulled, verified and unpacked under ``root``;
    or the exit code of a failure (docs/deploy.md, "What donjon run oci:// checks")."""
    from donjon.oci.errors import OciError, exit_code
    from donjon.oci.options import registry_client, trusted_keys
    from donjon.oci.pull import Limits, pull
    from donjon.oci.reference import parse_reference
    from donjon.oci.unpack import check_within, package_config, unpack_trees
    from donjon.runtime.keep import Workload, check_module_header

    try:
        ref = parse_reference(opts.module)
        cache = None
        if opts.use_package_cache:
            from donjon.oci.cache import BlobCache, default_cache_dir, max_bytes_from_env

            try:
                bound = max_bytes_from_env()
            except ValueError as e:
                _error(str(e))
                return EXIT_USAGE
            cache = BlobCache(
                Path(opts.package_cache) if opts.package_cache else default_cache_dir(), max_bytes=bound
            )
        limits = Limits()
        with registry_client(
            ref, ca=opts.registry_ca, user=opts.registry_user, password_file=opts.registry_password_file
        ) as client:
            pulled = pull(
                client,
                ref,
                trusted=trusted_keys(opts.trust_signers),
                allow_unsigned=opts.allow_unsigned,
                cache=cache,
                limits=limits,
                warn=lambda m: _error(f"warning: {m}"),
                signed_as=opts.signed_as,
            )
        config = package_config(pulled)
        check_within(config, opts.backend)
        if pulled.manifest.sealed_to is None:
            unpack_trees(config, pulled.trees, root, limit=limits.total)
    except OciError as e:
        _error(str(e))
        return exit_code(e)
    from donjon.runtime import errors

    if pulled.manifest.sealed_to is None:
        try:
            check_module_header(pulled.module)
        except errors.InvalidModule as e:
            _error(f"{opts.module}: {e}")
            return EXIT_REFUSED
    signature = pulled.signature
    if signature is not None and signature.key is not None:
        opts.package_signed = (pulled.manifest.raw, signature)
    signer = signature.signer if signature is not None else "NOBODY (unsigned)"
    sealed = pulled.manifest.sealed_to
    _error(
        f"package {pulled.reference.name}@{pulled.reference.digest}, signed by {signer}"
        + (f", encrypted (the key is Steward secret {sealed}, released after attestation)" if sealed else "")
    )
    # The module's SHA-256 is known: its layer digest (checked on the pull) or, sealed, the plaintext
    # digest package_config checked against the manifest. Not hashing 5 MB again is measurable.
    module_sha256 = bytes.fromhex(pulled.manifest.module.plaintext_digest.removeprefix("sha256:"))
    if sealed is not None:
        # Attest with the workload digest of the plaintext; the module itself is opened only
        # after the Steward releases the key (_unseal checks it against this digest).
        opts.sealed = pulled
        return Workload(module=b"", config=config, base_dir=root, module_sha256=module_sha256)
    return Workload(module=pulled.module, config=config, base_dir=root, module_sha256=module_sha256)


def _package_evidence(opts: Options) -> dict[str, bytes] | None:
    """The attestor option carrying the signed package's evidence for the CSR, if a package was
    pulled signed (encoded here, not at the pull: a nil Keep never needs the DER encoder)."""
    if opts.package_signed is None:
        return None
    from donjon.oci.admission import encode_package_evidence

    manifest, signature = opts.package_signed
    assert signature.key is not None
    evidence = encode_package_evidence(manifest, signature.payload, signature.signature, signature.key)
    return {"package": evidence}


def _unseal(opts: Options, workload: Workload, keep_tls: KeepTls | None) -> Workload | int:
    """Open an encrypted package with the content key the Steward releases to this attested Keep
    (docs/deploy.md "Encrypted packages"): the workload to run, or the exit code of a failure.

    The module is decrypted in memory; the files, which the guest opens by path, onto a
    memory-backed filesystem (:mod:`donjon.oci.memdir`), never a disk.
    """
    import dataclasses

    from donjon.oci.errors import KeyMismatch, OciError, exit_code
    from donjon.oci.unpack import unpack_trees, unseal
    from donjon.runtime import errors
    from donjon.runtime.keep import check_module_header

    pulled = opts.sealed
    assert pulled is not None and pulled.manifest.sealed_to is not None
    name = pulled.manifest.sealed_to
    attested = keep_tls.attested if keep_tls is not None else None
    if keep_tls is None or attested is None:
        _error(
            "an encrypted package needs a Steward to release its key to an attested Keep "
            "(--steward and --steward-ca); nothing decrypted, serving nothing"
        )
        return EXIT_REFUSED
    root = workload.base_dir
    if pulled.trees:
        place = _plaintext_root(opts)
        if isinstance(place, int):
            return place
        root = place
    key = _content_key(name, attested, keep_tls.steward_ca)
    if isinstance(key, int):
        return key
    try:
        opened = unseal(pulled, key)
        unpack_trees(workload.config, opened.trees, root, limit=sum(len(t.blob) for t in opened.trees) + 1)
        check_module_header(opened.module)
    except KeyMismatch as e:
        # Exit 1, not 3: the layers are the signed ones, so the released key is wrong - a refusal
        # that no retry mends (docs/deploy.md "Encrypted packages").
        _error(
            f"{e} (store the key file of the package's build as secret {name}); "
            "nothing decrypted, serving nothing"
        )
        return EXIT_REFUSED
    except OciError as e:
        _error(f"{e}; serving nothing")
        return exit_code(e)
    except errors.InvalidModule as e:
        _error(f"{opts.module}: {e}; serving nothing")
        return EXIT_REFUSED
    where = f", its files in {root} (memory, removed after the run)" if pulled.trees else ""
    _error(f"package decrypted with Steward secret {name}: the module in memory{where}")
    return dataclasses.replace(workload, module=opened.module, base_dir=root)


def _plaintext_root(opts: Options) -> Path | int:
    """A new directory on a memory-backed filesystem for an encrypted package's files, removed
    when the run ends; or the exit code when there is no such filesystem (nothing decrypted)."""
    import tempfile

    from donjon.oci.memdir import find_memory_dir

    assert opts.cleanup is not None
    found = find_memory_dir()
    if found is None:
        _error(
            "an encrypted package's files are decrypted only onto a memory-backed filesystem "
            "(tmpfs at $XDG_RUNTIME_DIR or /dev/shm), and there is none here; nothing decrypted, "
            "serving nothing"
        )
        return EXIT_OPERATIONAL
    place, kind = found
    try:
        made = opts.cleanup.enter_context(tempfile.TemporaryDirectory(prefix="donjon-package-", dir=place))
    except OSError as e:
        _error(f"cannot make a directory in {place} ({kind}): {e.strerror or e}; nothing decrypted")
        return EXIT_OPERATIONAL
    return Path(made)


def _content_key(
    name: str, attested: AttestedIdentity, steward_ca: Sequence[x509.Certificate]
) -> bytes | int:
    """Steward secret ``name`` (the content key), fetched over mutual TLS with the certificate just
    issued (``donjon.keep.secrets``, as for a config's ``[[secrets]]``)."""
    from donjon.keep.errors import KeepError
    from donjon.keep.secrets import SecretRefused, fetch_secrets

    if not attested.steward_url.startswith("https:"):
        _error("an encrypted package needs an https:// Steward (mutual TLS); nothing decrypted")
        return EXIT_USAGE
    try:
        released, _ = fetch_secrets(
            _secret_endpoint(attested.steward_url, steward_ca), attested.credentials(), [name]
        )
    except SecretRefused as e:
        _error(f"the package key: {e}; nothing decrypted, serving nothing")
        return EXIT_REFUSED
    except (KeepError, ValueError, OSError) as e:
        _error(f"cannot fetch the package key: {e}; nothing decrypted, serving nothing")
        return EXIT_OPERATIONAL
    # fetch_secrets raises for a required secret it does not release: it is here.
    value: bytes = released[name].value
    return value


def _run_workload(opts: Options, workload: Workload) -> int:
    """Select the backend, bind, attest and run ``workload`` (from a file or a package)."""
    from donjon.runtime import errors

    config, base_dir = workload.config, workload.base_dir
    if opts.print_digest:  # needs no backend: e.g. to write a Steward policy on another machine
        print(workload.digest.hex())
        return EXIT_OK

    selected = _select_backend(opts, config)
    if isinstance(selected, int):
        return selected
    backend, auto_nil = selected
    if opts.module.startswith("oci://") and not backend.attested and opts.backend != "nil":
        # A package from a registry never falls back to an unattested run by itself.
        _error("refused: a package runs on nil only with --backend nil (no TEE was found here)")
        return EXIT_REFUSED
    if opts.verbose:
        _error(f"workload digest {workload.digest.hex()}")

    # Bind before attesting: a port clash fails now, in milliseconds, and costs no certificate.
    # Nothing is accepted before the Keep has its identity (a refused Keep serves nothing).
    from donjon.runtime.net import bind_listeners

    try:
        bound = bind_listeners(config)
    except errors.SocketUnavailable as e:
        _error(str(e))
        return EXIT_OPERATIONAL
    try:
        secrets = None
        if config.secrets:
            from donjon.keep.secrets import SecretSet

            secrets = SecretSet()
        keep_tls = _identity(opts, config, base_dir, backend, workload, secrets)
        if isinstance(keep_tls, int):
            return keep_tls
        try:
            if opts.sealed is not None:
                opened = _unseal(opts, workload, keep_tls)
                if isinstance(opened, int):
                    return opened
                workload = opened
            if secrets is not None:
                code = _first_secrets(config, keep_tls, secrets)
                if code is not None:
                    return code
            return _execute(opts, workload, backend, auto_nil, keep_tls, bound, secrets)
        finally:
            if keep_tls is not None:
                keep_tls.close()
    finally:
        bound.close()


def _execute(
    opts: Options,
    workload: Workload,
    backend: Backend,
    auto_nil: bool,
    keep_tls: KeepTls | None,
    bound: BoundListeners,
    secrets: SecretSet | None = None,
) -> int:
    """Compile and run the guest with the Keep's identity: the guest's exit code, or Donjon's."""
    from donjon.runtime import errors
    from donjon.runtime.keep import RunReport, run_workload
    from donjon.runtime.net import has_sockets

    config = workload.config

    cache = None
    # DESIGN.md threat model: the cache is trusted code. Attested backends use it only from an
    # explicitly given directory (which must be on the measured, integrity-protected filesystem).
    if opts.cache and opts.sealed is not None:
        # The compiled module is the decrypted code, as machine code: it never goes to a disk.
        if opts.cache_dir is not None:
            _error("warning: module cache off for an encrypted package (its compiled code is plaintext)")
    elif opts.cache and backend.attested and opts.cache_dir is None:
        _error("warning: module cache off for an attested backend (use --cache-dir on measured storage)")
    elif opts.cache:
        from donjon.runtime.cache import ModuleCache

        try:
            cache = ModuleCache.open(
                Path(opts.cache_dir) if opts.cache_dir else None, warn=lambda m: _error(f"warning: {m}")
            )
        except errors.CacheUnavailable as e:
            _error(f"warning: module cache disabled: {e}")

    from donjon.wasi import GuestTrap, WasiError
    from donjon.wasi.errors import InvalidGuestSpec

    report = RunReport()
    if has_sockets(config):
        _log_connections()
    saved_sigint: list[object] = []

    def before_start() -> None:
        if opts.verbose:
            _error(f"module cache: {report.cache.value}")
        if not backend.attested:
            why = " (auto: no TEE found here; see 'donjon platform info')" if auto_nil else ""
            _error(
                f"warning: backend {backend.name!r}: no TEE, no evidence - this workload is NOT attested"
                + why
            )
        for address in report.listening:
            _error(f"listening on {address}")
        sys.stdout.flush()
        sys.stderr.flush()
        # Python's SIGINT handler only runs between bytecodes, never inside compiled wasm: a
        # guest in a loop would ignore Ctrl-C. While the guest runs, Ctrl-C kills the process
        # like any native program (exit status 130 from the shell), as under wasmtime's CLI.
        import contextlib
        import signal

        # ValueError: not the main thread (a test's), whose signals are not ours to change.
        with contextlib.suppress(ValueError):
            saved_sigint.append(signal.signal(signal.SIGINT, signal.SIG_DFL))

    try:
        code = run_workload(
            workload,
            backend,
            cache=cache,
            report=report,
            before_start=before_start,
            identity=keep_tls.identity if keep_tls is not None else None,
            steward_ca=keep_tls.steward_ca if keep_tls is not None else (),
            bound=bound,
            secrets=secrets,
        )
    except errors.BackendRefused as e:
        _error(str(e))
        return EXIT_REFUSED
    except (errors.MissingFile, errors.Unsupported, errors.SocketUnavailable) as e:
        _error(str(e))
        return EXIT_OPERATIONAL
    except (errors.InvalidModule, errors.LimitExceeded) as e:
        _error(f"{opts.module}: {e}")
        return EXIT_USAGE
    except errors.DeadlineExceeded as e:
        sys.stdout.flush()
        _error(str(e))
        return EXIT_DEADLINE
    except GuestTrap as e:
        sys.stdout.flush()
        _error(f"guest trapped: {str(e).rstrip()}")
        return EXIT_TRAP
    except InvalidGuestSpec as e:  # arguments or environment beyond the host's limits
        _error(f"cannot give the guest what the config asks for: {e}")
        return EXIT_USAGE
    except WasiError as e:  # e.g. a pre-opened directory that cannot be opened
        _error(f"cannot run the guest: {e}")
        return EXIT_OPERATIONAL
    finally:
        if saved_sigint:
            import signal

            signal.signal(signal.SIGINT, saved_sigint[0])  # type: ignore[arg-type]
        if cache is not None:
            cache.close()
    # The OS keeps only the low 8 bits of an exit status; a guest code outside 0-255 must
    # not wrap around to 0 (success), so it becomes 1.
    return code if 0 <= code <= 255 else 1


def _select_backend(opts: Options, config: WorkloadConfig) -> tuple[Backend, bool] | int:
    """The backend (and whether ``auto`` fell back to ``nil``), or the exit code of a failure."""
    from donjon.backends.errors import BackendError, BackendNotAllowed, UnknownBackend

    allowed = config.backends
    permitted = allowed is None or "nil" in allowed
    if opts.backend == "nil" and permitted:
        from donjon.backends.nil import NilBackend

        return NilBackend(), False
    if opts.backend == "auto" and permitted and not _tee_interfaces():
        # What select_backend("auto") would conclude after probing every attested backend: none
        # has its kernel interface here. Decided without importing them (start-up time).
        from donjon.backends.nil import NilBackend

        return NilBackend(), True
    from donjon.backends.registry import create_backend, select_backend
    from donjon.backends.sim import SIM_VENDOR_ENV

    sim_dir = opts.sim_vendor or os.environ.get(SIM_VENDOR_ENV) or None
    fallback: list[str] = []

    def factory(name: str) -> Backend:
        return create_backend(name, sim_vendor_dir=sim_dir)

    try:
        backend = select_backend(opts.backend, allowed, factory=factory, warn=fallback.append)
    except UnknownBackend as e:
        _error(f"backend {e.backend!r}: {e.reason}")
        return EXIT_USAGE
    except BackendNotAllowed as e:
        _error(f"backend {e.backend!r} refused: {e.reason}")
        return EXIT_REFUSED
    except BackendError as e:
        _error(f"backend {e.backend!r} is not available: {e.reason}" + (f" ({e.fix})" if e.fix else ""))
        return EXIT_OPERATIONAL
    return backend, opts.backend == "auto" and not backend.attested


def _tee_interfaces() -> bool:
    """Whether any attested backend's kernel interface exists (configfs-tsm reports, Gramine's
    ``/dev/attestation``): donjon.backends.platform.PlatformRoots' defaults."""
    return os.path.exists("/sys/kernel/config/tsm/report") or os.path.exists("/dev/attestation")


def _identity(
    opts: Options,
    config: WorkloadConfig,
    base_dir: Path,
    backend: Backend,
    workload: Workload,
    secrets: SecretSet | None = None,
) -> KeepTls | int | None:
    """The Keep's TLS identity (``None``: nil without a Steward, the runtime makes a self-signed
    one if a socket needs it), or the exit code of a failure (one line on stderr)."""
    url = opts.steward or config.steward
    ca_given = opts.steward_ca is not None or config.steward_ca is not None
    if not backend.attested and (url is None or not ca_given):
        if url is not None:
            # An Enarx.toml names its Steward without a CA to pin; on nil that must still run (the
            # self-signed identity, and its warnings, are what nil always had).
            _error(f"warning: no Steward CA to pin (steward_ca / --steward-ca): not asking {url}")
        return None
    _log_keep()
    from donjon.keep.attest import RetryPolicy
    from donjon.keep.errors import KeepError
    from donjon.keep.launch import (
        LaunchError,
        StewardRequired,
        describe,
        exit_code,
        launch_identity,
        steward_settings,
    )

    if opts.steward_ca is not None:
        ca_path: str | None = opts.steward_ca
        ca_base = Path.cwd()
    else:
        ca_path, ca_base = config.steward_ca, base_dir
    try:
        if url is None:
            raise StewardRequired(
                backend.name, 'no Steward URL (steward = "https://..." in the config, or --steward URL)'
            )
        settings = steward_settings(
            url,
            ca_path,
            base_dir=ca_base,
            retry=RetryPolicy(total=opts.attest_timeout),
            allow_insecure_http=opts.steward_insecure_http,
        )
        keep_tls = launch_identity(
            backend,
            workload.digest,
            settings,
            warn=lambda m: _error(f"warning: {m}"),
            on_renewed=_renewed
            if secrets is None or settings is None
            else _renewed_with(config, settings, secrets),
            on_expired=_expired,
            attestor_options=_package_evidence(opts),
        )
    except (LaunchError, KeepError) as e:
        _error(describe(e) + _sim_vendor_hint(e, backend))
        return exit_code(e)
    attested = keep_tls.attested
    if attested is not None:
        marks = " [SIMULATED TEE]" if attested.simulated else ""
        marks += " [UNATTESTED]" if attested.unattested else ""
        _error(
            f"attested by the Steward at {attested.steward_url}: {attested.spiffe_id}{marks}, "
            f"serial {attested.serial}, until {attested.not_after.isoformat()}"
        )
        if opts.verbose:
            attest_ms = keep_tls.timings.get("attest", 0.0) * 1000
            evidence_ms = keep_tls.timings.get("evidence", 0.0) * 1000
            _error(f"attestation took {attest_ms:.1f} ms (evidence {evidence_ms:.1f} ms; key, CSR, Steward)")
    return keep_tls


def _sim_vendor_hint(error: BaseException, backend: Backend) -> str:
    """What fixes a simulated Keep whose vendor root the Steward does not trust (or ``""``)."""
    from donjon.keep.errors import AttestationRefused

    if not (
        backend.simulated
        and isinstance(error, AttestationRefused)
        and error.check.endswith(("chain.root", "root_pin", "untrusted_root"))
    ):
        return ""
    where = getattr(backend, "vendor_dir", None)
    if where is None:
        return (
            f". This {backend.name} Keep signed with a simulated vendor of its own: give it the one the "
            "Steward trusts with --sim-vendor DIR (or DONJON_SIM_VENDOR=DIR), DIR being the sim-vendor "
            "folder that 'donjon steward init --simulated' made"
        )
    return (
        f". The simulated vendor in {where} is not one the Steward trusts: give --sim-vendor the "
        "sim-vendor folder that 'donjon steward init --simulated' made for that Steward"
    )


def _secret_endpoint(url: str, ca: Sequence[x509.Certificate]) -> StewardEndpoint:
    from donjon.keep.steward_client import StewardEndpoint

    return StewardEndpoint(url=url, ca=tuple(ca))


def _first_secrets(config: WorkloadConfig, keep_tls: KeepTls | None, secrets: SecretSet) -> int | None:
    """Fetch the config's ``[[secrets]]`` with the certificate just issued (docs/secrets.md); the exit
    code of a failure (one line on stderr), or ``None`` when the guest may start."""
    from donjon.keep.errors import KeepError
    from donjon.keep.secrets import SecretRefused, SecretRequest, fetch_secrets

    attested = keep_tls.attested if keep_tls is not None else None
    if keep_tls is None or attested is None:
        _error(
            "the config declares [[secrets]]: they come only from a Steward, over mutual TLS with the "
            "certificate it issued (steward = and steward_ca in the config); serving nothing"
        )
        return EXIT_USAGE
    if not attested.steward_url.startswith("https:"):
        _error("secrets need an https:// Steward (mutual TLS); serving nothing")
        return EXIT_USAGE
    wanted = [SecretRequest(s.name, s.optional) for s in config.secrets]
    try:
        released, refused = fetch_secrets(
            _secret_endpoint(attested.steward_url, keep_tls.steward_ca), attested.credentials(), wanted
        )
    except SecretRefused as e:
        _error(f"{e}; serving nothing")
        return EXIT_REFUSED
    except (KeepError, ValueError, OSError) as e:
        _error(f"cannot fetch the workload's secrets: {e}; serving nothing")
        return EXIT_OPERATIONAL
    for name, why in refused.items():
        _error(f"warning: optional secret {name} refused ({why.check}: {why.reason}); starting without it")
    secrets.replace(released)
    if released:
        _error(f"secrets fetched: {secrets.summary()}")
    return None


def _renewed_with(
    config: WorkloadConfig, settings: StewardSettings, secrets: SecretSet
) -> Callable[[AttestedIdentity], None]:
    """After each renewal, fetch the secrets again with the new certificate (a rotated one appears)."""

    def renewed(identity: AttestedIdentity) -> None:
        from donjon.keep.errors import KeepError
        from donjon.keep.secrets import SecretRequest, fetch_secrets

        _renewed(identity)
        wanted = [SecretRequest(s.name, True) for s in config.secrets]
        try:
            released, refused = fetch_secrets(
                _secret_endpoint(identity.steward_url, settings.ca), identity.credentials(), wanted
            )
        except (KeepError, ValueError, OSError) as e:
            # The Steward is unreachable: keep the values held; the next renewal tries again.
            _error(f"warning: secrets not refreshed ({e}); the guest keeps the values it has")
            return
        for name, why in refused.items():
            # The Steward says no now (policy changed, secret deleted): the value is withdrawn.
            _error(f"warning: secret {name} withdrawn at renewal: {why.check}: {why.reason}")
        previous = secrets.current()
        secrets.replace(released)
        changed = [n for n, s in released.items() if n not in previous or previous[n].version != s.version]
        if changed:
            _error(f"secrets refreshed: {secrets.summary()}")

    return renewed


def _renewed(identity: AttestedIdentity) -> None:
    _error(
        f"identity renewed: {identity.spiffe_id}, serial {identity.serial}, "
        f"until {identity.not_after.isoformat()}"
    )


def _expired(identity: AttestedIdentity) -> None:
    _error(
        f"warning: the certificate (serial {identity.serial}) EXPIRED without renewal: new TLS "
        "connections are refused until the Steward issues a new one"
    )


def _log_keep() -> None:
    """The attestation's warnings (retries, renewal failures) as ``donjon: `` lines on stderr."""
    _stderr_log("donjon.keep", 30)  # logging.WARNING
