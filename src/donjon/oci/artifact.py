"""A Donjon package as an OCI artifact: its manifest, built and parsed. Pure: bytes in, bytes out.

The package is an OCI image manifest (OCI Image Format Specification v1.1, "Image Manifest")
with an ``artifactType`` of Donjon's own and the empty config descriptor the specification's
"Guidelines for Artifact Usage" recommend for artifacts without a config. Its layers, in order:

1. the module (``application/vnd.donjon.workload.module.v1+wasm``), exactly one;
2. the config file as written (``application/vnd.donjon.workload.config.v1+toml``), exactly one;
3. one per host path the config names: a pre-opened directory as a deterministic tar
   (``...dir.v1.tar``) or a single file such as a ``trust_file`` PEM (``...file.v1``), each with
   its path (as the config writes it) in ``org.opencontainers.image.title``.

The manifest's ``dev.donjon.workload.digest`` annotation is the workload digest Donjon computes
from the module and the parsed config (docs/run.md); a puller recomputes it and refuses a package
whose annotation differs. Everything here is deterministic - JSON with sorted keys and no
whitespace, tar entries sorted with zeroed times and owners - so rebuilding the same inputs
yields byte-identical blobs and the same manifest digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from donjon.oci.encryption import (
    ENCRYPTED_SUFFIX,
    ENCRYPTION_KEY_ANNOTATION,
    PLAINTEXT_DIGEST_ANNOTATION,
    PLAINTEXT_SIZE_ANNOTATION,
    parse_key_target,
    seal_layer,
)
from donjon.oci.errors import DigestMismatch, MalformedPackage, TooLarge
from donjon.oci.reference import DIGEST

__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "DIR_MEDIA_TYPE",
    "EMPTY_CONFIG",
    "EMPTY_MEDIA_TYPE",
    "FILE_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "MAX_MANIFEST_BYTES",
    "MODULE_MEDIA_TYPE",
    "TITLE_ANNOTATION",
    "WORKLOAD_DIGEST_ANNOTATION",
    "Descriptor",
    "Manifest",
    "TreeEntry",
    "build_manifest",
    "canonical_json",
    "digest_of",
    "load_json",
    "parse_manifest",
    "safe_relative_path",
    "tar_tree",
    "verify_blob",
]

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.donjon.workload.v1"
MODULE_MEDIA_TYPE = "application/vnd.donjon.workload.module.v1+wasm"
CONFIG_MEDIA_TYPE = "application/vnd.donjon.workload.config.v1+toml"
DIR_MEDIA_TYPE = "application/vnd.donjon.workload.dir.v1.tar"
FILE_MEDIA_TYPE = "application/vnd.donjon.workload.file.v1"
#: OCI Image Spec v1.1 "Guidance for an Empty Descriptor": the two bytes ``{}``.
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
TITLE_ANNOTATION = "org.opencontainers.image.title"
WORKLOAD_DIGEST_ANNOTATION = "dev.donjon.workload.digest"

#: A package manifest lists a module, a config and at most a few hundred paths: 256 KiB is ample.
MAX_MANIFEST_BYTES = 256 * 1024
_MAX_LAYERS = 1024
_MAX_ANNOTATION = 4096

TreeKind = Literal["dir", "file"]


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor: what a manifest says about one blob."""

    media_type: str
    digest: str
    size: int
    annotations: tuple[tuple[str, str], ...] = ()

    @property
    def title(self) -> str | None:
        return dict(self.annotations).get(TITLE_ANNOTATION)

    @property
    def sealed(self) -> bool:
        """Whether the layer is encrypted (docs/deploy.md "Encrypted packages")."""
        return self.media_type.endswith(ENCRYPTED_SUFFIX)

    @property
    def plain_media_type(self) -> str:
        return self.media_type.removesuffix(ENCRYPTED_SUFFIX)

    @property
    def plaintext_digest(self) -> str:
        """The digest of the plaintext: the blob's own, or for a sealed layer its annotation's."""
        return dict(self.annotations).get(PLAINTEXT_DIGEST_ANNOTATION, "") if self.sealed else self.digest

    @property
    def tree_kind(self) -> TreeKind:
        """``"dir"`` for a directory tar layer, else ``"file"`` (for the layers after the config)."""
        return "dir" if self.plain_media_type == DIR_MEDIA_TYPE else "file"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class TreeEntry:
    """A host path the config names, as packaged: ``path`` as the config writes it."""

    path: str
    kind: TreeKind
    blob: bytes


