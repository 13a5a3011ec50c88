"""The workload digest: a workload's identity, independent of how its config is written.

DESIGN.md "One run, as data": workload digest = SHA-256("donjon-workload-v1" || 0x00 ||
SHA-256(module bytes) || SHA-256(canonical config)), where the canonical config is the
*parsed* config with defaults filled in, serialised as JSON with sorted keys, no
whitespace, UTF-8. Comments, key order and spelled-out defaults therefore do not change
it; any change in meaning does. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any

from donjon.config.model import ConnectEntry, FileEntry, WorkloadConfig

__all__ = ["WORKLOAD_DIGEST_LABEL", "canonical_config", "module_digest", "workload_digest"]

WORKLOAD_DIGEST_LABEL = b"donjon-workload-v1"


def canonical_config(config: WorkloadConfig) -> bytes:
    """The canonical JSON form of ``config``.

    ``env`` becomes a JSON object (environment variable names are unique, so its order
    carries no meaning); ``args`` and ``files`` stay lists (their order is argv and fd order);
    ``backends`` is a list in the user's order or ``null`` when every backend is accepted.
    ``steward_ca`` is left out: it says where the Keep reads its pin of the Steward's CA on this
    host (like ``--steward-ca``), not what the workload is; the Steward URL is in.
    ``limits`` (``[limits]``, docs/run.md) is always in, every default filled in, sizes in bytes
    and the deadline in milliseconds: how much of the host the workload may take is part of what it
    is, and a config that writes a default out has the digest of one that leaves it implicit.
    A ``connect`` entry's ``peer_identity`` (whom the workload trusts) is in, as a sorted list;
    an entry without one leaves the key out, so configs written before the key existed keep
    their digests. ``fd_env`` is in only when off (a quick run without a config, whose guest
    gets no ``FD_COUNT``/``FD_NAMES``), for the same reason.
    So do ``allow_simulated`` and ``allow_unattested`` on ``connect``: in when true, out when false.
    ``secrets`` (in file order) and ``secrets_dir`` are in only when the config declares secrets.
    """
    import json  # only when a digest is wanted: a plain ``donjon run`` should not pay for it

    document: dict[str, object] = {
        "steward": config.steward,
        "args": list(config.args),
        "env": dict(config.env),
        "files": [_canonical_entry(entry) for entry in config.files],
        "backends": None if config.backends is None else list(config.backends),
        "limits": config.limits.canonical(),
    }
    if not config.fd_env:
        document["fd_env"] = False
    if config.secrets:
        # Which secrets the workload is given, and where, is part of what it is (a secret in
        # an environment variable is another guest environment). In only when there are some.
        document["secrets"] = [asdict(entry) for entry in config.secrets]
        document["secrets_dir"] = config.secrets_dir
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _canonical_entry(entry: FileEntry) -> dict[str, Any]:
    fields = asdict(entry)
    if isinstance(entry, ConnectEntry):
        for key in ("peer_identity", "allow_simulated", "allow_unattested"):
            if not fields[key]:
                del fields[key]
    return fields


def module_digest(module: bytes) -> bytes:
    """SHA-256 of the module bytes (also the module cache's key)."""
    return hashlib.sha256(module).digest()


def workload_digest(module: bytes, config: WorkloadConfig, *, module_sha256: bytes | None = None) -> bytes:
    """The 32-byte workload digest; pass ``module_sha256`` if it is already known."""
    inner = module_sha256 if module_sha256 is not None else module_digest(module)
    if len(inner) != 32:
        raise ValueError("module_sha256 must be 32 bytes")
    config_hash = hashlib.sha256(canonical_config(config)).digest()
    return hashlib.sha256(WORKLOAD_DIGEST_LABEL + b"\x00" + inner + config_hash).digest()
