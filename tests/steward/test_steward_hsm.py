"""The Steward with its CA key and log key in a PKCS#11 token (SoftHSM2), through the real CLI.

``steward init --pkcs11-uri`` creates both keys in the token; ``steward serve`` (a process)
issues over HTTP to a sim-snp Keep, signing in the token; the log's checkpoints verify under the
token's Ed25519 key; the token's keys cannot be read out; a wrong PIN, a missing token, a
missing key and no PIN at all each stop ``serve`` with one ``donjon:`` line and exit 3.
"""

from __future__ import annotations

import ssl
import subprocess
import sys

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from donjon.cli import main as cli_main
from donjon.hsm import Pkcs11Uri, parse_uri
from donjon.hsm.token import TokenSession
from donjon.steward.config import load_config


def _hsm_env(tmp_path, softhsm, vendor, kit, label):
    """A Steward directory like conftest's make_env, made by init --pkcs11-uri."""
    d = tmp_path / "steward"
    code = cli_main(
        ["steward", "init", "--dir", str(d), "--trust-domain", "example.org",
         "--pkcs11-uri", softhsm.uri(label)]
    )  # fmt: skip
    assert code == 0
    assert not (d / "ca-key.pem").exists() and not (d / "log-key.pem").exists()
    (d / "sim-ark.pem").write_bytes(vendor.ark_pem())
    coll = d / "collateral" / "snp-report"
    coll.mkdir(parents=True, exist_ok=True)
    (coll / "ark.crl").write_bytes(vendor.crl())
    (coll / "cert_chain.pem").write_bytes(vendor.cert_chain_pem())
    text = (d / "steward.toml").read_text().replace("simulated = []", 'simulated = ["sim-ark.pem"]')
    (d / "steward.toml").write_text(text)
    (d / "policy.toml").write_text(kit.policy_text())
    return d


def _serve(config, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "donjon", "steward", "serve", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_issuance_with_the_ca_and_log_keys_in_the_token(tmp_path, softhsm, vendor, kit, capsys):
    label = softhsm.label_for("steward")
    d = _hsm_env(tmp_path, softhsm, vendor, kit, label)
    config = load_config(d / "steward.toml")
    assert isinstance(config.ca_key, Pkcs11Uri) and config.ca_key.object == label
    assert isinstance(config.log_key, Pkcs11Uri) and config.log_key.object == f"{label}-log"
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    ca.verify_directly_issued_by(ca)

    server = kit.ServerProcess(d / "steward.toml")
    try:
        # HTTPS (init's default): its serving certificate was signed in the token too.
        assert server.url.startswith("https://")
        with httpx.Client(timeout=30, verify=ssl.create_default_context(cafile=str(d / "ca.pem"))) as client:
            keep = kit.Keep(vendor)
            answer = keep.attest(client, server.url)
            assert answer.status_code == 200, answer.text
            leaf = x509.load_pem_x509_certificates(answer.content)[0]
            checkpoint = client.get(f"{server.url}/log/checkpoint")
    finally:
        server.stop()
    assert server.proc.returncode == 0
    leaf.verify_directly_issued_by(ca)  # signed in the token, verified by cryptography
    assert leaf.public_key() == keep.key.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org/sim/test/web"]
    assert checkpoint.status_code == 200 and checkpoint.text.startswith("example.org/donjon-steward-log\n")
    # Every checkpoint was signed in the token; log verify checks them against log-key.pub.
    capsys.readouterr()
    assert cli_main(["steward", "log", "verify", "--config", str(d / "steward.toml")]) == 0
    assert "log OK: 1 entries" in capsys.readouterr().out

    # The keys are in the token, and the token will not show them.
    for obj in (label, f"{label}-log"):
        session = TokenSession.open(parse_uri(softhsm.uri(obj)))
        try:
            key = session.find_key(ObjectClass.PRIVATE_KEY)
            assert key[Attribute.EXTRACTABLE] is False and key[Attribute.SENSITIVE] is True
            with pytest.raises(p11e.AttributeSensitive):
                key[Attribute.VALUE]
        finally:
            session.close()
    # No CA or log key material on disk: only public files, the challenge secret, and the HTTPS
    # serving key (a leaf key the CA in the token certified, renewable with tls-cert).
    pems = [p.name for p in d.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert pems == ["tls-key.pem"]
    assert softhsm.pin not in (d / "steward.toml").read_text()  # steward.toml names the PIN file


def test_a_second_init_uses_the_keys_already_in_the_token(tmp_path, softhsm, capsys):
    label = softhsm.label_for("again")
    uri = softhsm.uri(label)
    assert cli_main(["steward", "init", "--dir", str(tmp_path / "a"), "--pkcs11-uri", uri]) == 0
    first = capsys.readouterr().out
    assert cli_main(["steward", "init", "--dir", str(tmp_path / "b"), "--pkcs11-uri", uri]) == 0
    second = capsys.readouterr().out
    vkey = [line for line in first.splitlines() if "log verifier key" in line]
    assert vkey and vkey == [line for line in second.splitlines() if "log verifier key" in line]
    a = x509.load_pem_x509_certificate((tmp_path / "a" / "ca.pem").read_bytes())
    b = x509.load_pem_x509_certificate((tmp_path / "b" / "ca.pem").read_bytes())
    assert a.public_key() == b.public_key()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pkcs11:token=donjon-test", "add object=LABEL"),
        ("pkcs11:token=donjon-test;object=x?pin-value=1", "must not carry pin-value"),
        ("pkcs11:token=donjon-test;object=x;slot-id=3", "slot-id is not supported"),
    ],
)
def test_init_refuses_a_bad_uri_as_usage(tmp_path, softhsm, capsys, uri, message):
    assert cli_main(["steward", "init", "--dir", str(tmp_path / "s"), "--pkcs11-uri", uri]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "s" / "steward.toml").exists()