@dataclass(frozen=True)
class Manifest:
    """A parsed Donjon package manifest (only :func:`parse_manifest` and :func:`build_manifest` make one)."""

    raw: bytes
    digest: str
    module: Descriptor
    config: Descriptor
    trees: tuple[Descriptor, ...]
    workload_digest: str
    annotations: tuple[tuple[str, str], ...]
    #: The secret holding the content key of an encrypted package (``steward:NAME`` -> ``NAME``).
    sealed_to: str | None = None

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        return (self.module, self.config, *self.trees)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def verify_blob(what: str, data: bytes, expected: str) -> None:
    """Raise :class:`DigestMismatch` unless ``data`` hashes to ``expected``."""
    got = digest_of(data)
    if got != expected:
        raise DigestMismatch(what, expected, got)


def canonical_json(value: object) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same value always serialises to the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_json(what: str, data: bytes) -> Any:
    """JSON from an untrusted peer: UTF-8, duplicate keys refused (two readers must never disagree)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise MalformedPackage(what, f"duplicate key {key!r}")
            out[key] = value
        return out

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=pairs)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        if isinstance(e, MalformedPackage):
            raise
        raise MalformedPackage(what, f"not valid JSON: {e}") from e


def safe_relative_path(path: str) -> str:
    """``path`` if it is a relative path that stays inside its root (no ``..``, not absolute), else raise.

    A package carries host paths relative to its config; unpacked, they must land inside the
    package's own directory, never elsewhere on the Keep's host.
    """
    parts = path.split("/")
    if (
        not path
        or path.startswith("/")
        or "\\" in path
        or "\x00" in path
        or any(part in ("", "..") for part in parts if part != ".")
        or len(path) > 1024
    ):
        raise MalformedPackage(f"path {path!r}", "must be a relative path inside the package (no '..')")
    return path


def tar_tree(files: Iterable[tuple[str, bytes | None, bool]]) -> bytes:
    """A deterministic tar of ``(relative path, contents or None for a directory, executable)``.

    Entries sorted by path; times, owners and names of owners zeroed; modes 0755/0644 only
    (PAX format, so long names need no GNU extension). The same tree always gives the same bytes.
    """
    import tarfile  # only builds need it (its import costs a few ms of every run's start)

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, data, executable in sorted(files, key=lambda item: item[0]):
            info = tarfile.TarInfo(safe_relative_path(path))
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                info.type = tarfile.REGTYPE
                info.mode = 0o755 if executable else 0o644
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def build_manifest(
    module: bytes,
    config_source: bytes,
    trees: Sequence[TreeEntry],
    workload_digest: bytes,
    *,
    seal: tuple[str, bytes] | None = None,
) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest of a package and its blobs by digest (the empty config included).

    ``seal`` = (``steward:NAME``, content key) encrypts the module and every tree layer
    (:mod:`donjon.oci.encryption`); the config stays readable.
    """
    blobs: dict[str, bytes] = {digest_of(EMPTY_CONFIG): EMPTY_CONFIG}

    def add(media_type: str, data: bytes, title: str | None = None, *, sealed: bool = False) -> Descriptor:
        annotations = [(TITLE_ANNOTATION, title)] if title is not None else []
        if sealed and seal is not None:
            plain, size = digest_of(data), len(data)
            data = seal_layer(seal[1], media_type, title, data, plain)
            media_type += ENCRYPTED_SUFFIX
            annotations += [(PLAINTEXT_DIGEST_ANNOTATION, plain), (PLAINTEXT_SIZE_ANNOTATION, str(size))]
        digest = digest_of(data)
        blobs[digest] = data
        return Descriptor(media_type, digest, len(data), tuple(sorted(annotations)))

    titles = [entry.path for entry in trees]
    if len(set(titles)) != len(titles):
        raise MalformedPackage("package", "the same path is packaged twice")
    sealed = seal is not None
    layers = [add(MODULE_MEDIA_TYPE, module, sealed=sealed), add(CONFIG_MEDIA_TYPE, config_source)]
    for entry in trees:
        media = DIR_MEDIA_TYPE if entry.kind == "dir" else FILE_MEDIA_TYPE
        layers.append(add(media, entry.blob, safe_relative_path(entry.path), sealed=sealed))
    annotations = {WORKLOAD_DIGEST_ANNOTATION: workload_digest.hex()}
    if seal is not None:
        parse_key_target(seal[0])
        annotations[ENCRYPTION_KEY_ANNOTATION] = seal[0]
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": Descriptor(EMPTY_MEDIA_TYPE, digest_of(EMPTY_CONFIG), len(EMPTY_CONFIG)).to_json(),
        "layers": [layer.to_json() for layer in layers],
        "annotations": annotations,
    }
    return parse_manifest(canonical_json(document)), blobs


