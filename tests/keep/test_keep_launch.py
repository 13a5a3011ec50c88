"""donjon.keep.launch: the Keep's identity at start, and the exit code of each failure."""

from __future__ import annotations

import pytest

from donjon.backends import NilBackend
from donjon.keep import AttestationRefused, KeepIdentity, RetryPolicy, StewardUnreachable, StewardUntrusted
from donjon.keep.errors import EvidenceUnavailable, IssuedCertificateInvalid
from donjon.keep.launch import (
    MAX_STEWARD_CA_BYTES,
    InvalidStewardUrl,
    StewardCaError,
    StewardRequired,
    StewardSettings,
    describe,
    exit_code,
    launch_identity,
    load_steward_ca,
    steward_settings,
)

FAST = RetryPolicy(initial=0.05, max_delay=0.1, total=0.3)


def test_nil_without_a_steward_is_self_signed_and_says_so(h):
    warnings: list[str] = []
    with launch_identity(NilBackend(), h.DIGEST, None, warn=warnings.append) as keep:
        assert keep.self_signed and keep.attested is None and keep.renewer is None
        assert not keep.identity.credentials.attested
    assert len(warnings) == 1 and "SELF-SIGNED" in warnings[0] and "NOT attested" in warnings[0]


def test_an_attested_backend_without_a_steward_never_gets_a_self_signed_identity(sim_snp, h):
    with pytest.raises(StewardRequired) as e:
        launch_identity(sim_snp, h.DIGEST, None, warn=pytest.fail)
    assert e.value.backend == "sim-snp" and exit_code(e.value) == 2
    assert "never falls back to a self-signed certificate" in str(e.value)


def test_attested_identity_is_held_renewed_and_closed(steward, steward_env, sim_snp, h):
    settings = StewardSettings(url=steward.url, ca=steward_env.ca, retry=FAST)
    keep = launch_identity(sim_snp, h.DIGEST, settings)
    try:
        assert isinstance(keep.identity, KeepIdentity)
        assert keep.attested is not None and str(keep.attested.spiffe_id) == h.SIM_SPIFFE_ID
        assert keep.identity.credentials.leaf == keep.attested.leaf
        assert keep.steward_ca == steward_env.ca
        assert keep.renewer is not None and keep.renewer._thread is not None
        assert 0 < keep.timings["evidence"] < keep.timings["attest"]
    finally:
        keep.close()
    assert not keep.renewer._thread.is_alive()
    keep.close()  # twice is harmless


def test_a_refusal_is_exit_1_with_the_stewards_reason(steward, steward_env, sim_snp):
    settings = StewardSettings(url=steward.url, ca=steward_env.ca, retry=FAST)
    with pytest.raises(AttestationRefused) as e:
        launch_identity(sim_snp, bytes(32), settings)  # a digest the policy does not name
    assert exit_code(e.value) == 1
    assert describe(e.value).startswith(f"attestation refused by the Steward: {e.value.check}: ")
    assert describe(e.value).endswith("serving nothing")


def test_an_unreachable_steward_is_exit_3_after_bounded_retries(steward_env, sim_snp, h):
    settings = StewardSettings(url=f"https://127.0.0.1:{h.free_port()}", ca=steward_env.ca, retry=FAST)
    with pytest.raises(StewardUnreachable) as e:
        launch_identity(sim_snp, h.DIGEST, settings)
    assert e.value.attempts >= 2 and exit_code(e.value) == 3
    assert "no self-signed fall-back" in describe(e.value)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AttestationRefused("policy.workload", "no", status=403), 1),
        (IssuedCertificateInvalid("key", "not ours"), 1),
        (StewardRequired("snp", "no URL"), 2),
        (InvalidStewardUrl("http://x", "plain HTTP"), 2),
        (StewardCaError("ca.pem", "not PEM", unreadable=False), 2),
        (StewardCaError("ca.pem", "cannot read", unreadable=True), 3),
        (StewardUnreachable("https://x", "refused", attempts=3, elapsed=1.0), 3),
        (StewardUntrusted("https://x", "wrong CA"), 3),
        (EvidenceUnavailable("snp", "EIO"), 3),
    ],
)
def test_exit_codes_by_cause(error, code):
    assert exit_code(error) == code


def test_steward_ca_file_checks(tmp_path, steward_env):
    with pytest.raises(StewardCaError) as e:
        load_steward_ca(tmp_path / "missing.pem")
    assert e.value.unreadable
    (tmp_path / "junk.pem").write_text("hello\n")
    with pytest.raises(StewardCaError) as e:
        load_steward_ca(tmp_path / "junk.pem")
    assert not e.value.unreadable and "not PEM" in e.value.reason
    (tmp_path / "big.pem").write_bytes(steward_env.ca_pem + b"\n" * MAX_STEWARD_CA_BYTES)
    with pytest.raises(StewardCaError) as e:
        load_steward_ca(tmp_path / "big.pem")
    assert "larger than" in e.value.reason
    (tmp_path / "ca.pem").write_bytes(steward_env.ca_pem)
    assert load_steward_ca(tmp_path / "ca.pem") == steward_env.ca


def test_steward_settings_resolve_the_ca_and_check_the_url(tmp_path, steward_env):
    (tmp_path / "ca.pem").write_bytes(steward_env.ca_pem)
    assert steward_settings(None, "ca.pem", base_dir=tmp_path) is None
    settings = steward_settings("https://steward.example.org", "ca.pem", base_dir=tmp_path)
    assert settings is not None and settings.ca == steward_env.ca
    assert settings.ca_source == str(tmp_path / "ca.pem")
    with pytest.raises(StewardCaError, match="must be pinned"):
        steward_settings("https://steward.example.org", None)
    with pytest.raises(InvalidStewardUrl):
        steward_settings("http://steward.example.org", "ca.pem", base_dir=tmp_path)
