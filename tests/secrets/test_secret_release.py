"""The release endpoint through ``donjon steward serve``'s real TLS server: each check by name.

Client certificates are signed with the Steward's CA key directly, so each test chooses the
identity (SPIFFE path, TEE, simulated or not, workload digest) and the validity it needs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from .conftest import StewardFiles, StewardProcess, foreign_ca, run_donjon, secret_get, secret_records

DIGEST = bytes.fromhex("ab" * 32)
VALUE = b"correct horse battery staple"

POLICY = f"""
version = 1

[[secret]]
name = "db-password"
spiffe_paths = ["/db-client"]
digests = ["{DIGEST.hex()}"]
platforms = ["sev-snp", "tdx"]

[[secret]]
name = "dev-token"
spiffe_paths = ["/dev"]
platforms = ["sev-snp", "simulated", "unattested"]
"""


def _started(files: StewardFiles, serve: list[StewardProcess], *, put: bool = True) -> StewardProcess:
    files.policy.write_text(POLICY)
    if put:
        for name in ("db-password", "dev-token"):
            out = run_donjon(
                "steward", "secret", "put", name, "-", "--config", str(files.config), stdin=VALUE
            )
            assert out.returncode == 0, out.stderr
    steward = StewardProcess(files.config)
    serve.append(steward)
    return steward


def test_the_bound_workload_on_a_real_tee_is_released_the_value_and_it_is_logged(
    steward_files: StewardFiles, serve: list[StewardProcess]
) -> None:
    steward = _started(steward_files, serve)
    answer = secret_get(
        steward, steward_files, "db-password", steward_files.client("/db-client", digest=DIGEST)
    )
    assert answer.status_code == 200, answer.text
    assert answer.content == VALUE
    assert answer.headers["donjon-secret-version"] == "1"
    assert answer.headers["cache-control"] == "no-store"
    [record] = secret_records(steward_files)
    assert record["decision"] == "released" and record["version"] == 1
    assert record["spiffe_id"] == "spiffe://example.org/db-client"
    assert isinstance(record["certificate_serial"], str) and "serial" not in record
    assert VALUE.decode() not in json.dumps(record)


@pytest.mark.parametrize(
    ("case", "status", "check"),
    [
        ("no certificate", 401, "client.certificate"),
        ("expired", 403, "client.expired"),
        ("another path", 403, "secret.spiffe_id"),
        ("another digest", 403, "secret.digest"),
        ("simulated TEE for a real-TEE-only secret", 403, "secret.platforms"),
        ("unattested for a real-TEE-only secret", 403, "secret.platforms"),
        ("no rule", 403, "secret.policy"),
        ("name made of dots", 400, "secret.name"),
    ],
)
def test_each_refusal_names_its_check_and_is_logged(
    steward_files: StewardFiles, serve: list[StewardProcess], case: str, status: int, check: str
) -> None:
    steward = _started(steward_files, serve)
    files = steward_files
    name = "db-password"
    cert: tuple[Path, Path] | None
    if case == "no certificate":
        cert = None
    elif case == "expired":
        past = datetime.now(UTC) - timedelta(hours=2)
        cert = files.client("/db-client", digest=DIGEST, lifetime=60, now=past)
    elif case == "another path":
        cert = files.client("/other", digest=DIGEST)
    elif case == "another digest":
        cert = files.client("/db-client", digest=bytes(32))
    elif case.startswith("simulated"):
        cert = files.client("/sim/db-client", digest=DIGEST, simulated=True)
    elif case.startswith("unattested"):
        cert = files.client("/unattested/db-client", digest=DIGEST, tee=None)
    elif case == "no rule":
        cert, name = files.client("/db-client", digest=DIGEST), "unknown"
    else:
        cert, name = files.client("/db-client", digest=DIGEST), "..."
    answer = secret_get(steward, files, name, cert)
    assert answer.status_code == status, answer.text
    assert answer.json()["check"] == check
    assert VALUE not in answer.content
    [record] = secret_records(files)
    assert record["decision"] == "refused" and record["check"] == check


def test_a_marked_certificate_gets_a_secret_only_where_its_rule_lists_the_marker(
    steward_files: StewardFiles, serve: list[StewardProcess]
) -> None:
    steward = _started(steward_files, serve)
    sim = steward_files.client("/sim/dev", simulated=True)
    nil = steward_files.client("/unattested/dev", tee=None)
    assert secret_get(steward, steward_files, "dev-token", sim).content == VALUE
    assert secret_get(steward, steward_files, "dev-token", nil).content == VALUE


def test_another_cas_certificate_never_gets_a_connection(
    steward_files: StewardFiles, serve: list[StewardProcess]
) -> None:
    steward = _started(steward_files, serve)
    cert = steward_files.client("/db-client", digest=DIGEST, ca=foreign_ca())
    with pytest.raises(httpx.HTTPError):
        secret_get(steward, steward_files, "db-password", cert)
    assert secret_records(steward_files) == []
    # The server is unharmed: the right certificate still works.
    good = secret_get(
        steward, steward_files, "db-password", steward_files.client("/db-client", digest=DIGEST)
    )
    assert good.status_code == 200


def test_a_steward_serving_before_the_first_put_releases_the_secret_once_stored(
    steward_files: StewardFiles, serve: list[StewardProcess]
) -> None:
    steward = _started(steward_files, serve, put=False)
    cert = steward_files.client("/db-client", digest=DIGEST)
    assert secret_get(steward, steward_files, "db-password", cert).json()["check"] == "secret.not_found"
    out = run_donjon(
        "steward", "secret", "put", "db-password", "-", "--config", str(steward_files.config), stdin=VALUE
    )
    assert out.returncode == 0, out.stderr
    assert secret_get(steward, steward_files, "db-password", cert).content == VALUE


def test_a_kek_that_does_not_decrypt_stops_serve_before_it_listens(
    steward_files: StewardFiles, serve: list[StewardProcess]
) -> None:
    steward_files.policy.write_text(POLICY)
    out = run_donjon(
        "steward", "secret", "put", "db-password", "-", "--config", str(steward_files.config), stdin=VALUE
    )
    assert out.returncode == 0
    kek = steward_files.directory / "kek.key"
    kek.chmod(0o600)
    kek.write_bytes(b"\x01" * 32)  # another key in the same file
    steward = StewardProcess(steward_files.config, wait=False)
    serve.append(steward)
    assert steward.proc.wait(30) == 3
    steward.stop()
    err = "\n".join(steward.stderr)
    assert "does not unwrap" in err and "serving nothing" in err
    assert '"listening"' not in err
