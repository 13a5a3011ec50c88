"""``donjon example``: the shipped example workload and its Donjon.toml, written where the user asks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from donjon.cli import main
from donjon.config import parse_config
from donjon.demo.run import EXAMPLE_PORT, demo_module

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_example_http_writes_the_demo_module(tmp_path, capsys):
    out = tmp_path / "http.wasm"
    assert main(["example", "http", "-o", str(out)]) == 0
    assert out.read_bytes() == demo_module("http") == (ROOT / "examples/http/http.wasm").read_bytes()
    captured = capsys.readouterr()
    assert captured.out == ""  # what was written is said on stderr: stdout is for data
    assert f"wrote {out}" in captured.err


def test_example_writes_its_donjon_toml_beside_the_module_so_next_steps_work(tmp_path, capsys, monkeypatch):
    out = tmp_path / "app.wasm"
    assert main(["example", "http", "-o", str(out)]) == 0
    config = tmp_path / "Donjon.toml"
    assert f"wrote {config}" in capsys.readouterr().err
    parsed = parse_config(config.read_bytes(), origin=str(config)).config
    listen = [f for f in parsed.files if f.kind == "listen"]
    assert [(f.name, f.addr, f.port, f.prot) for f in listen] == [("web", "127.0.0.1", EXAMPLE_PORT, "tls")]
    # steward init's next step 1, exactly as printed:
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--print-digest", "--config", "Donjon.toml", "app.wasm"]) == 0
    assert len(capsys.readouterr().out.strip()) == 64


def test_config_out_and_port(tmp_path, capsys):
    out = tmp_path / "m.wasm"
    config = tmp_path / "conf" / "keep.toml"
    config.parent.mkdir()
    assert main(["example", "http", "-o", str(out), "--config-out", str(config), "--port", "9443"]) == 0
    assert not (tmp_path / "Donjon.toml").exists()
    parsed = parse_config(config.read_bytes(), origin=str(config)).config
    assert [f.port for f in parsed.files if f.kind == "listen"] == [9443]


def test_both_files_get_mode_0644_whatever_the_umask(tmp_path, capsys, umask_000):
    assert main(["example", "http", "-o", str(tmp_path / "http.wasm")]) == 0
    assert _mode(tmp_path / "http.wasm") == _mode(tmp_path / "Donjon.toml") == 0o644


@pytest.mark.parametrize("existing", ["http.wasm", "Donjon.toml"])
def test_an_existing_file_is_refused_before_anything_is_written(tmp_path, capsys, existing):
    (tmp_path / existing).write_text("mine\n")
    assert main(["example", "http", "-o", str(tmp_path / "http.wasm")]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / existing).read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_force_replaces_a_planted_symlink_and_never_writes_through_it(tmp_path, capsys):
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    (tmp_path / "Donjon.toml").symlink_to(victim)
    (tmp_path / "http.wasm").write_text("old\n")
    assert main(["example", "http", "-o", str(tmp_path / "http.wasm")]) == 2
    assert main(["example", "http", "-o", str(tmp_path / "http.wasm"), "--force"]) == 0
    assert victim.read_text() == "do not touch\n"
    assert not (tmp_path / "Donjon.toml").is_symlink()
    assert (tmp_path / "http.wasm").read_bytes() == demo_module("http")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_example_usage_errors(tmp_path, capsys):
    assert main(["example", "nosuch", "-o", str(tmp_path / "x")]) == 2
    assert main(["example", "http"]) == 2
    assert "-o FILE" in capsys.readouterr().err
    assert main(["example", "--list"]) == 0 and "http" in capsys.readouterr().out
    assert main(["example", "http", "-o", str(tmp_path / "missing" / "x.wasm")]) == 3
    assert not list(tmp_path.iterdir())
    assert main(["example", "http", "-o", str(tmp_path / "x.wasm"), "--port", "70000"]) == 2
    assert main(["example", "http", "-o", str(tmp_path / "x"), "--config-out", str(tmp_path / "x")]) == 2
    assert main(["example", "--help"]) == 0 and "examples:" in capsys.readouterr().out
