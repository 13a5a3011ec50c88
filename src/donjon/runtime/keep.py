"""Run one workload in a Keep: config -> digest -> backend -> compiled module -> WASI -> exit code.

For the ``nil`` backend there is no attestation step; the digest is still computed so
every run has the identity later backends bind into their evidence.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.config.digest import module_digest, workload_digest
from donjon.config.model import ConnectEntry, DirEntry, ListenEntry, StdioEntry, WorkloadConfig
from donjon.runtime.cache import CacheOutcome, ModuleCache
from donjon.runtime.engine import EngineSettings
from donjon.runtime.errors import (
    BackendRefused,
    DeadlineExceeded,
    InvalidModule,
    LimitExceeded,
    MissingFile,
    Unsupported,
)
from donjon.runtime.limits import (
    describe_limits,
    engine_settings,
    limit_exceeded,
    limit_store,
    refused_feature,
)

if TYPE_CHECKING:
    import wasmtime
    from cryptography import x509

    from donjon.backends.base import Backend
    from donjon.keep.secrets import SecretSet
    from donjon.runtime.net import BoundListeners
    from donjon.tls import Identity, Listener, Stream
    from donjon.wasi import GuestFile, GuestSpec

__all__ = [
    "MAX_MODULE_BYTES",
    "RunReport",
    "Workload",
    "check_module_header",
    "guest_spec",
    "load_module",
    "read_module",
    "run_workload",
]

#: Upper bound on a module file (resvg.wasm, a large real program, is 4.4 MB).
MAX_MODULE_BYTES = 512 << 20


@dataclass(frozen=True)
class Workload:
    """A module and its config; ``base_dir`` is where relative host paths in the config resolve."""

    module: bytes
    config: WorkloadConfig
    base_dir: Path
    module_sha256: bytes = field(default=b"")

    def __post_init__(self) -> None:
        if not self.module_sha256:
            object.__setattr__(self, "module_sha256", module_digest(self.module))

    @property
    def digest(self) -> bytes:
        return workload_digest(self.module, self.config, module_sha256=self.module_sha256)


class RunReport:
    """What happened, for tests and ``--verbose``-style reporting (filled in by :func:`run_workload`)."""

    def __init__(self) -> None:
        self.cache = CacheOutcome.DISABLED
        self.exit_code: int | None = None
        #: ``"<prot> <address>"`` of each listening socket, known before the guest starts.
        self.listening: list[str] = []


def read_module(path: Path) -> bytes:
    """The module file's bytes; :class:`MissingFile` when absent, unreadable or too large."""
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_MODULE_BYTES:
                raise MissingFile(str(path), f"is {size} bytes, more than the {MAX_MODULE_BYTES}-byte limit")
            # One byte past the limit: a file that grew after fstat is caught here too.
            data = stream.read(MAX_MODULE_BYTES + 1)
            if len(data) > MAX_MODULE_BYTES:
                raise MissingFile(str(path), f"is more than the {MAX_MODULE_BYTES}-byte limit")
    except IsADirectoryError as e:
        raise MissingFile(str(path), "is a directory, not a module") from e
    except FileNotFoundError as e:
        raise MissingFile(str(path), "no such file") from e
    except OSError as e:
        raise MissingFile(str(path), e.strerror or str(e)) from e
    return data


#: The binary format's magic (WebAssembly Core Specification, 5.5.16 "Modules": ``\0asm``).
WASM_MAGIC = b"\0asm"

#: What other files a user may give by mistake start with, to name them in the error.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "an ELF executable or library"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O universal binary or a Java class"),
    (b"#!", "a script"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip file"),
)


#: How the start of a file is shown in the error: printable ASCII as is, the rest escaped.
_SHOWN = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x22: '\\"', 0x5C: "\\\\"}


def check_module_header(module: bytes) -> None:
    """Refuse bytes that are neither a binary module nor WebAssembly text, before anything runs.

    Only the start is looked at (the module is validated when it is compiled): a text or ELF
    file given by mistake is named as such (:class:`InvalidModule`), instead of wasmtime's
    text parser complaining about its first character, and before a Keep attests for it.
    """
    if module.startswith(WASM_MAGIC) or _looks_like_text_format(module):
        return
    raise InvalidModule(_not_a_module(module))


def _looks_like_text_format(module: bytes) -> bool:
    # WebAssembly text (which wasmtime also compiles) starts, after white space, with a
    # parenthesis or a comment (";;" or "(;"): WebAssembly Core Specification, 6.2 "Lexical Format".
    return module[:4096].lstrip().startswith((b"(", b";;"))


