"""Secrets end to end through the real command line (docs/secrets.md).

A Steward run by ``donjon steward serve`` (its files prepared as for the local demo Steward,
trusting the simulated vendors), secrets stored with ``donjon steward secret put`` from standard
input, and Keeps started with ``donjon run``: a sim-snp Keep whose C workload
(examples/secretsha) reads ``/run/secrets/db-password`` and serves its SHA-256 over TLS; the
same module with another digest, and a ``nil`` Keep, refused the secret; a rotation seen after
the next renewal; and afterwards no byte of either value anywhere on disk — the Steward's
folder (its database included), the workload's folder, the Keep's temporary directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets as pysecrets
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from donjon.config import parse_config, workload_digest
from donjon.demo.steward import LocalSteward, demo_policy

from .conftest import EXAMPLES, TIMEOUT, Keep, StewardProcess, config_text, free_port
from .conftest import donjon_cli as _donjon

SECRETSHA = EXAMPLES / "secretsha" / "secretsha.wasm"


def _policy(rules: list[tuple[bytes, str]], secret: str, *, lifetime: str = "1h") -> str:
    """The demo policy (simulated TEEs; nil Keeps too) plus ``secret``'s [[secret]] rule."""
    from donjon.demo.steward import WorkloadRule

    text = demo_policy([WorkloadRule(d, p) for d, p in rules], lifetime=lifetime, allow_unattested=True)
    return text + secret


def _workload(tmp: Path, url: str, ca: Path, *, env: dict[str, str] | None = None) -> tuple[Path, bytes, int]:
    port = free_port()
    config = tmp / f"secretsha-{port}.toml"
    text = config_text(
        steward_url=url, steward_ca=ca, port=port, name="web", backends=("sim-snp", "nil"), env=env
    )
    config.write_text(text + '[[secrets]]\nname = "db-password"\n')
    digest = workload_digest(SECRETSHA.read_bytes(), parse_config(config.read_bytes()).config)
    return config, digest, port


def _ask(port: int, ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # a /sim certificate, named by SPIFFE ID; the CA is what is pinned
    data = b""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw) as tls,
    ):
        while chunk := tls.recv(4096):
            data += chunk
    return data.decode().strip()


def _scan(roots: list[Path], needles: list[bytes]) -> list[str]:
    found = []
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                found += [f"{path} holds secret #{i}" for i, n in enumerate(needles) if n in data]
    return found


