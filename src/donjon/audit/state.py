"""A witness's memory: the log key it was given and the last checkpoint it verified.

The state file is JSON ``{"log_key": "<vkey>", "checkpoint": "<signed note>"}``. It
is re-verified on every load (a state file edited by hand must not become the
witness's truth), and replaced atomically (a new file beside it, fsync, rename)
only after a new checkpoint passed every check.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from donjon.tlog.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint, parse_vkey

__all__ = ["StateError", "WitnessState", "load_state", "save_state"]

MAX_STATE = 64 * 1024


class StateError(Exception):
    """The state file cannot be read or does not hold a verified checkpoint."""


@dataclass(frozen=True)
class WitnessState:
    verifier: NoteVerifier
    note: bytes
    checkpoint: Checkpoint


def load_state(path: Path) -> WitnessState | None:
    """The state in ``path``; None if the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateError(f"cannot open {path}: {e.strerror}") from e
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_STATE + 1)
    if len(data) > MAX_STATE:
        raise StateError(f"{path} is larger than {MAX_STATE} bytes")
    try:
        doc = json.loads(data)
        verifier = parse_vkey(doc["log_key"])
        note = doc["checkpoint"].encode()
        checkpoint = open_checkpoint(note, verifier)
    except (ValueError, KeyError, TypeError, AttributeError, NoteError) as e:
        raise StateError(f"{path} does not hold a verified checkpoint: {e}") from e
    return WitnessState(verifier=verifier, note=note, checkpoint=checkpoint)


def save_state(path: Path, state: WitnessState) -> None:
    data = json.dumps(
        {"log_key": state.verifier.vkey(), "checkpoint": state.note.decode(), "size": state.checkpoint.size},
        indent=1,
        sort_keys=True,
    ).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(
        tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644
    )
    try:
        os.fchmod(fd, 0o644)
        os.write(fd, data + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
