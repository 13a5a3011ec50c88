"""The guest's view of its secrets (runtime.keep.guest_spec): the in-memory directory's place in
the fd table, FD_NAMES, and environment variables only where the config asks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from donjon.config import parse_config
from donjon.keep.secrets import FetchedSecret, SecretSet
from donjon.runtime.errors import Unsupported
from donjon.runtime.keep import guest_spec
from donjon.wasi import MemoryDir, PreopenDir, Stdio

NOW = datetime(2026, 1, 1, tzinfo=UTC)
STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'


def _held(**values: bytes) -> SecretSet:
    return SecretSet(
        {k.replace("_", "-"): FetchedSecret(k.replace("_", "-"), 1, NOW, v) for k, v in values.items()}
    )


def test_the_directory_follows_stdio_and_dirs_and_holds_the_values(tmp_path: Path) -> None:
    config = parse_config(
        STDIO
        + f'[[files]]\nkind = "dir"\npath = "{tmp_path}"\nguest_path = "/data"\n'
        + '[[secrets]]\nname = "db-password"\n'
    ).config
    spec = guest_spec(config, tmp_path, secrets=_held(db_password=b"pw"))
    kinds = [type(f) for f in spec.files]
    assert kinds == [Stdio, Stdio, Stdio, PreopenDir, MemoryDir]
    memory = spec.files[4]
    assert isinstance(memory, MemoryDir) and memory.guest_path == "/run/secrets"
    assert memory.listing()["db-password"].data == b"pw"
    env = dict(spec.env)
    assert env["FD_NAMES"] == "stdin:stdout:stderr:/data:/run/secrets"
    assert "pw" not in env.values()


def test_env_only_when_asked_and_only_text() -> None:
    config = parse_config(STDIO + '[[secrets]]\nname = "token"\nenv = "TOKEN"\n').config
    spec = guest_spec(config, Path("."), secrets=_held(token=b"t0k"))
    assert ("TOKEN", "t0k") in spec.env
    with pytest.raises(Unsupported, match="UTF-8"):
        guest_spec(config, Path("."), secrets=_held(token=b"\xff\x00"))


def test_declared_secrets_without_fetched_ones_never_start_a_guest() -> None:
    config = parse_config(STDIO + '[[secrets]]\nname = "token"\n').config
    with pytest.raises(Unsupported):
        guest_spec(config, Path("."))
