"""``donjon peer verify`` against a TLS server presenting an identity a real Steward issued."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from donjon.cli import main as donjon_main
from donjon.cli.peer import main
from donjon.keep import KeepIdentity, attest
from donjon.tls import ServerContext


@pytest.fixture
def keep(steward, steward_env, sim_snp, h, tmp_path) -> Iterator[SimpleNamespace]:
    """An attested sim-snp Keep serving TLS with its issued identity, and the CA as a file."""
    result = attest(sim_snp, h.DIGEST, steward.url, steward_env.ca_pem)
    ca_file = tmp_path / "steward-ca.pem"
    ca_file.write_bytes(steward_env.ca_pem)
    with h.TlsEchoServer(ServerContext(KeepIdentity(result.credentials()))) as server:
        yield SimpleNamespace(
            target=f"127.0.0.1:{server.port}", ca=str(ca_file), result=result, server=server
        )


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_right_spiffe_id_verifies(keep, capsys, h):
    code, out, _ = _run(capsys, "verify", keep.target, "--ca", keep.ca, "--spiffe-id", h.SIM_SPIFFE_ID)
    assert code == 0, out
    assert out.startswith(f"OK: {keep.target} is {h.SIM_SPIFFE_ID}")
    assert "TLSv1.3" in out and "key exchange group" in out
    assert "simulated    YES" in out
    assert h.DIGEST.hex() in out and h.MEASUREMENT.hex() in out
    assert f"claims       (extension {h.CLAIMS_OID})" in out


def test_json_output_carries_the_group_and_the_claims(keep, capsys, h):
    code, out, _ = _run(
        capsys,
        "verify",
        keep.target,
        "--ca",
        keep.ca,
        "--spiffe-id",
        h.SIM_SPIFFE_ID,
        "--workload-digest",
        h.DIGEST.hex(),
        "--claims-oid",
        h.CLAIMS_OID,
        "--format",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True
    assert doc["tls"]["version"] == "TLSv1.3" and doc["tls"]["group"]
    assert doc["peer"]["spiffe_id"] == h.SIM_SPIFFE_ID
    assert doc["peer"]["serial"] == keep.result.serial
    assert doc["peer"]["claims"]["workload_digest"] == h.DIGEST.hex()
    assert doc["peer"]["claims"]["tee"] == "sev-snp"


def test_a_wrong_spiffe_id_is_refused(keep, capsys, h):
    wrong = f"spiffe://{h.TRUST_DOMAIN}/sim/test/db"
    code, out, _ = _run(capsys, "verify", keep.target, "--ca", keep.ca, "--spiffe-id", wrong)
    assert code == 1
    assert out.startswith("REFUSED:") and "spiffe_id" in out and wrong in out and h.SIM_SPIFFE_ID in out


def test_a_wrong_workload_digest_is_refused(keep, capsys, h):
    code, out, _ = _run(
        capsys,
        "verify",
        keep.target,
        "--ca",
        keep.ca,
        "--allow-simulated",
        "--workload-digest",
        "00" * 32,
        "--format",
        "json",
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["check"] == "workload_digest" and doc["got"] == h.DIGEST.hex()


def test_a_wrong_ca_is_refused(keep, capsys, tmp_path, sim_vendor, h):
    other = h.make_env(tmp_path / "other", sim_vendor)
    code, out, _ = _run(capsys, "verify", keep.target, "--ca", str(other.dir / "ca.pem"), "--allow-simulated")
    assert code == 1
    # Issue 10: say what is wrong (another Steward's CA), not "path length constraint violated".
    assert "chain" in out and f"not issued by the CA in {other.dir / 'ca.pem'}" in out, out


def test_a_ca_of_another_name_is_named_too(keep, capsys, tmp_path):
    """A CA with another subject: the chain the Keep presents carries its own CA, and path building
    used to fail with "path length constraint violated"."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives import serialization

    from donjon.steward.ca import create_ca

    _, cert = create_ca("Some other CA", now=datetime.now(UTC))
    ca = tmp_path / "other-ca.pem"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    code, out, _ = _run(capsys, "verify", keep.target, "--ca", str(ca), "--allow-simulated")
    assert code == 1
    assert f"not issued by the CA in {ca}" in out and "path length" not in out, out


