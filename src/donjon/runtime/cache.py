"""The compiled-module cache: wasmtime artifacts that only this user could have written.

``wasmtime.Module.deserialize`` maps native code from its input and trusts it
completely, so it must never see bytes wasmtime did not produce for us. Two rules
(docs/run.md "Module cache"):

1. The cache directory is opened once (``O_NOFOLLOW``) and must be owned by the
   current user and not writable by group or others; every later access is relative to
   that open directory, so renaming a parent cannot redirect us.
2. Every entry carries an HMAC-SHA256 under a per-user 32-byte key stored in the
   directory (mode 0600, same owner checks). An entry whose tag does not verify - corrupted,
   truncated, copied from another user or another key - is deleted and the module is
   recompiled; it is never deserialised.

Entries are keyed by SHA-256(module SHA-256 || engine fingerprint), so a different
wasmtime build or engine setting misses. Writes are atomic (temporary file, then
rename); the total size is bounded (least recently used entries go first).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.runtime.errors import CacheUnavailable

if TYPE_CHECKING:
    import wasmtime

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ENTRY_MAGIC",
    "CacheOutcome",
    "ModuleCache",
    "cache_key",
    "default_cache_dir",
]

ENTRY_MAGIC = b"donjon-module-cache-v1\n"
_TAG_SIZE = 32
_KEY_FILE = "hmac-key"
_KEY_SIZE = 32
_SUFFIX = ".cwasm"
#: Upper bound on the whole cache, and on one entry read back (a hostile file is not read whole).
DEFAULT_MAX_BYTES = 1 << 30
_MAX_ENTRY_BYTES = 1 << 30

# O_NONBLOCK: opening a FIFO planted under an entry's name must not hang (it is then not a
# regular file and is rejected); it changes nothing for regular files.
_O_BASE = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class CacheOutcome(enum.Enum):
    """How a module was obtained."""

    HIT = "hit"  # deserialised from an authenticated entry
    MISS = "miss"  # compiled; no entry existed
    REJECTED = "rejected"  # compiled; an entry existed but failed authentication (deleted)
    DISABLED = "disabled"  # compiled; no cache in use


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/donjon/modules`` if that is absolute, else ``~/.cache/donjon/modules``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "donjon" / "modules"


def cache_key(module_sha256: bytes, engine_fingerprint: str) -> str:
    """The entry name: the module's digest bound to the engine that compiled it."""
    return hashlib.sha256(module_sha256 + b"\x00" + engine_fingerprint.encode()).hexdigest()


def _check_private(info: os.stat_result, what: str, *, mask: int) -> None:
    if info.st_uid != os.geteuid():
        raise CacheUnavailable(f"{what} is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})")
    if info.st_mode & mask:
        raise CacheUnavailable(f"{what} has mode {stat.S_IMODE(info.st_mode):04o}: others may write to it")


