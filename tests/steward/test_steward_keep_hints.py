"""What a Keep says when it meets a Steward fresh from ``init`` the wrong way (issue 10).

- an ``https://`` URL to a Steward serving plain HTTP: named at once (OpenSSL's
  ``WRONG_VERSION_NUMBER`` means the Steward speaks plain HTTP), never retried for half a minute;
- an ``http://`` URL: refused unless ``--steward-insecure-http``, a flag that exists;
- a simulated Keep without the Steward's simulated vendor: the refusal names ``--sim-vendor``.

The Stewards are real ``donjon steward serve`` processes made by ``donjon steward init``; the
Keeps are ``donjon run`` (in this process) or :class:`~donjon.keep.Attestor`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from donjon.backends.nil import NilBackend
from donjon.cli import main as cli_main
from donjon.keep import Attestor, RetryPolicy, StewardEndpoint
from donjon.keep.errors import StewardProtocolError, StewardUnreachable

ROOT = Path(__file__).resolve().parents[2]
HELLO = str(ROOT / "examples" / "hello" / "hello.wasm")


@pytest.fixture
def no_sim_vendor_env(monkeypatch):
    monkeypatch.delenv("DONJON_SIM_VENDOR", raising=False)


def _steward(tmp_path: Path, kit, *extra: str):
    d = tmp_path / "steward"
    assert cli_main(["steward", "init", "--dir", str(d), "--trust-domain", "hints.test", *extra]) == 0
    return d, kit.ServerProcess(d / "steward.toml")


def test_https_to_a_plain_http_steward_says_so_at_once(tmp_path, kit, capsys):
    d, proc = _steward(tmp_path, kit, "--insecure-http")
    try:
        https_url = proc.url.replace("http://", "https://")
        endpoint = StewardEndpoint.from_pem(https_url, (d / "ca.pem").read_bytes())
        attestor = Attestor(NilBackend(), bytes(32), endpoint, retry=RetryPolicy(total=30))
        started = time.monotonic()
        with pytest.raises(StewardProtocolError) as info:
            attestor.attest()
        assert time.monotonic() - started < 5 and attestor.attempts == 1
        message = str(info.value)
        assert "WRONG_VERSION_NUMBER" in message or "plain HTTP" in message
        assert "serves plain HTTP" in message and "--steward-insecure-http" in message
    finally:
        proc.stop()


def test_http_urls_need_the_flag_that_the_message_names(tmp_path, kit, capfd):
    d, proc = _steward(tmp_path, kit, "--insecure-http")
    ca = str(d / "ca.pem")
    try:
        argv = ["run", "--backend", "nil", "--attest-timeout", "5", "--steward", proc.url, "--steward-ca", ca]
        assert cli_main([*argv, HELLO]) == 2
        err = capfd.readouterr().err
        assert "plain HTTP" in err and "--steward-insecure-http" in err
        # With the flag the Keep reaches the Steward, which refuses a nil Keep by default: the refusal
        # is the Steward's own answer, so the URL was accepted and used.
        assert cli_main(["run", "--steward-insecure-http", *argv[1:], HELLO]) == 1
        assert "attestation refused by the Steward" in capfd.readouterr().err
    finally:
        proc.stop()


def test_http_to_an_https_steward_suggests_https(tmp_path, kit):
    d, proc = _steward(tmp_path, kit)
    try:
        http_url = proc.url.replace("https://", "http://")
        endpoint = StewardEndpoint.from_pem(http_url, (d / "ca.pem").read_bytes(), allow_insecure_http=True)
        attestor = Attestor(NilBackend(), bytes(32), endpoint, retry=RetryPolicy(total=0))
        with pytest.raises(StewardUnreachable) as info:
            attestor.attest()
        assert "use https://" in str(info.value)
    finally:
        proc.stop()


def test_run_help_documents_the_insecure_flag(capsys):
    assert cli_main(["run", "--help"]) == 0
    assert "--steward-insecure-http" in capsys.readouterr().out


def test_a_simulated_keep_without_the_stewards_vendor_is_told_which_option_fixes_it(
    tmp_path, kit, capfd, no_sim_vendor_env
):
    d, proc = _steward(tmp_path, kit, "--simulated")
    base = ["run", "--backend", "sim-snp", "--steward", proc.url, "--steward-ca", str(d / "ca.pem")]
    try:
        # No --sim-vendor: a vendor of its own, whose root this Steward never saw.
        assert cli_main([*base, HELLO]) == 1
        err = capfd.readouterr().err
        assert "chain.root" in err and "--sim-vendor" in err and "steward init --simulated" in err
        # Another folder's vendor: the same advice, naming that folder.
        other = tmp_path / "other-vendor"
        assert cli_main([*base[:3], "--sim-vendor", str(other), *base[3:], HELLO]) == 1
        err = capfd.readouterr().err
        assert f"simulated vendor in {other} is not one the Steward trusts" in err
        # The Steward's vendor: past the chain, refused by the starter policy (no workload yet),
        # and no vendor advice.
        assert cli_main([*base[:3], "--sim-vendor", str(d / "sim-vendor"), *base[3:], HELLO]) == 1
        err = capfd.readouterr().err
        assert "policy." in err and "--sim-vendor" not in err
    finally:
        proc.stop()