def test_workload_digest_works_with_a_steward_fresh_from_init(sim_vendor, sim_snp, capsys, tmp_path, h):
    """Issue 10: no claims_oid (init's default), yet the digest is checked: the DICE extension."""
    env = h.make_env(tmp_path / "fresh", sim_vendor, claims_oid=None)
    assert "\nclaims_oid" not in env.config.read_text()
    capsys.readouterr()  # init's own output
    with h.StewardServer(env) as steward:
        result = attest(sim_snp, h.DIGEST, steward.url, env.ca_pem)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(env.ca_pem)
    with h.TlsEchoServer(ServerContext(KeepIdentity(result.credentials()))) as server:
        target = f"127.0.0.1:{server.port}"
        base = ["verify", target, "--ca", str(ca_file), "--allow-simulated"]
        code, out, _ = _run(capsys, *base, "--workload-digest", h.DIGEST.hex(), "--format", "json")
        assert code == 0, out
        doc = json.loads(out)
        assert doc["peer"]["claims_oid"] == "2.23.133.5.4.5"  # tcg-dice-MultiTcbInfo
        claims = doc["peer"]["claims"]
        assert claims["workload_digest"] == h.DIGEST.hex()
        assert claims["tee"] == "sev-snp" and claims["measurement"] == h.MEASUREMENT.hex()
        assert claims["simulated"] is True
        code, out, _ = _run(capsys, *base, "--workload-digest", "00" * 32)
        assert code == 1 and "workload_digest" in out and h.DIGEST.hex() in out


def test_simulated_identities_need_an_opt_in(keep, capsys):
    code, out, _ = _run(capsys, "verify", keep.target, "--ca", keep.ca)
    assert code == 1 and "simulated" in out
    code, out, _ = _run(capsys, "verify", keep.target, "--ca", keep.ca, "--allow-simulated")
    assert code == 0


def test_through_the_donjon_dispatcher(keep, capsys, h):
    assert donjon_main(["peer", "verify", keep.target, "--ca", keep.ca, "--spiffe-id", h.SIM_SPIFFE_ID]) == 0


def test_an_unreachable_peer_is_exit_3(capsys, h, steward_env, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(steward_env.ca_pem)
    code, out, err = _run(capsys, "verify", f"127.0.0.1:{h.free_port()}", "--ca", str(ca), "--timeout", "2")
    assert code == 3
    assert "UNREACHABLE" in err and "cannot connect" in err
    code, out, _ = _run(
        capsys, "verify", f"127.0.0.1:{h.free_port()}", "--ca", str(ca), "--format", "json", "--timeout", "2"
    )
    assert code == 3 and json.loads(out)["error"] == "unreachable"


def _tls12_server(cert: Path, key: Path) -> tuple[socket.socket, threading.Thread]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def serve() -> None:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return sock, thread


def test_a_peer_without_tls13_is_exit_3(capsys, steward_env, tmp_path):
    sock, thread = _tls12_server(steward_env.tls_cert, steward_env.tls_key)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(steward_env.ca_pem)
    try:
        code, _, err = _run(capsys, "verify", f"127.0.0.1:{sock.getsockname()[1]}", "--ca", str(ca))
    finally:
        sock.close()
        thread.join(5)
    assert code == 3 and "handshake failed" in err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["verify"],
        ["verify", "host:1"],
        ["verify", "host:notaport", "--ca", "CA"],
        ["verify", "host:0", "--ca", "CA"],
        ["verify", "::1", "--ca", "CA"],
        ["verify", "[::1", "--ca", "CA"],
        ["verify", "host:1", "--ca", "CA", "--workload-digest", "zz"],
        ["verify", "host:1", "--ca", "CA", "--workload-digest", "00"],
        ["verify", "host:1", "--ca", "CA", "--spiffe-id", "https://x/y"],
        ["verify", "host:1", "--ca", "CA", "--claims-oid", "2.25.318088161835230134714159210687413414018"],
        ["verify", "host:1", "--ca", "CA", "--timeout", "0"],
        ["verify", "host:1", "--ca", "CA", "--format", "xml"],
    ],
)
def test_usage_errors_are_exit_2(argv, capsys, steward_env, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(steward_env.ca_pem)
    assert main([str(ca) if a == "CA" else a for a in argv]) == 2


def test_ca_file_problems(capsys, tmp_path):
    assert main(["verify", "host:1", "--ca", str(tmp_path / "missing.pem")]) == 3
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"not a certificate")
    assert main(["verify", "host:1", "--ca", str(bad)]) == 2
    assert main(["verify", "--help"]) == 0


