"""Arm CCA evidence at the Steward (issue 9, finding 4): CPAK keys pinned by the policy.

``[platform.cca] platform_keys`` names PEM or JWK files of the CCA platform keys the Steward
trusts (no public vendor root exists for them). The published sample tokens
(../shared/vectors/cca, see its MANIFEST.tsv: signed with the TF-M sample CPAK whose private key
is public) verify with their sample key pinned — as *simulated* evidence, so under ``/sim/`` —
and are refused with a named check without it. Before the fix the verifier was called without
keys: a 500 with no log entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from donjon import csr, oids
from donjon.cli import main as cli_main

PKCS10 = {"Content-Type": "application/pkcs10"}
DIGEST = bytes.fromhex("c0" * 32)
TOKENS = (("ccatoken", "cca_token.cbor"), ("trustee", "cca-example-token.cbor"))


def _policy(keys: str) -> str:
    return f"""
version = 1
allow_simulated = true

[platform.cca]
allowed_measurements = ["*"]
{keys}

[[workload]]
digest = "{DIGEST.hex()}"
spiffe_path = "/cca/app"
platforms = ["cca", "simulated"]
"""


@pytest.fixture
def cca_env(env, kit):
    """The Steward directory of conftest, its policy replaced by a CCA one with both sample keys copied in."""
    base = kit.need_shared("vectors", "cca")
    (env.dir / "cpak.pem").write_bytes((base / "ccatoken" / "cca_platform.pub").read_bytes())
    (env.dir / "cpak.jwk").write_bytes((base / "trustee" / "cpak-pub.json").read_bytes())
    return env, base


def _csr(client: httpx.Client, url: str, token: bytes, kit) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    nonce = kit.Keep.nonce(client, url)
    return csr.build_csr(key, statements=[(oids.EVIDENCE_CCA, token)], workload_digest=DIGEST, nonce=nonce)


@pytest.mark.parametrize("keys", ["", 'platform_keys = ["cpak.pem"]', 'platform_keys = ["cpak.jwk"]'])
def test_cca_csr_is_decided_and_logged_never_a_500(cca_env, kit, keys):
    """Without a pinned key: refused by the CPAK check. With the sample key (PEM or JWK): the token
    verifies and the refusal moves on to the binding (the sample's challenge is 0xab.., not this
    CSR's binding). Every answer is a logged refusal, never a 500."""
    env, base = cca_env
    env.policy.write_text(_policy(keys))
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        for folder, name in TOKENS:
            token = (base / folder / name).read_bytes()
            r = client.post(f"{srv.url}/attest", content=_csr(client, srv.url, token, kit), headers=PKCS10)
            assert r.status_code == 403, r.text
            body = r.json()
            expected = "binding" if keys else "evidence.cca.platform.key"
            assert body["check"] == expected, body
            if not keys:
                assert "platform_keys" in body["reason"]
        records = [e.record for e in srv.steward.log.entries()]
    assert [r["check"] for r in records] == [expected] * len(TOKENS)
    assert all(r["evidence_kind"] == "cca-token" for r in records)
    if keys:
        # The verifier ran with the pinned key and recognised the sample CPAK as a test key.
        assert all(r["claims"]["simulated"] is True for r in records)


@pytest.mark.parametrize(("folder", "name"), TOKENS)
def test_policy_test_issues_the_samples_as_simulated_with_their_key_pinned(cca_env, folder, name, capsys):
    env, base = cca_env
    token = str(base / folder / name)
    args = ["policy", "test", "--policy", str(env.policy), "--kind", "cca-token"]
    args += ["--workload-digest", DIGEST.hex(), "--evidence", token, "--format", "json"]
    env.policy.write_text(_policy('platform_keys = ["cpak.pem", "cpak.jwk"]'))
    assert cli_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "would issue"
    assert out["spiffe_path"] == "/sim/cca/app" and out["simulated"] is True
    env.policy.write_text(_policy(""))
    assert cli_main(args) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["decision"], out["check"]) == ("refused", "evidence.cca.platform.key")


def test_sample_tokens_need_simulated_in_the_workload_s_platforms(cca_env, capsys):
    """The sample CPAK proves no hardware: a workload that does not list "simulated" is refused."""
    env, base = cca_env
    env.policy.write_text(_policy('platform_keys = ["cpak.pem"]').replace('["cca", "simulated"]', '["cca"]'))
    token = str(base / "ccatoken" / "cca_token.cbor")
    args = ["policy", "test", "--policy", str(env.policy), "--kind", "cca-token"]
    args += ["--workload-digest", DIGEST.hex(), "--evidence", token, "--format", "json"]
    assert cli_main(args) == 1
    assert json.loads(capsys.readouterr().out)["check"] == "policy.platforms"


@pytest.mark.parametrize(
    ("keys", "files", "message"),
    [
        ('platform_keys = ["missing.pem"]', {}, "cannot read missing.pem"),
        ('platform_keys = ["bad.pem"]', {"bad.pem": b"-----BEGIN PUBLIC KEY-----\nAAAA\n"}, "bad.pem"),
        ('platform_keys = ["big.pem"]', {"big.pem": b"x" * 5000}, "larger than"),
        ("platform_keys = [1]", {}, "list of file names"),
    ],
)
def test_platform_keys_are_validated_at_load(tmp_path: Path, keys, files, message):
    from donjon.steward.errors import ConfigError
    from donjon.steward.policy import load_policy

    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / "policy.toml"
    path.write_text(_policy(keys))
    with pytest.raises(ConfigError, match=message) as info:
        load_policy(str(path))
    assert info.value.line == 7


def test_platform_keys_only_in_the_cca_table():
    from donjon.steward.errors import ConfigError
    from donjon.steward.policy import parse_policy

    with pytest.raises(ConfigError, match="unknown key 'platform_keys'"):
        parse_policy('[platform.sev-snp]\nallowed_measurements = ["*"]\nplatform_keys = []\n')


def test_the_policy_digest_covers_the_pinned_keys(cca_env):
    """The log names the policy by its digest: swapping a key file under the same text changes it."""
    from donjon.steward.policy import load_policy

    env, _ = cca_env
    env.policy.write_text(_policy('platform_keys = ["cpak.pem"]'))
    before = load_policy(str(env.policy)).digest
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    (env.dir / "cpak.pem").write_bytes(
        other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert load_policy(str(env.policy)).digest != before
