"""Where an encrypted package's files are decrypted to: a memory-backed filesystem, never a disk.

The guest reads its pre-opened directories, and the Keep its ``trust_file`` PEMs, through host
paths, so the decrypted files of an encrypted package must exist as files somewhere. On a disk
they would outlive the run in free blocks and, inside a confidential VM, sit on a virtual disk
the host serves; on ``tmpfs`` (or ``ramfs``) they live in the Keep's memory, which is what the
TEE protects. So the run looks for a memory-backed filesystem - ``$XDG_RUNTIME_DIR`` (the
per-user ``/run/user/UID`` that systemd mounts as tmpfs), then ``/dev/shm`` - and refuses to
decrypt files anywhere else.

The filesystem type comes from ``/proc/self/mountinfo`` (proc(5)): the mount whose mount point
is the longest prefix of the resolved path, the last one listed when several are stacked.
:func:`filesystem_type` parses that text and does no I/O.

tmpfs pages can be swapped out; on a host whose swap is not encrypted that is a way to disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["MEMORY_FILESYSTEMS", "candidates", "filesystem_type", "find_memory_dir"]

#: Filesystems whose files live only in memory (Linux Documentation/filesystems/tmpfs.rst, ramfs).
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
_MAX_MOUNTINFO = 4 << 20


def _unescape(field: str) -> str:
    r"""A mountinfo path: space, tab, newline and backslash are written as octal (``\040``)."""
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1 : i + 4]
        if field[i] == "\\" and len(digits) == 3 and all(c in "01234567" for c in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_type(mountinfo: str, path: str) -> str | None:
    """The type of the filesystem holding the absolute, resolved ``path``, per ``mountinfo``.

    Each line of ``/proc/self/mountinfo`` is ``ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS
    [OPTIONAL...] - TYPE SOURCE SUPER-OPTIONS`` (proc(5)); a line that does not parse is skipped.
    """
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        dash = fields.index("-", 6)
        if len(fields) < 5 or dash + 1 >= len(fields):
            continue
        point = _unescape(fields[4])
        inside = path == point or point == "/" or path.startswith(point.rstrip("/") + "/")
        # ">=": a later mount on the same point hides the earlier one.
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fields[dash + 1])
    return best[1] if best is not None else None


def candidates(environ: Mapping[str, str]) -> list[Path]:
    """Where to look, in order: ``$XDG_RUNTIME_DIR`` (if set and absolute), ``/dev/shm``."""
    found = []
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        found.append(Path(runtime))
    found.append(Path("/dev/shm"))
    return found


def find_memory_dir(
    places: Sequence[Path] | None = None, *, mountinfo: str | None = None
) -> tuple[Path, str] | None:
    """The first of ``places`` (default :func:`candidates`) that is a writable directory on a
    memory-backed filesystem, with that filesystem's type; ``None`` when there is none."""
    if places is None:
        places = candidates(os.environ)
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as stream:
                mountinfo = stream.read(_MAX_MOUNTINFO)
        except OSError:
            return None
    for place in places:
        resolved = os.path.realpath(place)
        if not os.path.isdir(resolved) or not os.access(resolved, os.W_OK | os.X_OK):
            continue
        kind = filesystem_type(mountinfo, resolved)
        if kind in MEMORY_FILESYSTEMS:
            return Path(resolved), kind
    return None
