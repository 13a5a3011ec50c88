"""A package on disk as an OCI image layout directory (OCI Image Format v1.1, "Image Layout"). I/O.

``oci-layout``, ``index.json`` (one manifest) and ``blobs/sha256/<hex>``: what ``oras``,
``skopeo`` and ``crane`` read and write, so a built package can also be copied with them
(``skopeo copy oci:app.oci docker://...``). Reading checks every blob against its digest.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from donjon.oci.artifact import (
    ARTIFACT_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    Manifest,
    canonical_json,
    load_json,
    parse_manifest,
    verify_blob,
)
from donjon.oci.errors import MalformedPackage, TooLarge

__all__ = ["read_layout", "write_layout"]

_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})


def write_layout(target: Path, manifest: Manifest, blobs: dict[str, bytes]) -> None:
    """Write (or rewrite) the layout at ``target``; an existing non-layout path is refused."""
    if target.exists() and not (target / "oci-layout").is_file():
        raise MalformedPackage(str(target), "exists and is not an OCI image layout; not overwriting it")
    index = {
        "schemaVersion": 2,
        "mediaType": _INDEX_MEDIA_TYPE,
        "manifests": [
            {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "artifactType": ARTIFACT_TYPE,
                "digest": manifest.digest,
                "size": len(manifest.raw),
            }
        ],
    }
    for digest, data in {**blobs, manifest.digest: manifest.raw}.items():
        _write(target / "blobs" / "sha256" / digest.removeprefix("sha256:"), data)
    _write(target / "oci-layout", _LAYOUT)
    _write(target / "index.json", canonical_json(index))


def read_layout(source: Path, *, limit: int) -> tuple[Manifest, dict[str, bytes]]:
    """The package in the layout at ``source`` and its blobs (each checked, each at most ``limit``)."""
    index = load_json("index.json", _read(source / "index.json", MAX_MANIFEST_BYTES))
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or len(manifests) != 1 or not isinstance(manifests[0], dict):
        raise MalformedPackage(f"{source}/index.json", "expected exactly one manifest")
    digest = manifests[0].get("digest")
    if not isinstance(digest, str):
        raise MalformedPackage(f"{source}/index.json", "manifest without a digest")
    from donjon.oci.reference import parse_digest

    parse_digest(digest)
    manifest = parse_manifest(_blob(source, digest, MAX_MANIFEST_BYTES), expected_digest=digest)
    blobs = {layer.digest: _blob(source, layer.digest, min(layer.size, limit)) for layer in manifest.layers}
    from donjon.oci.artifact import EMPTY_CONFIG, digest_of

    blobs[digest_of(EMPTY_CONFIG)] = EMPTY_CONFIG
    return manifest, blobs


def _blob(source: Path, digest: str, limit: int) -> bytes:
    data = _read(source / "blobs" / "sha256" / digest.removeprefix("sha256:"), limit)
    verify_blob(f"{source}: blob {digest}", data, digest)
    return data


def _read(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as stream:
            data = stream.read(limit + 1)
    except OSError as e:
        raise MalformedPackage(str(path), f"cannot read: {e.strerror or e}") from e
    if len(data) > limit:
        raise TooLarge(str(path), len(data), limit)
    return data


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