def parse_manifest(raw: bytes, *, expected_digest: str | None = None) -> Manifest:
    """Check ``raw`` is a Donjon package manifest (and, if given, that it hashes to ``expected_digest``)."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise TooLarge("manifest", len(raw), MAX_MANIFEST_BYTES)
    digest = digest_of(raw)
    if expected_digest is not None and digest != expected_digest:
        raise DigestMismatch("manifest", expected_digest, digest)
    doc = load_json("manifest", raw)
    if not isinstance(doc, dict):
        raise MalformedPackage("manifest", "not a JSON object")
    if doc.get("schemaVersion") != 2 or doc.get("mediaType") != MANIFEST_MEDIA_TYPE:
        raise MalformedPackage("manifest", f"not an OCI image manifest (mediaType {MANIFEST_MEDIA_TYPE})")
    if doc.get("artifactType") != ARTIFACT_TYPE:
        raise MalformedPackage(
            "manifest", f"artifactType {doc.get('artifactType')!r} is not a Donjon package ({ARTIFACT_TYPE})"
        )
    annotations = _annotations(doc.get("annotations"), "manifest annotations")
    workload = dict(annotations).get(WORKLOAD_DIGEST_ANNOTATION, "")
    if not re.fullmatch(r"[0-9a-f]{64}", workload):
        raise MalformedPackage("manifest", f"no {WORKLOAD_DIGEST_ANNOTATION} annotation of 64 hex digits")
    layers_raw = doc.get("layers")
    if not isinstance(layers_raw, list) or not 2 <= len(layers_raw) <= _MAX_LAYERS:
        raise MalformedPackage("manifest", f"layers: expected 2 to {_MAX_LAYERS} descriptors")
    _descriptor(doc.get("config"), "config")  # checked, then ignored: Donjon packages carry none
    layers = [_descriptor(item, f"layer {i}") for i, item in enumerate(layers_raw)]
    module, config, *trees = layers
    target = dict(annotations).get(ENCRYPTION_KEY_ANNOTATION)
    sealed_to = parse_key_target(target) if target is not None else None
    if module.plain_media_type != MODULE_MEDIA_TYPE:
        raise MalformedPackage("layer 0", f"expected the module ({MODULE_MEDIA_TYPE})")
    if config.media_type != CONFIG_MEDIA_TYPE:
        raise MalformedPackage("layer 1", f"expected the config ({CONFIG_MEDIA_TYPE}, never encrypted)")
    from donjon.config.parse import MAX_CONFIG_BYTES  # here: the run imports it to parse the config

    if config.size > MAX_CONFIG_BYTES:
        # parse_config refuses more: no reason to download up to a whole layer's limit first.
        raise TooLarge("layer 1 (the config)", config.size, MAX_CONFIG_BYTES)
    seen: set[str] = set()
    for i, layer in enumerate(layers):
        # All or nothing: an encrypted package seals the module and every tree, and says with what.
        if layer is not config and layer.sealed != (sealed_to is not None):
            raise MalformedPackage(
                f"layer {i}", f"encrypted and plain layers mixed ({ENCRYPTION_KEY_ANNOTATION} names the key)"
            )
        if layer.sealed and not DIGEST.fullmatch(layer.plaintext_digest):
            raise MalformedPackage(f"layer {i}", f"encrypted without a {PLAINTEXT_DIGEST_ANNOTATION}")
    for i, tree in enumerate(trees, start=2):
        if tree.plain_media_type not in (DIR_MEDIA_TYPE, FILE_MEDIA_TYPE):
            raise MalformedPackage(f"layer {i}", f"unknown media type {tree.media_type!r}")
        title = tree.title
        if title is None:
            raise MalformedPackage(f"layer {i}", f"no {TITLE_ANNOTATION} (the path it unpacks to)")
        safe_relative_path(title)
        if title in seen:
            raise MalformedPackage(f"layer {i}", f"path {title!r} packaged twice")
        seen.add(title)
    return Manifest(raw, digest, module, config, tuple(trees), workload, annotations, sealed_to)


def _annotations(value: object, what: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping) or len(value) > 64:
        raise MalformedPackage(what, "expected an object of at most 64 strings")
    out: list[tuple[str, str]] = []
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > _MAX_ANNOTATION or len(item) > _MAX_ANNOTATION:
            raise MalformedPackage(
                what, f"{key!r}: expected a string of at most {_MAX_ANNOTATION} characters"
            )
        out.append((key, item))
    return tuple(sorted(out))


def _descriptor(value: object, what: str) -> Descriptor:
    if not isinstance(value, dict):
        raise MalformedPackage(what, "expected a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or len(media_type) > 255:
        raise MalformedPackage(what, "mediaType: expected a string")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise MalformedPackage(what, "digest: expected sha256:<64 lowercase hex>")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise MalformedPackage(what, "size: expected a non-negative integer")
    return Descriptor(media_type, digest, size, _annotations(value.get("annotations"), f"{what} annotations"))
