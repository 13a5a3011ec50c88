"""Build a package from a module, its config and the host paths the config names. Reads files.

Every host path a config names - a ``dir`` entry's ``path``, a ``connect`` entry's
``trust_file`` - must be relative and stay inside the config's directory (a package carries
them at the same relative paths, see :mod:`donjon.oci.unpack`). Directories are packed as
deterministic tars; symbolic links and special files are refused, not followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from donjon.config.digest import workload_digest
from donjon.config.model import WorkloadConfig
from donjon.oci.artifact import Manifest, TreeEntry, build_manifest, safe_relative_path, tar_tree
from donjon.oci.errors import MalformedPackage, TooLarge
from donjon.oci.unpack import MAX_TREE_ENTRIES, packaged_paths

__all__ = ["MAX_TREE_BYTES", "BuiltPackage", "build_package"]

#: All packaged files together; a bigger data set belongs in a volume, not in a workload.
MAX_TREE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class BuiltPackage:
    manifest: Manifest
    blobs: dict[str, bytes]


def build_package(
    module: bytes,
    config: WorkloadConfig,
    config_source: bytes,
    base_dir: Path,
    *,
    seal: tuple[str, bytes] | None = None,
) -> BuiltPackage:
    """The package of ``module`` with ``config`` (parsed from ``config_source``, read in ``base_dir``);
    ``seal`` = (``steward:NAME``, content key) encrypts it (:mod:`donjon.oci.encryption`)."""
    budget = [MAX_TREE_BYTES, MAX_TREE_ENTRIES]
    trees: list[TreeEntry] = []
    for path, kind in sorted(packaged_paths(config).items()):
        safe_relative_path(path)
        host = base_dir / path
        if kind == "file":
            trees.append(TreeEntry(path, "file", _read_file(host, path, budget)))
        else:
            trees.append(TreeEntry(path, "dir", tar_tree(_walk(host, path, budget))))
    manifest, blobs = build_manifest(module, config_source, trees, workload_digest(module, config), seal=seal)
    return BuiltPackage(manifest, blobs)


def _read_file(host: Path, what: str, budget: list[int]) -> bytes:
    try:
        info = os.lstat(host)
        if not stat.S_ISREG(info.st_mode):
            raise MalformedPackage(what, "is not a regular file (links are not packaged)")
        budget[0] -= info.st_size
        if budget[0] < 0:
            raise TooLarge("packaged files", MAX_TREE_BYTES - budget[0], MAX_TREE_BYTES)
        with open(host, "rb") as stream:
            return stream.read(info.st_size + 1)
    except OSError as e:
        raise MalformedPackage(what, f"cannot read: {e.strerror or e}") from e


def _walk(root: Path, what: str, budget: list[int]) -> list[tuple[str, bytes | None, bool]]:
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            raise MalformedPackage(what, "is not a directory")
    except OSError as e:
        raise MalformedPackage(what, f"cannot read: {e.strerror or e}") from e
    out: list[tuple[str, bytes | None, bool]] = []
    for directory, dirnames, filenames in os.walk(root, onerror=_raise):
        rel_dir = os.path.relpath(directory, root)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            budget[1] -= 1
            if budget[1] < 0:
                raise TooLarge(f"directory {what}", MAX_TREE_ENTRIES + 1, MAX_TREE_ENTRIES)
            host = Path(directory) / name
            mode = os.lstat(host).st_mode
            if stat.S_ISDIR(mode):
                out.append((rel, None, False))
            elif stat.S_ISREG(mode):
                out.append((rel, _read_file(host, f"{what}/{rel}", budget), bool(mode & stat.S_IXUSR)))
            else:
                raise MalformedPackage(
                    f"{what}/{rel}", "is not a file or a directory (links are not packaged)"
                )
    return out


def _raise(error: OSError) -> None:
    raise MalformedPackage(str(error.filename), f"cannot read: {error.strerror or error}")
