"""``donjon example``: the shipped example workload, written where the user asks."""

from __future__ import annotations

from pathlib import Path

from donjon.cli import main
from donjon.demo.run import demo_module

ROOT = Path(__file__).resolve().parents[1]


def test_example_http_writes_the_demo_module(tmp_path, capsys):
    out = tmp_path / "http.wasm"
    assert main(["example", "http", "-o", str(out)]) == 0
    assert out.read_bytes() == demo_module("http") == (ROOT / "examples/http/http.wasm").read_bytes()
    assert "http" in capsys.readouterr().out


def test_example_usage_errors(tmp_path, capsys):
    assert main(["example", "nosuch", "-o", str(tmp_path / "x")]) == 2
    assert main(["example", "http"]) == 2
    assert "-o FILE" in capsys.readouterr().err
    assert main(["example", "--list"]) == 0 and "http" in capsys.readouterr().out
    assert main(["example", "http", "-o", str(tmp_path / "missing" / "x.wasm")]) == 3
    assert main(["example", "--help"]) == 0 and "examples:" in capsys.readouterr().out
