"""``donjon steward secret``: exit codes, limits, and no value ever printed."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from donjon.cli.steward import main
from donjon.steward.secrets.names import MAX_SECRET_BYTES


@pytest.fixture
def config(tmp_path: Path) -> str:
    assert main(["init", "--dir", str(tmp_path / "st")]) == 0
    return str(tmp_path / "st" / "steward.toml")


def _put(config: str, name: str, data: bytes, tmp_path: Path, command: str = "put") -> int:
    path = tmp_path / "value"
    path.write_bytes(data)
    return main(["secret", command, name, "--file", str(path), "--config", config])


def test_list_shows_versions_and_sizes_never_values(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _put(config, "api-token", b"tok-123456", tmp_path) == 0
    assert _put(config, "api-token", b"tok-abcdefgh", tmp_path, "rotate") == 0
    capsys.readouterr()
    assert main(["secret", "list", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "api-token\t1\t10\t" in out and "api-token\t2\t12\t" in out
    assert "tok-" not in out


def test_put_from_standard_input(config: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from-stdin")))
    assert main(["secret", "put", "s", "-", "--config", config]) == 0


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["put", "../escape"], 2),
        (["put", "a/b"], 2),
        (["put", ".."], 2),
        (["rotate", "missing"], 1),
        (["prune", "missing"], 1),
        (["delete", "missing"], 1),
    ],
)
def test_bad_names_and_missing_secrets(
    config: str, tmp_path: Path, args: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--file", str(tmp_path / "v")] if args[0] in ("put", "rotate") else []
    (tmp_path / "v").write_bytes(b"v")
    assert main(["secret", *args, *extra, "--config", config]) == code
    err = capsys.readouterr().err
    assert err.startswith("donjon: ") and len(err.strip().splitlines()) == 1


def test_an_oversized_value_is_refused_before_anything_is_stored(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _put(config, "big", bytes(MAX_SECRET_BYTES + 1), tmp_path) == 2
    assert "1048576-byte limit" in capsys.readouterr().err
    assert not (Path(config).parent / "kek.key").exists()


def test_put_of_an_existing_name_is_refused(config: str, tmp_path: Path) -> None:
    assert _put(config, "a", b"1", tmp_path) == 0
    assert _put(config, "a", b"2", tmp_path) == 1


def test_a_kek_that_does_not_decrypt_is_an_operational_error(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _put(config, "a", b"1", tmp_path) == 0
    (Path(config).parent / "kek.key").write_bytes(b"\x02" * 32)
    capsys.readouterr()
    assert main(["secret", "list", "--config", config]) == 3
    assert "does not unwrap" in capsys.readouterr().err


def test_each_change_is_a_log_entry_without_the_value(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _put(config, "a", b"value-xyz", tmp_path) == 0
    assert main(["secret", "delete", "a", "--config", config]) == 0
    capsys.readouterr()
    assert main(["log", "show", "--config", config, "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"decision":"put"' in out.replace(" ", "") and '"decision":"delete"' in out.replace(" ", "")
    assert "value-xyz" not in out
