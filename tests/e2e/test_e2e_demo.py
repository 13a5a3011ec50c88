"""``donjon demo`` end to end: the README's main job, as a user runs it (a child process)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from donjon.cli import main
from donjon.demo.run import DemoFailed, DemoOptions, demo_module, run_demo

STEPS = (
    "[1/5] Steward started",
    "[2/5] Keep starting on sim-snp",
    "[3/5] Certificate issued",
    "[4/5] Client verified the Keep",
    "[5/5] HTTPS GET /",
)


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "donjon", "demo", "--timeout", "20"],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr + out
    assert "Traceback" not in proc.stderr + out
    for step in STEPS:
        assert step in out
    assert "SIMULATED SNP (AMD) vendor - demo only, never in production" in out
    digest = re.search(r"workload digest  ([0-9a-f]{64})\n", out)
    assert digest is not None
    assert f"workload digest  {digest.group(1)}: OK" in out  # the client read it from the claims
    assert "spiffe://demo.donjon.local/sim/demo/http: OK (expected)" in out
    assert re.search(r"TLS +TLSv1\.3 \S+, group \S+", out)
    assert "HTTP/1.1 200 OK" in out and "Hello from a Donjon Keep" in out
    removed = re.search(r"Steward stopped, (\S+) removed\.", out)
    assert removed is not None and not Path(removed.group(1)).exists()


def test_demo_workload_is_the_http_example() -> None:
    root = Path(__file__).resolve().parents[2]
    assert demo_module("http") == (root / "examples" / "http" / "http.wasm").read_bytes()


def test_demo_refuses_a_non_simulated_backend_before_starting_anything() -> None:
    out = io.StringIO()
    with pytest.raises(DemoFailed, match="sim-snp or sim-tdx"):
        run_demo(DemoOptions(backend="nil"), out=out)
    assert out.getvalue() == ""


def test_demo_usage_errors(capsys) -> None:
    assert main(["demo", "--timeout", "0"]) == 2
    assert main(["demo", "--backend", "snp"]) == 2
    assert "--timeout must be more than 0" in capsys.readouterr().err


def test_a_step_timeout_below_one_second_is_named_as_given() -> None:
    # `donjon demo --timeout 0.01` used to fail with "within 0 s", which reads as a bug.
    from donjon.demo.run import _KeepProcess

    keep = _KeepProcess([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        with pytest.raises(DemoFailed, match=r"within 0\.05 s"):
            keep.wait_for("listening", 0.05)
    finally:
        keep.stop()
