"""The on-disk collateral cache: one file per request, written atomically.

An entry is keyed by the *request* (e.g. ``kds/vcek/v1/Milan/<hwid>?blSPL=02&...``),
not by the vendor's host, so a document fetched online and the same document
imported from an offline bundle land in the same place. Each entry records when
it was obtained, from where, and until when the document itself says it is
current (CRL nextUpdate, TCB info nextUpdate, earliest certificate notAfter):
the fetchers refetch an entry that is no longer current.

Files are JSON (body base64), written to a temporary file in the same
directory, flushed and renamed over the old one, so a reader never sees a
half-written entry. The directory is created with mode 0700: collateral is
public, but a writable cache is a way to feed a verifier chosen documents.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from donjon.attestation.pki import require_aware

__all__ = ["MAX_ENTRY_BYTES", "CacheEntry", "CollateralCache"]

#: A cache file larger than this is treated as corrupt (documents are limited to 1 MiB before base64).
MAX_ENTRY_BYTES = 4 << 20
_FORMAT = 1


@dataclass(frozen=True)
class CacheEntry:
    """One cached document: its bytes, the response headers kept with it, and its dates.

    ``valid_until`` is the end of the document's own validity (``None``: it states
    none, and is never current); ``source`` is ``"network"`` or ``"bundle:<file>"``.
    """

    key: str
    body: bytes
    fetched_at: datetime
    valid_until: datetime | None
    source: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_aware(self.fetched_at)
        if self.valid_until is not None:
            require_aware(self.valid_until)
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    def is_current(self, at: datetime) -> bool:
        """True while the document is within its own validity at ``at``."""
        return self.valid_until is not None and at < self.valid_until

    def _to_json(self) -> bytes:
        return json.dumps(
            {
                "format": _FORMAT,
                "key": self.key,
                "fetched_at": self.fetched_at.isoformat(),
                "valid_until": None if self.valid_until is None else self.valid_until.isoformat(),
                "source": self.source,
                "headers": dict(self.headers),
                "body": base64.b64encode(self.body).decode("ascii"),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def _from_json(cls, data: bytes) -> CacheEntry:
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise ValueError("not a cache entry of a known format")
        headers = obj.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError("bad headers")
        valid_until = obj.get("valid_until")
        return cls(
            key=str(obj["key"]),
            body=base64.b64decode(obj["body"], validate=True),
            fetched_at=datetime.fromisoformat(obj["fetched_at"]),
            valid_until=None if valid_until is None else datetime.fromisoformat(valid_until),
            source=str(obj["source"]),
            headers=headers,
        )


class CollateralCache:
    """A directory of cached collateral. Safe for several processes: writes are atomic renames."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is masked by the umask and ignored for an existing
        # directory: set it explicitly, and refuse a directory we do not own.
        st = self.directory.stat()
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise PermissionError(f"collateral cache {self.directory} is not owned by this user")
        if stat.S_IMODE(st.st_mode) != 0o700:
            os.chmod(self.directory, 0o700)

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or ``None`` when absent or unreadable (a corrupt entry is a miss)."""
        entry = self.load_path(self._path(key))
        return entry if entry is not None and entry.key == key else None

    def store(self, entry: CacheEntry) -> None:
        """Write ``entry`` atomically (temporary file, fsync, rename)."""
        data = entry._to_json()
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(entry.key))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def remove(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def entries(self) -> Iterator[CacheEntry]:
        """Every readable entry (for listing and tests)."""
        for path in sorted(self.directory.glob("*.json")):
            if path.name.startswith(".tmp-"):
                continue
            entry = self.load_path(path)
            if entry is not None:
                yield entry

    def load_path(self, path: Path) -> CacheEntry | None:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_ENTRY_BYTES + 1)
            if len(data) > MAX_ENTRY_BYTES:
                return None
            entry = CacheEntry._from_json(data)
        except (OSError, ValueError, KeyError, TypeError, binascii.Error):
            return None
        return entry if path == self._path(entry.key) else None
