"""From a pulled package to a workload: its config, its identity check, its files on disk. I/O.

- The config layer is parsed like any ``Donjon.toml``; the workload digest computed from it
  and the module must equal the manifest's ``dev.donjon.workload.digest`` annotation (which the
  signature covers), else the package is refused.
- A package config may narrow what a run allows, never widen it (:func:`check_within`).
- The host paths the config names (pre-opened directories, ``trust_file`` PEMs) are unpacked
  under a fresh directory at the same relative paths, so the config resolves them unchanged.
  Only plain files and directories are unpacked (no links, devices or absolute or ``..``
  names), with the number of entries and their total size bounded.
- The config's ``steward_ca`` is dropped: it names a file on the *builder's* host. The Keep
  pins the Steward CA the run gives (``--steward-ca``).
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Collection
from pathlib import Path

from donjon.config.errors import ConfigError
from donjon.config.model import ConnectEntry, DirEntry, WorkloadConfig
from donjon.oci.artifact import TreeEntry, safe_relative_path
from donjon.oci.errors import DigestMismatch, MalformedPackage, PackageRefused, TooLarge
from donjon.oci.pull import PulledPackage

__all__ = ["MAX_TREE_ENTRIES", "check_within", "package_config", "packaged_paths", "unpack_trees"]

MAX_TREE_ENTRIES = 10_000


def package_config(pulled: PulledPackage) -> WorkloadConfig:
    """The package's config, after checking the workload digest the manifest claims.

    For an encrypted package the module's plaintext digest comes from its annotation (the
    module is still sealed); :func:`unseal` checks the plaintext against it later.
    """
    from donjon.config.digest import workload_digest
    from donjon.config.parse import parse_config

    try:
        config = parse_config(pulled.config_source, origin="package config").config
    except ConfigError as e:
        raise MalformedPackage("package config", str(e)) from e
    module_sha256 = bytes.fromhex(pulled.manifest.module.plaintext_digest.removeprefix("sha256:"))
    computed = workload_digest(pulled.module, config, module_sha256=module_sha256).hex()
    if computed != pulled.manifest.workload_digest:
        raise DigestMismatch("workload digest annotation", pulled.manifest.workload_digest, computed)
    return dataclasses.replace(config, steward_ca=None)


def unseal(pulled: PulledPackage, key: bytes) -> PulledPackage:
    """The package with its sealed layers opened under the content ``key`` (each plaintext checked
    against its digest, so the module is the one the attested workload digest names)."""
    from donjon.oci.encryption import open_layer

    if pulled.manifest.sealed_to is None:
        return pulled
    manifest = pulled.manifest
    name = f"Steward secret {manifest.sealed_to}"
    module = open_layer(
        key,
        manifest.module.plain_media_type,
        None,
        pulled.module,
        manifest.module.plaintext_digest,
        "module",
        key_name=name,
    )
    trees = []
    for descriptor, tree in zip(manifest.trees, pulled.trees, strict=True):
        plain = open_layer(
            key,
            descriptor.plain_media_type,
            tree.path,
            tree.blob,
            descriptor.plaintext_digest,
            tree.path,
            key_name=name,
        )
        trees.append(TreeEntry(tree.path, tree.kind, plain))
    return dataclasses.replace(pulled, module=module, trees=tuple(trees))


def packaged_paths(config: WorkloadConfig) -> dict[str, str]:
    """The host paths ``config`` names, by path: ``"dir"`` or ``"file"`` (what a package must carry)."""
    paths: dict[str, str] = {}
    for entry in config.files:
        if isinstance(entry, DirEntry):
            paths[entry.path] = "dir"
        elif isinstance(entry, ConnectEntry) and entry.trust == "file" and entry.trust_file is not None:
            paths[entry.trust_file] = "file"
    return paths


def check_within(config: WorkloadConfig, backend: str) -> None:
    """Refuse a package config that asks for more than the run allows.

    A run from a package forbids unattested operation unless its backend is ``nil``: a config
    whose ``backends`` lists ``nil``, or whose ``connect`` entries accept unattested peers
    (``allow_unattested``), is refused on any other backend - it would widen the run. Likewise
    a ``connect`` entry accepting simulated peers (``allow_simulated``) is refused unless the
    run itself is simulated (a ``sim-*`` backend): a Keep on real hardware never trusts a
    simulated TEE because the package says so.
    """
    if backend == "nil":
        return
    if config.backends is not None and "nil" in config.backends:
        raise PackageRefused(
            f"the package config's backends {list(config.backends)} include 'nil', which this run "
            f"forbids (backend {backend}): a package may narrow what a run allows, not widen it"
        )
    for entry in config.files:
        if isinstance(entry, ConnectEntry) and entry.allow_unattested:
            raise PackageRefused(
                f"the package config's connect {entry.name!r} accepts unattested peers "
                "(allow_unattested), which this run forbids"
            )
        if isinstance(entry, ConnectEntry) and entry.allow_simulated and not backend.startswith("sim-"):
            raise PackageRefused(
                f"the package config's connect {entry.name!r} accepts simulated peers "
                f"(allow_simulated), which this run forbids (backend {backend})"
            )


def unpack_trees(config: WorkloadConfig, trees: Collection[TreeEntry], root: Path, *, limit: int) -> None:
    """Write the packaged paths of ``config`` under ``root`` (a new, empty directory)."""
    wanted = packaged_paths(config)
    got = {tree.path: tree.kind for tree in trees}
    if wanted != got:
        missing = sorted(set(wanted) - set(got))
        extra = sorted(set(got) - set(wanted))
        raise MalformedPackage(
            "package", f"its layers do not match its config's paths (missing {missing}, unexpected {extra})"
        )
    budget = [limit, MAX_TREE_ENTRIES]
    for tree in trees:
        target = root / safe_relative_path(tree.path)
        if tree.kind == "file":
            _write(root, tree.path, tree.blob, executable=False, budget=budget)
        else:
            _mkdirs(root, tree.path)
            _untar(tree.blob, target, tree.path, budget)


def _untar(blob: bytes, target: Path, what: str, budget: list[int]) -> None:
    import tarfile  # (and shutil): only a package with a directory needs them

    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as archive:
            for member in archive:
                budget[1] -= 1
                if budget[1] < 0:
                    raise TooLarge(f"directory {what}", MAX_TREE_ENTRIES, MAX_TREE_ENTRIES)
                name = safe_relative_path(member.name.rstrip("/"))
                if member.isdir():
                    _mkdirs(target, name)
                elif member.isreg():
                    stream = archive.extractfile(member)
                    assert stream is not None
                    data = stream.read(max(budget[0], 0) + 1)
                    _write(target, name, data, executable=bool(member.mode & 0o100), budget=budget)
                else:
                    raise MalformedPackage(
                        f"directory {what}", f"{member.name!r} is not a file or a directory"
                    )
    except tarfile.TarError as e:
        raise MalformedPackage(f"directory {what}", f"not a tar archive: {e}") from e


def _mkdirs(root: Path, relative: str) -> None:
    path = root
    for part in relative.split("/"):
        if part in ("", "."):
            continue
        path = path / part
        if path.is_symlink():  # never: only this code writes here; checked anyway
            raise MalformedPackage(relative, "is a link")
        try:
            path.mkdir(mode=0o755, exist_ok=True)
        except OSError as e:  # e.g. a file of that name came first
            raise MalformedPackage(relative, f"cannot be unpacked: {e.strerror or e}") from e


def _write(root: Path, relative: str, data: bytes, *, executable: bool, budget: list[int]) -> None:
    budget[0] -= len(data)
    if budget[0] < 0:
        raise TooLarge(f"unpacked file {relative}", len(data), len(data) + budget[0])
    parent = relative.rpartition("/")[0]
    if parent:
        _mkdirs(root, parent)
    path = root / relative
    # O_EXCL and O_NOFOLLOW: a second entry of the same name, or a link, is refused, not followed.
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if executable else 0o644
        )
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
    except FileExistsError:
        raise MalformedPackage(relative, "appears twice in the package") from None
    except OSError as e:
        raise MalformedPackage(relative, f"cannot be unpacked: {e.strerror or e}") from e