class ModuleCache:
    """An open cache directory. Use :meth:`open`; close with :meth:`close` or ``with``."""

    def __init__(
        self, dir_fd: int, path: Path, key: bytes, max_bytes: int, warn: Callable[[str], None]
    ) -> None:
        self._fd: int | None = dir_fd
        self.path = path
        self._key = key
        self.max_bytes = max_bytes
        self._warn = warn

    @classmethod
    def open(
        cls,
        path: Path | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        warn: Callable[[str], None] = lambda _message: None,
    ) -> ModuleCache:
        """Open (creating it 0700 if needed) the cache at ``path``; raise :class:`CacheUnavailable`."""
        path = default_cache_dir() if path is None else path
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _O_BASE)
        except OSError as e:
            raise CacheUnavailable(f"cannot open cache directory {path}: {e.strerror or e}") from e
        try:
            info = os.fstat(fd)
            _check_private(info, f"cache directory {path}", mask=0o022)
            key = cls._load_key(fd, path)
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, path, key, max_bytes, warn)

    @staticmethod
    def _load_key(dir_fd: int, path: Path) -> bytes:
        try:
            fd = os.open(_KEY_FILE, os.O_RDONLY | _O_BASE, dir_fd=dir_fd)
        except FileNotFoundError:
            fd = ModuleCache._create_key(dir_fd, path)
        except OSError as e:
            raise CacheUnavailable(f"cannot open {path / _KEY_FILE}: {e.strerror or e}") from e
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size != _KEY_SIZE:
                raise CacheUnavailable(f"{path / _KEY_FILE} is not a {_KEY_SIZE}-byte regular file")
            _check_private(info, f"cache key {path / _KEY_FILE}", mask=0o077)
            key = os.read(fd, _KEY_SIZE + 1)
        finally:
            os.close(fd)
        if len(key) != _KEY_SIZE:
            raise CacheUnavailable(f"{path / _KEY_FILE} could not be read whole")
        return key

    @staticmethod
    def _create_key(dir_fd: int, path: Path) -> int:
        # Written to a temporary name and hard-linked into place, so a concurrent process
        # either wins (and we read its key) or loses; nobody reads a half-written key.
        temp = f".key-{os.urandom(8).hex()}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BASE, 0o600, dir_fd=dir_fd)
            try:
                os.write(fd, os.urandom(_KEY_SIZE))
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(temp, _KEY_FILE, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            return os.open(_KEY_FILE, os.O_RDONLY | _O_BASE, dir_fd=dir_fd)
        except OSError as e:
            raise CacheUnavailable(f"cannot create {path / _KEY_FILE}: {e.strerror or e}") from e
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ModuleCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _dir(self) -> int:
        if self._fd is None:
            raise ValueError("the module cache is closed")
        return self._fd

    # -- entries -----------------------------------------------------------------------

    def _tag(self, key: str, payload: bytes | bytearray | memoryview) -> bytes:
        mac = hmac.new(self._key, ENTRY_MAGIC, hashlib.sha256)
        mac.update(bytes.fromhex(key))
        mac.update(payload)
        return mac.digest()

    def read_verified(self, key: str) -> tuple[CacheOutcome, memoryview | None]:
        """Entry ``key``'s authenticated payload, or None (with MISS, or REJECTED if it failed)."""
        name = key + _SUFFIX
        try:
            fd = os.open(name, os.O_RDONLY | _O_BASE, dir_fd=self._dir)
        except FileNotFoundError:
            return CacheOutcome.MISS, None
        except OSError as e:
            self._warn(f"module cache: cannot open entry {name}: {e.strerror or e}; recompiling")
            self._drop(name)
            return CacheOutcome.REJECTED, None
        try:
            info = os.fstat(fd)
            header = len(ENTRY_MAGIC) + _TAG_SIZE
            if not stat.S_ISREG(info.st_mode) or not header <= info.st_size <= _MAX_ENTRY_BYTES:
                data = b""
            else:
                with open(fd, "rb", closefd=False) as stream:
                    data = stream.read(_MAX_ENTRY_BYTES + 1)
        finally:
            os.close(fd)
        view = memoryview(data)
        if not data.startswith(ENTRY_MAGIC) or len(data) < len(ENTRY_MAGIC) + _TAG_SIZE:
            self._drop(name)
            return CacheOutcome.REJECTED, None
        tag = bytes(view[len(ENTRY_MAGIC) : len(ENTRY_MAGIC) + _TAG_SIZE])
        payload = view[len(ENTRY_MAGIC) + _TAG_SIZE :]
        if not hmac.compare_digest(tag, self._tag(key, payload)):
            self._drop(name)
            return CacheOutcome.REJECTED, None
        with contextlib.suppress(OSError):
            os.utime(name, dir_fd=self._dir, follow_symlinks=False)  # least-recently-used order
        return CacheOutcome.HIT, payload

    def write(self, key: str, payload: bytes | bytearray) -> None:
        """Store ``payload`` under ``key`` atomically, then keep the cache under ``max_bytes``."""
        name = key + _SUFFIX
        temp = f".tmp-{os.urandom(8).hex()}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BASE, 0o600, dir_fd=self._dir)
            try:
                with open(fd, "wb", closefd=False) as stream:
                    stream.write(ENTRY_MAGIC)
                    stream.write(self._tag(key, payload))
                    stream.write(payload)
            finally:
                os.close(fd)
            os.replace(temp, name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
        except OSError as e:
            self._warn(f"module cache: cannot write entry {name}: {e.strerror or e}")
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self._dir)
            return
        self._prune(keep=name)

    def _drop(self, name: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=self._dir)

    def _prune(self, keep: str) -> None:
        entries: list[tuple[int, int, str]] = []
        for name in os.listdir(self._dir):
            if not name.endswith(_SUFFIX):
                continue
            with contextlib.suppress(OSError):
                info = os.stat(name, dir_fd=self._dir, follow_symlinks=False)
                entries.append((info.st_mtime_ns, info.st_size, name))
        total = sum(size for _, size, _ in entries)
        for _, size, name in sorted(entries):
            if total <= self.max_bytes:
                break
            if name != keep:
                self._drop(name)
                total -= size

    # -- modules -----------------------------------------------------------------------

    def load_or_compile(
        self, engine: wasmtime.Engine, module: bytes, module_sha256: bytes, engine_fingerprint: str
    ) -> tuple[wasmtime.Module, CacheOutcome]:
        """The compiled module, from an authenticated entry or compiled (and then stored).

        Compilation errors (``wasmtime.WasmtimeError``) propagate to the caller.
        """
        import wasmtime

        key = cache_key(module_sha256, engine_fingerprint)
        outcome, payload = self.read_verified(key)
        if payload is not None:
            try:
                return wasmtime.Module.deserialize(engine, payload.tobytes()), CacheOutcome.HIT
            except wasmtime.WasmtimeError as e:
                # Authentic but unusable (wasmtime's own compatibility check): recompile.
                self._warn(f"module cache: entry {key} not loadable ({str(e).splitlines()[0]}); recompiling")
                self._drop(key + _SUFFIX)
                outcome = CacheOutcome.REJECTED
        compiled = wasmtime.Module(engine, module)
        self.write(key, compiled.serialize())
        return compiled, outcome