def _log(config: Path) -> list[dict[str, Any]]:
    out = _donjon("steward", "log", "show", "--config", str(config), "--format", "json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line)["record"] for line in out.stdout.decode().splitlines()]


def test_a_sim_snp_keep_reads_its_secret_from_memory_sees_a_rotation_and_leaves_nothing_on_disk(
    tmp_path: Path, sim_vendor_dir: Path
) -> None:
    first = b"pw-" + pysecrets.token_hex(24).encode()
    second = b"pw2-" + pysecrets.token_hex(24).encode()
    keep_tmp = tmp_path / "keep-tmp"
    keep_tmp.mkdir()
    steward_dir = tmp_path / "steward"
    local = LocalSteward(steward_dir, sim_vendor_dir=sim_vendor_dir, policy="version = 1\n")
    ca = local.ca_path
    # The workload's digest covers the Steward's URL, known once serve has bound its port: the
    # policy naming that digest is written then, and reloaded (SIGHUP).
    steward = StewardProcess(local.config_path)
    keep = None
    try:
        config, digest, port = _workload(tmp_path, steward.url, ca)
        rule = (
            '\n[[secret]]\nname = "db-password"\nspiffe_paths = ["/secretsha"]\n'
            f'digests = ["{digest.hex()}"]\nplatforms = ["simulated"]\n'
        )
        # Short certificates: renewal (and the secrets' re-fetch) comes within seconds.
        local.policy_path.write_text(_policy([(digest, "/secretsha")], rule, lifetime="9s"))
        steward.proc.send_signal(signal.SIGHUP)
        put = _donjon(
            "steward", "secret", "put", "db-password", "-", "--config", str(local.config_path), stdin=first
        )
        assert put.returncode == 0, put.stderr
        deadline = time.monotonic() + TIMEOUT
        while not any('"policy_reload"' in line for line in steward.stderr):
            assert time.monotonic() < deadline, steward.stderr
            time.sleep(0.05)

        keep = Keep(
            [
                "--sim-vendor",
                str(sim_vendor_dir),
                "--no-cache",
                "--backend",
                "sim-snp",
                "--config",
                str(config),
                str(SECRETSHA),
            ],
            env={"TMPDIR": str(keep_tmp)},
        )
        keep.wait_for("secrets fetched: db-password v1")
        keep.wait_for("listening on")
        assert _ask(port, ca) == hashlib.sha256(first).hexdigest()

        rotated = _donjon(
            "steward",
            "secret",
            "rotate",
            "db-password",
            "-",
            "--config",
            str(local.config_path),
            stdin=second,
        )
        assert rotated.returncode == 0, rotated.stderr
        keep.wait_for("secrets refreshed: db-password v2", timeout=30)
        assert _ask(port, ca) == hashlib.sha256(second).hexdigest()
        assert first not in "\n".join(keep.stderr).encode() and second not in "\n".join(keep.stderr).encode()
    finally:
        if keep is not None:
            keep.stop()
        steward.stop()
    released = [r for r in _log(local.config_path) if r.get("path") == "secret"]
    assert [r["version"] for r in released if r["decision"] == "released"][:2] == [1, 2]
    assert all(r["spiffe_id"].endswith("/sim/secretsha") and r["certificate_serial"] for r in released)
    assert _scan([tmp_path, keep_tmp], [first, second]) == []
    assert first not in "\n".join(steward.stderr).encode()


def test_another_digest_and_a_nil_keep_are_refused_the_secret_and_do_not_start(
    tmp_path: Path, sim_vendor_dir: Path
) -> None:
    local = LocalSteward(tmp_path / "steward", sim_vendor_dir=sim_vendor_dir, policy="version = 1\n")
    ca = local.ca_path
    steward = StewardProcess(local.config_path)
    try:
        config, digest, _ = _workload(tmp_path, steward.url, ca)
        other, other_digest, _ = _workload(tmp_path, steward.url, ca, env={"SECRET_EXIT_AFTER": "1"})
        assert other_digest != digest
        rule = (
            f'\n[[secret]]\nname = "db-password"\ndigests = ["{digest.hex()}"]\nplatforms = ["simulated"]\n'
        )
        local.policy_path.write_text(_policy([(digest, "/secretsha"), (other_digest, "/other")], rule))
        steward.proc.send_signal(signal.SIGHUP)
        put = _donjon(
            "steward", "secret", "put", "db-password", "-", "--config", str(local.config_path), stdin=b"x"
        )
        assert put.returncode == 0, put.stderr
        deadline = time.monotonic() + TIMEOUT
        while not any('"policy_reload"' in line for line in steward.stderr):
            assert time.monotonic() < deadline, steward.stderr
            time.sleep(0.05)
        base = ["--sim-vendor", str(sim_vendor_dir), "--no-cache"]
        wrong = Keep([*base, "--backend", "sim-snp", "--config", str(other), str(SECRETSHA)])
        assert wrong.wait() == 1
        assert "secret db-password: refused by the Steward: secret.digest" in wrong.err
        assert "listening on" not in wrong.err
        nil = Keep([*base, "--backend", "nil", "--config", str(config), str(SECRETSHA)])
        assert nil.wait() == 1
        assert "secret.platforms" in nil.err and "unattested" in nil.err
        for k in (wrong, nil):
            k.stop()
    finally:
        steward.stop()
    refused = [r for r in _log(local.config_path) if r.get("path") == "secret" and r["decision"] == "refused"]
    assert {r["check"] for r in refused} == {"secret.digest", "secret.platforms"}
    assert any(r["spiffe_id"].startswith("spiffe://") and "/unattested/" in r["spiffe_id"] for r in refused)