def test_init_with_a_missing_token_exits_3(tmp_path, softhsm, capsys):
    uri = softhsm.uri("ca", token="absent-token")
    assert cli_main(["steward", "init", "--dir", str(tmp_path / "s"), "--pkcs11-uri", uri]) == 3
    err = capsys.readouterr().err
    assert err.startswith("donjon: PKCS#11 token 'absent-token': no such token") and err.count("\n") == 1
    assert not (tmp_path / "s" / "steward.toml").exists()


def _with_key_setting(d, uri):
    text = (d / "steward.toml").read_text().splitlines()
    text = [f'ca_key = "{uri}"' if line.startswith("ca_key = ") else line for line in text]
    (d / "steward.toml").write_text("\n".join(text) + "\n")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong-pin", "the token refused the PIN"),
        ("no-pin", "the token needs a PIN"),
        ("missing-token", "no such token"),
        ("missing-key", "no private key with object="),
    ],
)
def test_serve_stops_with_exit_3_when_the_token_cannot_be_used(tmp_path, softhsm, vendor, kit, case, message):
    label = softhsm.label_for("serve")
    d = _hsm_env(tmp_path, softhsm, vendor, kit, label)
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("0000\n")
    wrong.chmod(0o600)
    uri = {
        "wrong-pin": f"pkcs11:token={softhsm.label};object={label}?pin-source=file:{wrong}",
        "no-pin": softhsm.uri(label, pin=False),
        "missing-token": softhsm.uri(label, token="unplugged"),
        "missing-key": softhsm.uri("never-created"),
    }[case]
    _with_key_setting(d, uri)
    run = _serve(d / "steward.toml")
    assert run.returncode == 3, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("donjon: cannot start the Steward: PKCS#11 token")
    assert message in lines[0] and "0000" not in lines[0]


def test_a_ca_certificate_that_is_not_the_token_keys_is_refused(tmp_path, softhsm, vendor, kit):
    d = _hsm_env(tmp_path, softhsm, vendor, kit, softhsm.label_for("mismatch"))
    other = tmp_path / "other"
    assert cli_main(["steward", "init", "--dir", str(other)]) == 0
    (d / "ca.pem").write_bytes((other / "ca.pem").read_bytes())
    run = _serve(d / "steward.toml")
    assert run.returncode == 2 and "the token holds another key" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_bad_pkcs11_uri_in_steward_toml_is_a_config_error_with_its_line(tmp_path, softhsm, vendor, kit):
    d = _hsm_env(tmp_path, softhsm, vendor, kit, softhsm.label_for("bad"))
    _with_key_setting(d, "pkcs11:token=x;object=a;object=b")
    run = _serve(d / "steward.toml")
    assert run.returncode == 2
    assert "steward.toml:" in run.stderr and "object is given more than once" in run.stderr


