"""wasi-testsuite (wasm32-wasip1: 72 tests) against Donjon's host — the acceptance line is 72/72,
through the library (``run_module``) and through the ``donjon run`` command line in a child process,
in quick-run mode (no config), as a wasmtime user would run them.

Runs from a temporary copy of the suite (the shared folder is read-only); ``*.cleanup`` files are
removed before and after each test, as doc/specification.md asks. The JSON spec of each test gives
args, env (the whole environment), root (pre-opened as "/" at fd 3), exit code and stdout/stderr
prefixes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from donjon.wasi import GuestSpec, PreopenDir, Stdio, run_module

SUITE_DIRS = ("c", "assemblyscript", "rust")


def _shared_suite() -> Path | None:
    # Parametrisation happens at collection time, before fixtures exist: this mirrors tests/conftest.py's
    # lookup only to NAME the cases; every case reads the suite through the `wasi_testsuite` fixture.
    env = os.environ.get("DONJON_SHARED")
    base = Path(env) if env else Path(__file__).resolve().parents[3] / "shared"
    path = base / "wasi-testsuite"
    return path if path.is_dir() else None


def _test_ids() -> list[str]:
    suite = _shared_suite()
    if suite is None:
        return ["<suite missing>"]
    return sorted(
        f"{d}/{w.stem}" for d in SUITE_DIRS for w in (suite / "tests" / d / "wasm32-wasip1").glob("*.wasm")
    )


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    return wasmtime.Engine()


def _remove_cleanup(folder: Path) -> None:
    for path in sorted(folder.rglob("*.cleanup"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


@pytest.fixture
def suite_copy(wasi_testsuite: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of the suite's test folders (the shared one is read-only), cleaned around the test."""
    target = tmp_path / "suite"
    for d in SUITE_DIRS:
        shutil.copytree(wasi_testsuite / "tests" / d / "wasm32-wasip1", target / d, symlinks=True)
    _remove_cleanup(target)
    yield target
    _remove_cleanup(target)


def test_suite_has_72_wasip1_tests(wasi_testsuite: Path) -> None:
    found = sorted(
        f"{d}/{w.stem}"
        for d in SUITE_DIRS
        for w in (wasi_testsuite / "tests" / d / "wasm32-wasip1").glob("*.wasm")
    )
    assert len(found) == 72
    assert found == _test_ids()  # every test of the suite is one parametrised case below


@pytest.mark.parametrize("test_id", _test_ids())
def test_wasi_testsuite(test_id: str, suite_copy: Path, engine: wasmtime.Engine, tmp_path: Path) -> None:
    suite_dir, name = test_id.split("/")
    folder = suite_copy / suite_dir
    wasm = folder / f"{name}.wasm"
    spec_file = folder / f"{name}.json"
    config = json.loads(spec_file.read_text()) if spec_file.exists() else {}

    files: list[Stdio | PreopenDir] = [Stdio("stdin"), Stdio("stdout"), Stdio("stderr")]
    if config.get("root"):
        files.append(PreopenDir(host_path=(folder / config["root"]).resolve(), guest_path="/", writable=True))
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with (
        open(os.devnull, "rb") as stdin,
        open(out_path, "wb") as stdout,
        open(err_path, "wb") as stderr,
    ):
        spec = GuestSpec(
            args=[wasm.name, *config.get("args", [])],
            env=list(config.get("env", {}).items()),
            files=files,
            stdio_fds=(stdin.fileno(), stdout.fileno(), stderr.fileno()),
        )
        code = run_module(wasmtime.Store(engine), wasmtime.Module.from_file(engine, str(wasm)), spec)
    out = out_path.read_text(errors="replace")
    err = err_path.read_text(errors="replace")
    assert code == config.get("exit_code", 0), f"exit code {code}; stderr: {err[-2000:]}"
    assert out.startswith(config.get("stdout", "")), out
    assert err.startswith(config.get("stderr", "")), err


@pytest.mark.parametrize("test_id", _test_ids())
def test_wasi_testsuite_through_the_cli(test_id: str, suite_copy: Path, tmp_path: Path) -> None:
    # `donjon run` as a wasmtime user runs a module: --dir-rw for the root, --env, the arguments.
    # Quick-run mode gives the guest exactly that environment (no FD_COUNT/FD_NAMES), which the
    # suite's environ tests check.
    suite_dir, name = test_id.split("/")
    folder = suite_copy / suite_dir
    wasm = folder / f"{name}.wasm"
    spec_file = folder / f"{name}.json"
    config = json.loads(spec_file.read_text()) if spec_file.exists() else {}

    argv = [sys.executable, "-m", "donjon", "run", "--backend", "nil", "--no-cache"]
    if config.get("root"):
        argv += ["--dir-rw", f"{(folder / config['root']).resolve()}::/"]
    for key, value in config.get("env", {}).items():
        argv += ["--env", f"{key}={value}"]
    argv += [str(wasm), "--", *config.get("args", [])]
    with open(os.devnull, "rb") as stdin:
        result = subprocess.run(argv, stdin=stdin, capture_output=True, cwd=tmp_path, timeout=120)
    out = result.stdout.decode(errors="replace")
    err = result.stderr.decode(errors="replace")
    # Donjon's own line (a nil Keep is not attested) comes before the guest runs; the rest is the guest's.
    first, _, guest_err = err.partition("\n")
    assert first.startswith("donjon: warning: backend 'nil'") and "NOT attested" in first, err[-2000:]
    assert result.returncode == config.get("exit_code", 0), (
        f"exit code {result.returncode}; stderr: {err[-2000:]}"
    )
    assert out.startswith(config.get("stdout", "")), out
    assert guest_err.startswith(config.get("stderr", "")), err
    assert "Traceback" not in err
