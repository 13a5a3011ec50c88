"""``donjon run``'s backend selection and Steward options, through ``main(argv)`` (no Steward needed)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from donjon.cli import main
from donjon.steward.ca import create_ca

ROOT = Path(__file__).resolve().parents[2]
HELLO = str(ROOT / "examples" / "hello" / "hello.wasm")
NO_TEE = not Path("/sys/kernel/config/tsm/report").exists() and not Path("/dev/attestation").exists()


@pytest.mark.skipif(not NO_TEE, reason="this machine has a TEE interface: auto would pick it")
def test_auto_falls_back_to_nil_with_one_warning_naming_why(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", HELLO]) == 0
    err = capfd.readouterr().err
    assert err.count("\n") == 1
    assert "NOT attested (auto: no TEE found here; see 'donjon platform info')" in err


@pytest.mark.skipif(not NO_TEE, reason="this machine has a TEE interface: auto would pick it")
def test_auto_never_falls_back_to_nil_outside_the_allow_list(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "Donjon.toml"
    config.write_text('backends = ["snp", "tdx"]\n')
    assert main(["run", "--config", str(config), HELLO]) == 3
    err = capfd.readouterr().err
    assert "no allowed attested backend is usable here" in err and "Traceback" not in err


def test_print_digest_needs_no_backend(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--backend", "snp", "--print-digest", HELLO]) == 0
    out, _ = capfd.readouterr()
    assert len(out.strip()) == 64


def test_a_simulated_backend_without_a_steward_does_not_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--backend", "sim-snp", "--sim-vendor", str(tmp_path), HELLO]) == 2
    err = capfd.readouterr().err
    assert "needs a Steward" in err and "Hello" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attest-timeout", "soon"], "expected seconds"),
        (["--attest-timeout", "-1"], "between 0 and 3600"),
        (["--steward"], "--steward needs a value"),
    ],
)
def test_bad_steward_options_are_usage_errors(
    args: list[str], message: str, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *args, *([HELLO] if args != ["--steward"] else [])]) == 2
    assert message in capfd.readouterr().err


def test_a_plain_http_steward_is_a_usage_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    _, ca = create_ca("test", now=datetime.datetime.now(datetime.UTC))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    argv = [
        "run",
        "--backend",
        "nil",
        "--steward",
        "http://127.0.0.1:1",
        "--steward-ca",
        str(tmp_path / "ca.pem"),
    ]
    assert main([*argv, HELLO]) == 2
    assert "plain HTTP" in capfd.readouterr().err


def test_an_enarx_toml_with_a_steward_but_no_ca_still_runs_on_nil(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "Enarx.toml"
    config.write_text('steward = "https://steward.example.org"\n')
    assert main(["run", "--backend", "nil", "--config", str(config), HELLO]) == 0
    err = capfd.readouterr().err
    assert "no Steward CA to pin" in err and "NOT attested" in err