def _not_a_module(module: bytes) -> str:
    if not module:
        return "not a WebAssembly module (the file is empty)"
    kind = next((what for magic, what in _OTHER_MAGIC if module.startswith(magic)), None)
    if kind is None:
        try:
            module[:4096].decode("utf-8")
            kind = "text"
        except UnicodeDecodeError as e:
            kind = "text" if e.start > 4090 else None
    # Enough to recognise a magic number, or a line of text.
    head = module[: 16 if kind in ("text", "a script") else 8]
    shown = "".join(_SHOWN.get(b) or (chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}") for b in head)
    what = f", {kind}" if kind else ""
    return (
        f'not a WebAssembly module (starts with "{shown}"{what}; a module starts with "\\0asm", '
        'or "(module" in the text format)'
    )


def guest_spec(
    config: WorkloadConfig,
    base_dir: Path,
    stdio_fds: tuple[int, int, int] = (0, 1, 2),
    sockets: Mapping[int, Listener | Stream] | None = None,
    secrets: SecretSet | None = None,
) -> GuestSpec:
    """The guest's argv, environment and fd table; resolves and checks pre-opened directories.

    ``sockets`` holds the already opened socket of each ``listen``/``connect`` entry, by index
    (:func:`donjon.runtime.net.open_sockets`); a socket entry without one is :class:`Unsupported`.
    ``secrets`` holds the values fetched for the config's ``[[secrets]]``: the guest sees them in
    a read-only in-memory directory at ``secrets_dir`` (fd :attr:`WorkloadConfig.secrets_fd`),
    and in the environment variables the config names.
    """
    from donjon.wasi import ConnectedSocket, GuestSpec, ListenSocket, MemoryDir, PreopenDir, Stdio

    files: list[GuestFile] = []
    env = list(config.guest_env())
    if config.secrets:
        if secrets is None:
            raise Unsupported("the config declares [[secrets]] but none were fetched (a Steward gives them)")
        held = secrets.current()
        for wanted in config.secrets:
            if wanted.env is None or wanted.name not in held:
                continue
            try:
                text = held[wanted.name].value.decode("utf-8")
            except UnicodeDecodeError:
                text = "\0"
            if "\0" in text:
                raise Unsupported(
                    f"secret {wanted.name}: env = {wanted.env!r} needs UTF-8 text without NUL; "
                    "read it from the secrets directory instead"
                )
            env.append((wanted.env, text))
    for index, entry in enumerate(config.files):
        if isinstance(entry, StdioEntry):
            files.append(Stdio(entry.kind))
        elif isinstance(entry, DirEntry):
            host = base_dir / entry.path
            try:
                resolved = host.resolve(strict=True)
            except (OSError, RuntimeError) as e:
                raise MissingFile(str(host), f"no such directory (files[{index}].path)") from e
            if not resolved.is_dir():
                raise MissingFile(str(host), f"is not a directory (files[{index}].path)")
            files.append(PreopenDir(resolved, entry.guest_path, entry.writable))
        elif isinstance(entry, ListenEntry | ConnectEntry):
            from donjon.tls import Listener  # only networked workloads pay for importing OpenSSL

            opened = sockets.get(index) if sockets is not None else None
            if isinstance(opened, Listener) and isinstance(entry, ListenEntry):
                files.append(ListenSocket(opened))
                continue
            if opened is not None and not isinstance(opened, Listener) and isinstance(entry, ConnectEntry):
                files.append(ConnectedSocket(opened))
                continue
            raise Unsupported(
                f'files[{index}] ("{entry.name}"): kind "{entry.kind}": the socket is not open '
                "(donjon.runtime.net.open_sockets opens them)"
            )
    at = config.secrets_fd
    if at is not None and secrets is not None:
        files.insert(at, MemoryDir(config.secrets_dir, secrets.memory_entries))
    return GuestSpec(args=config.guest_args(), env=tuple(env), files=tuple(files), stdio_fds=stdio_fds)


def load_module(
    workload: Workload, engine: wasmtime.Engine, settings: EngineSettings, cache: ModuleCache | None
) -> tuple[wasmtime.Module, CacheOutcome]:
    """Compile (or fetch from the cache) the workload's module; :class:`InvalidModule` if it is not wasm."""
    import wasmtime

    try:
        if cache is None:
            return wasmtime.Module(engine, workload.module), CacheOutcome.DISABLED
        return cache.load_or_compile(engine, workload.module, workload.module_sha256, settings.fingerprint())
    except wasmtime.WasmtimeError as e:
        if not workload.module.startswith(WASM_MAGIC):
            # wasmtime also takes the text format, so its message for other bytes is about
            # parsing text; only text that looks like WebAssembly text gets the parser's words.
            if not _looks_like_text_format(workload.module):
                raise InvalidModule(_not_a_module(workload.module)) from e
            message = _one_line(str(e))
            raise InvalidModule(f"not valid WebAssembly text: {message}{refused_feature(message)}") from e
        message = _one_line(str(e))
        raise InvalidModule(f"not a valid WebAssembly module: {message}{refused_feature(message)}") from e


def run_workload(
    workload: Workload,
    backend: Backend,
    *,
    cache: ModuleCache | None = None,
    settings: EngineSettings | None = None,
    stdio_fds: tuple[int, int, int] = (0, 1, 2),
    report: RunReport | None = None,
    before_start: Callable[[], None] | None = None,
    identity: Identity | None = None,
    steward_ca: Sequence[x509.Certificate] = (),
    bound: BoundListeners | None = None,
    secrets: SecretSet | None = None,
) -> int:
    """Run ``workload`` on ``backend`` and return the guest's exit code.

    Raises :class:`BackendRefused`, :class:`MissingFile`, :class:`Unsupported`,
    :class:`SocketUnavailable`, :class:`InvalidModule`, :class:`LimitExceeded` (the module needs
    more than the config's ``[limits]``), :class:`DeadlineExceeded` (``limits.deadline`` passed),
    or ``donjon.wasi.GuestTrap`` / ``GuestLinkError``. The engine's features come from ``settings``
    (default: Donjon's) and ``[limits]`` (``donjon.runtime.limits``). ``before_start`` runs just
    before the guest does (the CLI flushes its own output there); every socket is open by then.

    ``identity`` is the Keep's TLS identity for ``prot = "tls"`` sockets; ``None`` means a fresh
    self-signed one, and the Keep is unattested (every TLS log line says so). ``steward_ca`` is the
    Steward's CA certificate(s), for ``client_auth``/``trust = "steward"``. ``bound`` holds the
    ``listen`` sockets the caller bound before attesting (:func:`donjon.runtime.net.bind_listeners`);
    the caller still closes it (what was taken over is no longer in it). ``secrets``: the values
    fetched for the config's ``[[secrets]]`` (:func:`guest_spec`).
    """
    allowed = workload.config.backends
    if allowed is not None and backend.name not in allowed:
        raise BackendRefused(backend.name, allowed)
    from donjon.runtime.net import has_sockets, open_sockets

    networked = has_sockets(workload.config)
    # Without sockets the spec is checked before compiling; with them, once they are open.
    spec = None if networked else guest_spec(workload.config, workload.base_dir, stdio_fds, secrets=secrets)

    import wasmtime

    from donjon.wasi import GuestLinkError, run_module

    limits = workload.config.limits
    settings = engine_settings(limits, settings)
    engine = settings.make_engine()
    module, outcome = load_module(workload, engine, settings, cache)
    if report is not None:
        report.cache = outcome
    opened = None
    if networked:
        opened = open_sockets(
            workload.config, workload.base_dir, identity=identity, steward_ca=steward_ca, bound=bound
        )
    try:
        if opened is not None:
            spec = guest_spec(workload.config, workload.base_dir, stdio_fds, opened.by_index, secrets=secrets)
        assert spec is not None
        if report is not None and opened is not None:
            report.listening = opened.addresses()
        if before_start is not None:
            before_start()
        store = wasmtime.Store(engine)
        limit_store(store, limits)
        try:
            if limits.deadline_ms is None:
                code = run_module(store, module, spec)
            else:
                code = _run_with_deadline(store, module, spec, limits.deadline_ms)
        except GuestLinkError as e:
            if limit_exceeded(e.message):
                reason = _one_line(e.message).removeprefix("cannot instantiate module: ")
                raise LimitExceeded(reason, describe_limits(limits)) from e
            raise InvalidModule(_one_line(str(e))) from e
    finally:
        if opened is not None:
            opened.close()
    if report is not None:
        report.exit_code = code
    return code


def _run_with_deadline(
    store: wasmtime.Store, module: wasmtime.Module, spec: GuestSpec, deadline_ms: int
) -> int:
    """``run_module`` under a :class:`Deadline`: its trap, or its interruption of a host call the
    guest was blocked in, is :class:`DeadlineExceeded`."""
    from donjon.runtime.deadline import Deadline, DeadlineInterrupt
    from donjon.wasi import GuestTrap, run_module

    try:
        with Deadline(store, deadline_ms / 1000) as deadline:
            try:
                return run_module(store, module, spec)
            except GuestTrap as e:
                if deadline.expired and "interrupt" in e.message:
                    raise DeadlineExceeded(deadline_ms, _one_line(e.message)) from e
                raise
    except DeadlineInterrupt as e:
        raise DeadlineExceeded(deadline_ms, "interrupted in a host call") from e


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines[:4]) if lines else "unknown error"