def test_the_certificate_is_der_that_cryptography_reparses_byte_for_byte(tmp_path, softhsm, vendor, kit):
    """The reassembled certificate (token signature in place of the throwaway one) is canonical DER."""
    from donjon.steward.service import build_steward

    d = _hsm_env(tmp_path, softhsm, vendor, kit, softhsm.label_for("der"))
    steward = build_steward(load_config(d / "steward.toml"))
    try:
        ca = steward.ca
        leaf_key = kit.Keep(vendor).key
        from datetime import UTC, datetime

        issued = ca.issue(
            kit.spki(leaf_key), spiffe_path="/x", dns_names=[], lifetime=60, now=datetime.now(UTC)
        )
        der = issued.der
        again = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.DER)
        assert again == der
    finally:
        steward.close()


def test_a_token_without_eddsa_keeps_the_log_key_in_a_file(tmp_path, softhsm, monkeypatch, capsys):
    """Many HSMs lack CKM_EDDSA (PKCS#11 3.0): the CA key goes in the token, the log key in a file."""
    import donjon.hsm.keys
    from donjon.hsm import MechanismUnsupported
    from donjon.steward.service import build_steward

    def no_eddsa(*args, **kwargs):
        raise MechanismUnsupported(
            softhsm.label, "the token does not offer this mechanism (MechanismInvalid)"
        )

    monkeypatch.setattr(donjon.hsm.keys, "create_ed25519_key", no_eddsa)
    d = tmp_path / "s"
    label = softhsm.label_for("no-eddsa")
    assert cli_main(["steward", "init", "--dir", str(d), "--pkcs11-uri", softhsm.uri(label)]) == 0
    assert "the log key is a file (log-key.pem)" in capsys.readouterr().err
    config = load_config(d / "steward.toml")
    assert isinstance(config.ca_key, Pkcs11Uri) and config.ca_key.object == label
    assert (
        config.log_key == d.resolve() / "log-key.pem" and (d / "log-key.pem").stat().st_mode & 0o777 == 0o600
    )
    build_steward(config).close()


def test_log_migrate_and_show_with_the_log_key_in_the_token(tmp_path, softhsm, vendor, kit, capsys):
    d = _hsm_env(tmp_path, softhsm, vendor, kit, softhsm.label_for("migrate"))
    capsys.readouterr()
    assert cli_main(["steward", "log", "migrate", "--config", str(d / "steward.toml")]) == 0
    assert "nothing to convert" in capsys.readouterr().out
    wrong = tmp_path / "wrong"
    wrong.write_text("0000")
    wrong.chmod(0o600)
    text = (d / "steward.toml").read_text().replace(str(softhsm.pin_file), str(wrong))
    (d / "steward.toml").write_text(text)
    # Another process: this one is already logged in to the token.
    run = subprocess.run(
        [sys.executable, "-m", "donjon", "steward", "log", "migrate", "--config", str(d / "steward.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 3 and "the token refused the PIN" in run.stderr and "Traceback" not in run.stderr


def test_a_token_that_stops_signing_while_serving_is_a_logged_503_and_nothing_is_issued(
    tmp_path, softhsm, vendor, kit
):
    from donjon.steward.service import build_steward

    d = _hsm_env(tmp_path, softhsm, vendor, kit, softhsm.label_for("gone"))
    steward = build_steward(load_config(d / "steward.toml"))
    with kit.ServerThread(steward) as srv, httpx.Client(timeout=30) as client:
        keep = kit.Keep(vendor)
        assert keep.attest(client, srv.url).status_code == 200
        size = steward.log.size()
        steward.ca.key.close()  # the CA key's session ends (the token is gone)
        answer = keep.attest(client, srv.url)
        assert answer.status_code == 503
        assert answer.json() == {
            "error": "unavailable",
            "check": "server.token",
            "reason": "the Steward's key token cannot sign now; nothing was issued",
        }
        # One accounted outcome (docs/steward.md "Outcomes"): the admitted request's refusal is
        # logged (the log key's own session still signs), and no certificate is.
        assert steward.log.size() == size + 1
        last = list(steward.log.entries())[-1].record
        assert last["decision"] == "refused" and last["check"] == "server.token"
        assert "serial" not in last