def test_a_zero_timeout_message_does_not_suggest_zero_is_allowed(capsys, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"unused")
    assert main(["verify", "host:1", "--ca", str(ca), "--timeout", "0"]) == 2
    assert "--timeout must be more than 0 and at most 600 seconds" in capsys.readouterr().err


def test_a_keep_requiring_client_certificates_can_still_be_verified(
    steward, steward_env, sim_snp, h, tmp_path, capsys
):
    # TLS 1.3: the server's certificate arrives before it asks for ours, so the chain is
    # verified even though this client presents none (the Keep then refuses the connection).
    from donjon.tls import ClientAuth, TrustAnchors

    result = attest(sim_snp, h.DIGEST, steward.url, steward_env.ca_pem)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(steward_env.ca_pem)
    auth = ClientAuth(TrustAnchors.steward_ca(steward_env.ca))
    with h.TlsEchoServer(ServerContext(KeepIdentity(result.credentials()), client_auth=auth)) as server:
        code, out, _ = _run(
            capsys, "verify", f"127.0.0.1:{server.port}", "--ca", str(ca), "--spiffe-id", h.SIM_SPIFFE_ID
        )
    assert code == 0, out


# --- --require-logged: the Steward's inclusion proof for the peer's certificate ---


def _logged(keep, steward, steward_env, h, *extra: str) -> list[str]:
    return [
        "verify", keep.target, "--ca", keep.ca, "--spiffe-id", h.SIM_SPIFFE_ID, "--require-logged",
        "--steward", steward.url, "--steward-ca", keep.ca, *extra,
    ]  # fmt: skip


def test_require_logged_checks_the_inclusion_proof(keep, steward, steward_env, h, capsys):
    argv = _logged(keep, steward, steward_env, h, "--log-key", str(steward_env.dir / "log-key.pub"))
    code, out, err = _run(capsys, *argv)
    assert code == 0, out + err
    assert "logged       entry" in out and "inclusion proof verified" in out
    code, out, _ = _run(capsys, *argv, "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["logged"]["origin"] == "example.org/donjon-steward-log"
    assert doc["logged"]["tree_size"] >= doc["logged"]["index"] + 1


def test_require_logged_refuses_under_another_log_key(keep, steward, steward_env, h, capsys, tmp_path):
    from donjon.steward.logkey import create_log_key

    create_log_key(tmp_path / "other.pem", "example.org/donjon-steward-log")
    code, out, _ = _run(
        capsys, *_logged(keep, steward, steward_env, h, "--log-key", str(tmp_path / "other.pub"))
    )
    assert code == 1 and "REFUSED" in out and "logged.checkpoint.signature" in out


def test_require_logged_refuses_a_certificate_the_log_does_not_hold(keep, steward, steward_env, h, capsys):
    # The log is emptied behind the Steward's back (a new database): the serial is not there.
    from donjon.steward.config import load_config
    from donjon.steward.service import log_signer, open_log

    steward.steward.log.close()
    for suffix in ("", "-wal", "-shm"):
        steward_env.dir.joinpath("log.db" + suffix).unlink(missing_ok=True)

    config = load_config(steward_env.config)
    steward.steward.log = open_log(config, signer=log_signer(config))
    code, out, _ = _run(
        capsys, *_logged(keep, steward, steward_env, h, "--log-key", str(steward_env.dir / "log-key.pub"))
    )
    assert code == 1 and "logged.answer.log.not_found" in out


def test_require_logged_usage(keep, steward, steward_env, h, capsys):
    code, _, err = _run(capsys, "verify", keep.target, "--ca", keep.ca, "--require-logged")
    assert code == 2 and "--steward URL and --log-key" in err
    code, _, err = _run(capsys, "verify", keep.target, "--ca", keep.ca, "--steward", steward.url)
    assert code == 2 and "go with --require-logged" in err
    code, _, err = _run(capsys, *_logged(keep, steward, steward_env, h, "--log-key", keep.ca))
    assert code == 2 and "not a log verifier key" in err
    code, _, _ = _run(capsys, *_logged(keep, steward, steward_env, h, "--log-key", "/nonexistent"))
    assert code == 3
