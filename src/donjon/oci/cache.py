"""A content-addressed cache of pulled blobs and manifests. I/O.

Files are named by their SHA-256 (``sha256/<hex>``) and checked on every read: a file whose
bytes no longer hash to its name (a disk error, a meddling user) is removed and fetched again,
never used. Only content named by digest is cached - never what a tag points to - so a cached
answer is exactly what a fresh pull would verify. Writes go to a temporary file renamed into
place, so a reader never sees half a blob.

One kind of entry is not content-addressed: ``signatures/<hex>`` remembers which ``.sig``
manifest (by digest) last verified the package ``sha256:<hex>``, so a cached run needs no
registry round trip for its signature. It is only a hint: the manifest it names is read from
the cache like any blob and verified again against the keys of *this* run, so a meddled hint
can cost a fetch, never admit a package.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from donjon.oci.artifact import digest_of

__all__ = ["BlobCache", "default_cache_dir"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "donjon" / "blobs"


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    def _path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        if (
            algorithm != "sha256"
            or len(hexdigest) != 64
            or not all(c in "0123456789abcdef" for c in hexdigest)
        ):
            raise ValueError(f"not a sha256 digest: {digest!r}")
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
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ValueError("put: the data does not match its digest")
        self._write(self._path(digest), data)

    def _write(self, path: Path, data: bytes) -> None:
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
