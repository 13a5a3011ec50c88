"""Registry references: ``REGISTRY/REPO:TAG`` and ``REGISTRY/REPO@sha256:HEX``. Pure.

The grammar is the OCI Distribution Specification's (v1.1, "Pulling manifests"): a repository
name is ``[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*`` and a tag
``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``; the registry is a host name or address with an optional
port. Unlike Docker, Donjon never guesses a default registry (``docker.io``) or tag (``latest``):
what runs in a Keep is named in full.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from donjon.oci.errors import BadReference

__all__ = ["DIGEST", "SCHEME", "Reference", "parse_digest", "parse_reference"]

#: ``donjon run oci://REGISTRY/REPO:TAG`` (the prefix that tells a package from a file).
SCHEME = "oci://"

_REPO = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
#: ``sha256:<64 lowercase hex>``, the only digest Donjon accepts (manifests, blobs, the cache).
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_REFERENCE = 1024


@dataclass(frozen=True)
class Reference:
    """A parsed reference: ``tag`` or ``digest`` (``sha256:<hex>``) or both (``REPO:TAG@DIGEST``)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``REGISTRY/REPO``: cosign's ``docker-reference``."""
        return f"{self.registry}/{self.repository}"

    def pinned(self, digest: str) -> Reference:
        """The same repository at ``digest`` (what a resolved tag becomes)."""
        return Reference(self.registry, self.repository, self.tag, parse_digest(digest))

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse_digest(text: str) -> str:
    """``sha256:<64 lowercase hex>``, the only digest algorithm Donjon accepts."""
    if not DIGEST.fullmatch(text):
        raise BadReference(text, "expected a digest sha256:<64 lowercase hex digits>")
    return text


def parse_reference(text: str, *, require_digest: bool = False) -> Reference:
    """Parse ``[oci://]REGISTRY[:PORT]/REPO(:TAG|@sha256:HEX|:TAG@sha256:HEX)``."""
    original = text
    if len(text) > _MAX_REFERENCE:
        raise BadReference(text[:64] + "...", f"longer than {_MAX_REFERENCE} characters")
    text = text.removeprefix(SCHEME)
    digest: str | None = None
    if "@" in text:
        text, _, digest_text = text.partition("@")
        digest = parse_digest(digest_text)
    registry, slash, rest = text.partition("/")
    if not slash or not rest:
        raise BadReference(original, "expected REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:...")
    host, colon, port = registry.rpartition(":") if registry.count(":") == 1 else (registry, "", "")
    if colon and not (port.isdigit() and 0 < int(port) < 65536):
        raise BadReference(original, f"bad port {port!r} in registry {registry!r}")
    if not _HOST.fullmatch(host if colon else registry):
        raise BadReference(original, f"bad registry host {registry!r} (Donjon needs it named in full)")
    tag: str | None = None
    slash_at = rest.rfind("/")
    colon_at = rest.rfind(":")
    if colon_at > slash_at:
        rest, tag = rest[:colon_at], rest[colon_at + 1 :]
        if not _TAG.fullmatch(tag):
            raise BadReference(original, f"bad tag {tag!r}")
    if not _REPO.fullmatch(rest) or len(rest) > 255:
        raise BadReference(original, f"bad repository name {rest!r} (lowercase, a-z 0-9 . _ - /)")
    if tag is None and digest is None:
        raise BadReference(original, "name a tag (:TAG) or a digest (@sha256:...); there is no default")
    if require_digest and digest is None:
        raise BadReference(original, "name the manifest by digest (@sha256:...), not by tag")
    return Reference(registry, rest, tag, digest)
