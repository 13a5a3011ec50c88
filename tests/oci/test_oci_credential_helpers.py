"""Docker credential helpers (``credHelpers``/``credsStore``): run as Docker runs them, bounded, and
never echoed. The helpers here are small shell scripts on a private PATH."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import donjon.oci.auth as auth
from donjon.oci.auth import Credentials, find_credentials
from donjon.oci.errors import AuthFailed


def _helper(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / f"docker-credential-{name}"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _env(tmp_path: Path, config: dict) -> dict[str, str]:
    docker = tmp_path / "docker"
    docker.mkdir(exist_ok=True)
    (docker / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(docker), "PATH": f"{tmp_path / 'bin'}:{os.environ.get('PATH', '')}"}


# The helper echoes the registry it was asked about into the user name, so the test sees that
# it was asked with 'get' and the host on stdin.
_ANSWERS = """read host
[ "$1" = get ] || exit 2
case "$host" in
  r.example:5000) printf '{"ServerURL":"%s","Username":"u-%s","Secret":"s3cret"}' "$host" "$host" ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


def test_a_credential_helper_named_for_the_registry_is_asked_first(tmp_path):
    _helper(tmp_path / "bin", "pass", _ANSWERS)
    auths = {"r.example:5000": {"username": "a", "password": "b"}}
    env = _env(tmp_path, {"credHelpers": {"r.example:5000": "pass"}, "auths": auths})
    assert find_credentials("r.example:5000", environ=env) == Credentials("u-r.example:5000", "s3cret")


def test_the_default_store_is_asked_and_not_found_falls_through_to_auths(tmp_path):
    _helper(tmp_path / "bin", "store", _ANSWERS)
    env = _env(
        tmp_path,
        {"credsStore": "store", "auths": {"other.example": {"username": "o", "password": "q"}}},
    )
    assert find_credentials("r.example:5000", environ=env) == Credentials("u-r.example:5000", "s3cret")
    assert find_credentials("other.example", environ=env) == Credentials("o", "q")
    assert find_credentials("none.example", environ=env) is None


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("echo 'hunter2 is not JSON'\n", "not credentials"),
        ('echo \'{"Username": "u"}\'\n', "not credentials"),
        ('echo \'{"Username": "<token>", "Secret": "hunter2"}\'\n', "identity token"),
        ("echo 'keychain locked: hunter2' >&2; exit 3\n", r"failed \(exit 3\)"),
        ("head -c 100000 /dev/zero | tr '\\0' x\n", "not credentials"),
    ],
    ids=["not-json", "no-secret", "identity-token", "fails", "too-long"],
)
def test_a_helper_that_misbehaves_is_a_clear_error_that_never_echoes_it(tmp_path, body, match):
    _helper(tmp_path / "bin", "bad", body)
    env = _env(tmp_path, {"credsStore": "bad"})
    with pytest.raises(AuthFailed, match=match) as e:
        find_credentials("r.example:5000", environ=env)
    assert "hunter2" not in str(e.value) and "docker-credential-bad" in str(e.value)


def test_a_helper_that_hangs_is_abandoned_after_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(auth, "HELPER_TIMEOUT", 0.3)
    _helper(tmp_path / "bin", "slow", "exec sleep 30\n")
    with pytest.raises(AuthFailed, match="no answer"):
        find_credentials("r.example:5000", environ=_env(tmp_path, {"credsStore": "slow"}))


def test_a_helper_that_says_too_much_is_stopped_while_it_is_read(tmp_path, monkeypatch):
    """Its output is read up to the limit, then it is stopped: neither all it prints held in
    memory nor a wait for it to finish (it would print on for the whole timeout)."""
    monkeypatch.setattr(auth, "HELPER_TIMEOUT", 5.0)
    _helper(tmp_path / "bin", "loud", "head -c 100000 /dev/zero; exec sleep 30\n")
    started = time.monotonic()
    with pytest.raises(AuthFailed, match="not credentials"):
        find_credentials("r.example:5000", environ=_env(tmp_path, {"credsStore": "loud"}))
    assert time.monotonic() - started < 4.0


def test_a_missing_helper_or_a_helper_name_with_a_path_is_refused_by_name(tmp_path):
    (tmp_path / "bin").mkdir()
    with pytest.raises(AuthFailed, match=r"docker-credential-absent.*not on PATH"):
        find_credentials("r.example:5000", environ=_env(tmp_path, {"credsStore": "absent"}))
    with pytest.raises(AuthFailed, match="not valid"):
        find_credentials("r.example:5000", environ=_env(tmp_path, {"credsStore": "../../bin/sh"}))
