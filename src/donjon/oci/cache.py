"""A content-addressed cache of pulled blobs and manifests. I/O.

Files are named by their SHA-256 (``sha256/<hex>``) and checked on every read: a file whose
bytes no longer hash to its name (a disk error, a meddling user) is removed and fetched again,
never used. Only content named by digest is cached - never what a tag points to - so a cached
answer is exactly what a fresh pull would verify. Writes go to a temporary file renamed into
place, so a reader never sees half a blob.

The cache is bounded: past ``max_bytes`` (default :data:`DEFAULT_MAX_BYTES`, or
``$DONJON_PACKAGE_CACHE_MAX_MB``), the blobs used longest ago are removed after each write (a
read marks a blob used). Removing is always safe: what is gone is fetched again.

One kind of entry is not content-addressed: ``signatures/<hex>`` remembers which ``.sig``
manifest (by digest) last verified the package ``sha256:<hex>``, so a cached run needs no
registry round trip for its signature. It is only a hint: the manifest it names is read from
the cache like any blob and verified again against the keys of *this* run, so a meddled hint
can cost a fetch, never admit a package. A hint whose manifest was evicted is removed with it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from donjon.oci.artifact import digest_of
from donjon.oci.reference import DIGEST

__all__ = ["DEFAULT_MAX_BYTES", "MAX_ENV", "BlobCache", "default_cache_dir", "max_bytes_from_env"]

#: A few dozen packages of a realistic size; a Keep host is not a registry mirror.
DEFAULT_MAX_BYTES = 2 * 1024 * 1024 * 1024
MAX_ENV = "DONJON_PACKAGE_CACHE_MAX_MB"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "donjon" / "blobs"


def max_bytes_from_env(environ: dict[str, str] | None = None) -> int:
    """The size bound ``$DONJON_PACKAGE_CACHE_MAX_MB`` sets (MiB), else the default; a value that is
    not a whole number of MiB is a :class:`ValueError` naming the variable."""
    text = (os.environ if environ is None else environ).get(MAX_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    if not text.isdigit() or len(text) > 9:
        raise ValueError(f"${MAX_ENV} must be a whole number of MiB, not {text[:20]!r}")
    return int(text) * 1024 * 1024


class BlobCache:
    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def _path(self, digest: str) -> Path:
        if not DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / algorithm / hexdigest

    def get(self, digest: str, *, limit: int) -> bytes | None:
        """The cached bytes of ``digest`` (verified), or ``None``."""
        path = self._path(digest)
        try:
            with open(path, "rb") as stream:
                data = stream.read(limit + 1)
        except OSError:
            self.misses += 1
            return None
        if len(data) > limit or digest_of(data) != digest:
            with contextlib.suppress(OSError):
                path.unlink()
            self.misses += 1
            return None
        self.hits += 1
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: the last to be evicted
        return data

    def signatures_of(self, digest: str) -> str | None:
        """The digest of the ``.sig`` manifest remembered for the package ``digest``, if any."""
        path = self._path(digest)
        try:
            with open(self.root / "signatures" / path.name, "rb") as stream:
                text = stream.read(128).decode("ascii", "replace").strip()
        except OSError:
            return None
        try:
            self._path(text)
        except ValueError:
            return None
        return text

    def remember_signatures(self, digest: str, signatures: str) -> None:
        """Remember that the ``.sig`` manifest ``signatures`` verified the package ``digest``."""
        self._path(signatures)
        self._write(self.root / "signatures" / self._path(digest).name, signatures.encode("ascii"))

    def put(self, digest: str, data: bytes) -> None:
        """Store ``data`` (which must hash to ``digest``); a cache that cannot be written is skipped."""
        if digest_of(data) != digest:
            raise ValueError("put: the data does not match its digest")
        path = self._path(digest)
        self._write(path, data)
        self._trim(keep=path)

    def _trim(self, *, keep: Path) -> None:
        """Remove the blobs used longest ago until the cache is within ``max_bytes``
        (``keep``, just written, stays even if it alone is over)."""
        blobs = []
        total = 0
        try:
            with os.scandir(self.root / "sha256") as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                        continue
                    stat = entry.stat(follow_symlinks=False)
                    total += stat.st_size
                    blobs.append((stat.st_mtime_ns, stat.st_size, entry.path))
        except OSError:
            return
        if total <= self.max_bytes:
            return
        evicted = self.evicted
        for _, size, path in sorted(blobs):
            if total <= self.max_bytes:
                break
            if path == str(keep):
                continue
            with contextlib.suppress(OSError):
                os.unlink(path)
                total -= size
                self.evicted += 1
        if self.evicted > evicted:
            self._forget_signatures()

    def _forget_signatures(self) -> None:
        """Remove the ``signatures/`` hints whose ``.sig`` manifest is no longer cached (they
        could only cost a read), so the hints are bounded by the blobs: one per cached
        signature manifest that verified a package, at most."""
        try:
            with os.scandir(self.root / "signatures") as entries:
                hints = [(entry.name, entry.path) for entry in entries if not entry.name.startswith(".")]
        except OSError:
            return
        for name, path in hints:
            try:
                target = self.signatures_of(f"sha256:{name}")
                gone = target is None or not self._path(target).is_file()
            except ValueError:
                gone = True  # not a hint this cache wrote
            if gone:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def _write(self, path: Path, data: bytes) -> None:
        import tempfile  # a cached run writes nothing

        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as stream:
                    stream.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            return
