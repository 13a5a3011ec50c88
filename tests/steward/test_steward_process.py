"""``donjon steward`` as a process: init, serve (HTTP, HTTPS), SIGHUP, SIGKILL under load, replicas."""

from __future__ import annotations

import os
import signal
import ssl
import stat
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from donjon.cli import main as cli_main
from donjon.steward.config import load_config
from donjon.steward.service import log_signer, open_log


def test_init_creates_private_files_and_a_valid_configuration(tmp_path, capsys):
    d = tmp_path / "s"
    assert (
        cli_main(["steward", "init", "--dir", str(d), "--curve", "p384", "--trust-domain", "corp.test"]) == 0
    )
    for secret in ("ca-key.pem", "challenge.secret"):
        assert stat.S_IMODE(os.stat(d / secret).st_mode) == 0o600
    assert len((d / "challenge.secret").read_bytes()) == 32
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    assert (
        isinstance(ca.public_key(), ec.EllipticCurvePublicKey) and ca.public_key().curve.name == "secp384r1"
    )
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    config = load_config(d / "steward.toml")
    assert config.trust_domain == "corp.test" and config.log_backend == "sqlite"
    assert cli_main(["policy", "check", "--policy", str(d / "policy.toml")]) == 0
    # A second init refuses to overwrite; --import-ca reuses a CA.
    assert cli_main(["steward", "init", "--dir", str(d)]) == 2
    e = tmp_path / "t"
    assert (
        cli_main(
            ["steward", "init", "--dir", str(e), "--import-ca", str(d / "ca.pem"), str(d / "ca-key.pem")]
        )
        == 0
    )
    assert (e / "ca.pem").read_bytes() == (d / "ca.pem").read_bytes()
    assert stat.S_IMODE(os.stat(e / "ca-key.pem").st_mode) == 0o600
    assert cli_main(["steward", "init", "--dir", str(tmp_path / "u"), "--import-ca", str(d / "ca.pem"),
                     str(d / "challenge.secret")]) == 2  # fmt: skip
    assert cli_main(["steward", "bogus"]) == 2


def test_serve_refuses_a_bad_configuration(tmp_path, env, kit, capsys):
    env.policy.write_text("version = 1\nnonsense = true\n")
    assert cli_main(["steward", "serve", "--config", str(env.config), "--port", "0"]) == 2
    assert "policy.toml:2" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["99999", "-5"])
def test_serve_refuses_a_port_out_of_range_as_usage(env, capsys, port):
    # --port overrides the validated steward.toml port, so it is checked itself (was a traceback).
    assert cli_main(["steward", "serve", "--config", str(env.config), "--port", port]) == 2
    assert "--port must be 0..65535" in capsys.readouterr().err


def test_init_refuses_an_invalid_trust_domain_before_writing(tmp_path, capsys):
    d = tmp_path / "s"
    assert cli_main(["steward", "init", "--dir", str(d), "--trust-domain", "Bad Domain"]) == 2
    assert "--trust-domain 'Bad Domain'" in capsys.readouterr().err
    assert not (d / "steward.toml").exists()


def test_log_verify_and_show(env, kit, capsys):
    keep = kit.Keep(env.vendor)
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        leaf = x509.load_pem_x509_certificates(keep.attest(client, srv.url).content)[0]
        # A logged refusal (an admitted request; junk would only be counted, docs/steward.md "Outcomes").
        other = ec.generate_private_key(ec.SECP256R1())
        assert keep.attest(client, srv.url, report_key=other).status_code == 403
    assert cli_main(["steward", "log", "verify", "--config", str(env.config)]) == 0
    assert "2 entries" in capsys.readouterr().out
    assert cli_main(["steward", "log", "show", "--config", str(env.config), "--format", "json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and '"decision": "issued"' in lines[0] and '"check": "binding"' in lines[1]
    serial = format(leaf.serial_number, "x")
    assert cli_main(["steward", "log", "show", "--config", str(env.config), "--serial", serial]) == 0
    assert "spiffe://example.org/sim/test/web" in capsys.readouterr().out
    # A serial that is not in the log: exit 1 and say so (not a silent exit).
    assert cli_main(["steward", "log", "show", "--config", str(env.config), "--serial", "abcd"]) == 1
    assert "no certificate with serial abcd" in capsys.readouterr().err
    import sqlite3

    with sqlite3.connect(env.dir / "log.db") as conn:
        conn.execute(
            "UPDATE log_entries SET entry = "
            "CAST(replace(CAST(entry AS TEXT), 'binding', 'csr.other') AS BLOB) WHERE seq = 2"
        )
    assert cli_main(["steward", "log", "verify", "--config", str(env.config)]) == 1
    out = capsys.readouterr().out
    assert "log BROKEN" in out and "entry 2" in out


def _tls_files(d):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (d / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    os.chmod(d / "tls-key.pem", 0o600)  # serve refuses a key others can read


def test_https_sighup_reload_and_structured_logs(env, kit):
    _tls_files(env.dir)
    text = env.config.read_text()
    text = text.replace('# tls_cert = "tls.pem"', 'tls_cert = "tls.pem"').replace(
        '# tls_key = "tls-key.pem"', 'tls_key = "tls-key.pem"'
    )
    env.config.write_text(text)
    proc = kit.ServerProcess(env.config)
    try:
        assert proc.url.startswith("https://127.0.0.1:")
        keep = kit.Keep(env.vendor)
        with httpx.Client(verify=ssl.create_default_context(cafile=str(env.dir / "tls.pem"))) as client:
            assert keep.attest(client, proc.url).status_code == 200
            # A bad policy on SIGHUP is refused; the old one stays in force.
            env.policy.write_text(kit.policy_text() + "\nnot valid = = toml\n")
            proc.proc.send_signal(signal.SIGHUP)
            _wait(lambda: proc.events("policy_reload"))
            assert proc.events("policy_reload")[-1]["result"] == "refused"
            assert keep.attest(client, proc.url).status_code == 200
            # A good policy that denies the measurement takes effect.
            denied = kit.policy_text().replace(
                "min_tcb", f'denied_measurements = ["{kit.MEASUREMENT.hex()}"]\nmin_tcb'
            )
            env.policy.write_text(denied)
            proc.proc.send_signal(signal.SIGHUP)
            _wait(lambda: len(proc.events("policy_reload")) == 2)
            assert proc.events("policy_reload")[-1]["result"] == "ok"
            r = keep.attest(client, proc.url)
            assert r.status_code == 403 and r.json()["check"] == "policy.measurement_denied"
            metrics = client.get(f"{proc.url}/metrics").text
            assert 'donjon_steward_policy_reloads_total{result="refused"} 1' in metrics
    finally:
        proc.stop()
    issued = [e for e in proc.events("attest") if e.get("decision") == "issued"]
    assert len(issued) == 2 and all("serial" in e and "ms" in e for e in issued)


def test_sigterm_stops_the_steward_normally(env, kit):
    # SIGTERM is how service managers stop a Steward: graceful, exit 0 ("stopped normally"), not 143.
    proc = kit.ServerProcess(env.config)
    try:
        assert httpx.get(f"{proc.url}/healthz").status_code == 200
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(15) == 0
    finally:
        proc.stop()


def _wait(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _load(url, vendor, kit, received, stop, errors):
    keep = kit.Keep(vendor)
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            try:
                r = keep.attest(client, url)
            except httpx.HTTPError:
                return  # the server died under us
            if r.status_code == 200:
                received.append(x509.load_pem_x509_certificates(r.content)[0])
            else:
                errors.append(r.status_code)


def test_sigkill_under_load_loses_no_issued_certificate(env, kit):
    proc = kit.ServerProcess(env.config)
    received: list[x509.Certificate] = []
    errors: list[int] = []
    stop = threading.Event()
    workers = [threading.Thread(target=_load, args=(proc.url, env.vendor, kit, received, stop, errors))
               for _ in range(4)]  # fmt: skip
    for w in workers:
        w.start()
    _wait(lambda: len(received) >= 20, timeout=60)
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(10)
    stop.set()
    for w in workers:
        w.join(20)
    assert not errors
    # Restart on the same files: the log verifies and holds every certificate a client received.
    again = kit.ServerProcess(env.config)
    try:
        keep = kit.Keep(env.vendor)
        with httpx.Client() as client:
            assert keep.attest(client, again.url).status_code == 200
    finally:
        again.stop()
    config = load_config(env.config)
    store = open_log(config)
    try:
        entries = list(store.entries())
        assert store.verify(log_signer(config).verifier).size == len(entries)
        logged = {e.record.get("serial") for e in entries if e.record.get("decision") == "issued"}
        assert {format(c.serial_number, "x") for c in received} <= logged
    finally:
        store.close()


@pytest.mark.postgres
def test_two_replicas_share_one_postgres_log(tmp_path, vendor, kit, request):
    dsn = request.getfixturevalue("pg_database")
    env = kit.make_env(tmp_path / "steward", vendor, log_backend="postgres", dsn=dsn)
    a = kit.ServerProcess(env.config)
    b = kit.ServerProcess(env.config)
    received: list[x509.Certificate] = []
    errors: list[int] = []
    try:

        def run(url: str) -> None:
            keep = kit.Keep(vendor)
            with httpx.Client(timeout=20) as client:
                for _ in range(15):
                    r = keep.attest(client, url)
                    if r.status_code == 200:
                        received.append(x509.load_pem_x509_certificates(r.content)[0])
                    else:
                        errors.append(r.status_code)

        # A witness follows the one tree through either replica.
        state = tmp_path / "witness.json"
        key = str(env.dir / "log-key.pub")
        assert cli_main(["log", "audit", "--steward", a.url, "--state", str(state), "--log-key", key]) == 0
        threads = [threading.Thread(target=run, args=(u,)) for u in (a.url, b.url, a.url, b.url)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert cli_main(["log", "audit", "--steward", b.url, "--state", str(state)]) == 0
        assert cli_main(["log", "audit", "--steward", a.url, "--state", str(state)]) == 0
        # A nonce from replica A is accepted by replica B (shared secret, stateless).
        keep = kit.Keep(vendor)
        with httpx.Client() as client:
            body = keep.csr(keep.nonce(client, a.url))
            r = client.post(f"{b.url}/attest", content=body, headers={"Content-Type": "application/pkcs10"})
            assert r.status_code == 200
    finally:
        a.stop()
        b.stop()
    assert not errors and len(received) == 60
    config = load_config(env.config)
    store = open_log(config)
    try:
        entries = list(store.entries())
        assert store.verify(log_signer(config).verifier).size == 61
        logged = {e.record["serial"] for e in entries}
        assert {format(c.serial_number, "x") for c in received} <= logged
    finally:
        store.close()


@pytest.fixture
def pg_database(kit):
    import secrets

    import psycopg

    base = kit.postgres_dsn()
    name = f"h5_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_missing_configuration_is_operational(tmp_path, capsys):
    missing = str(tmp_path / "nope.toml")
    assert cli_main(["steward", "serve", "--config", missing]) == 3
    assert cli_main(["steward", "log", "verify", "--config", missing]) == 3
    assert cli_main(["steward", "serve"]) == 2
