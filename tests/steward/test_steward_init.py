"""``donjon steward init`` / ``tls-cert`` and the Steward's files (issue 9 "Files", issue 10 "init").

- every file and folder gets an explicit mode whatever the umask; secrets are never written
  through a planted symlink, even with ``--force``;
- ``serve`` refuses secrets others can read and configuration others can write, naming the fix;
- a Steward fresh from ``init`` serves HTTPS with a certificate from its own CA, and Keeps can
  use it at once (``--simulated``: simulated vendors, collateral and the roots trusted);
- ``tls-cert`` renews the serving certificate; ``--insecure-http`` is loud.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from donjon.backends.sim import SimBackend
from donjon.cli import main as cli_main
from donjon.demo.steward import WorkloadRule, demo_policy
from donjon.keep.attest import RetryPolicy, attest
from donjon.steward.config import load_config


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _init(d: Path, *extra: str) -> int:
    return cli_main(["steward", "init", "--dir", str(d), "--trust-domain", "init.test", *extra])


SECRETS = ("ca-key.pem", "challenge.secret", "tls-key.pem", "log-key.pem")


def _expected_mode(d: Path, path: Path) -> int:
    rel = path.relative_to(d)
    if path.is_dir():
        return 0o700 if rel.parts[:1] == ("sim-vendor",) else 0o755
    if path.name in SECRETS or path.name.endswith("-vendor.json"):
        return 0o600
    return 0o644


@pytest.mark.parametrize("umask", ["umask_000", "umask_077"])
def test_every_file_and_folder_has_an_explicit_mode_whatever_the_umask(tmp_path, capsys, request, umask):
    request.getfixturevalue(umask)
    d = tmp_path / "s"
    assert _init(d, "--simulated") == 0
    seen = {d, *d.rglob("*")}
    assert {p.name for p in seen} >= {
        "steward.toml", "policy.toml", "ca.pem", "ca-key.pem", "challenge.secret", "tls.pem",
        "tls-key.pem", "collateral", "snp-report", "tdx-quote", "sim-vendor", "sim-snp-vendor.json",
    }  # fmt: skip
    wrong = {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in seen if _mode(p) != _expected_mode(d, p)}
    assert not wrong


def test_force_replaces_a_planted_symlink_and_never_writes_through_it(tmp_path, capsys):
    d = tmp_path / "s"
    assert _init(d) == 0
    victims = {}
    for name in (*SECRETS, "steward.toml", "policy.toml", "ca.pem"):
        victim = tmp_path / f"victim-{name}"
        victim.write_text("do not touch\n")
        os.chmod(victim, 0o644)
        (d / name).unlink()
        (d / name).symlink_to(victim)
        victims[name] = victim
    assert _init(d, "--force") == 0
    for name, victim in victims.items():
        assert victim.read_text() == "do not touch\n" and _mode(victim) == 0o644, name
        assert not (d / name).is_symlink() and (d / name).is_file(), name
        assert _mode(d / name) == (0o600 if name in SECRETS else 0o644), name
    assert not [p for p in d.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    assert load_config(d / "steward.toml").tls_key == d / "tls-key.pem"


def test_without_force_a_dangling_symlink_counts_as_an_existing_file(tmp_path, capsys):
    d = tmp_path / "s"
    d.mkdir()
    target = tmp_path / "created-through-the-link"
    (d / "ca-key.pem").symlink_to(target)
    assert _init(d) == 2
    assert "ca-key.pem already exist" in capsys.readouterr().err
    assert not target.exists()


def test_a_symlink_where_the_collateral_folder_goes_is_refused(tmp_path, capsys):
    d = tmp_path / "s"
    d.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o777)
    os.chmod(elsewhere, 0o777)
    (d / "collateral").symlink_to(elsewhere)
    assert _init(d) == 3
    assert "collateral" in capsys.readouterr().err
    assert _mode(elsewhere) == 0o777


def _refused_by_serve(d: Path, what: str) -> str:
    """``serve`` on the Steward in ``d`` must refuse to start (exit 2) before it opens anything;
    its stderr. A process, bounded: a Steward that wrongly starts would serve until stopped."""
    serve = [sys.executable, "-m", "donjon", "steward", "serve", "--config", str(d / "steward.toml")]
    try:
        done = subprocess.run([*serve, "--port", "0"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve started with {what}")
    assert done.returncode == 2, done.stderr
    assert not (d / "log.db").exists()  # refused before anything was opened
    return done.stderr


@pytest.mark.parametrize(
    ("name", "mode", "fix"),
    [
        ("ca-key.pem", 0o640, "chmod 600"),
        ("challenge.secret", 0o604, "chmod 600"),
        ("tls-key.pem", 0o644, "chmod 600"),
        ("steward.toml", 0o664, "chmod go-w"),
        ("policy.toml", 0o646, "chmod go-w"),
    ],
)
def test_serve_refuses_unsafe_modes_naming_the_file_and_the_fix(tmp_path, capsys, name, mode, fix):
    d = tmp_path / "s"
    assert _init(d) == 0
    os.chmod(d / name, mode)
    err = _refused_by_serve(d, f"{name} at mode {mode:04o}")
    assert f"{fix} {d / name}" in err and f"{mode:04o}" in err


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="giving a file to another user (os.chown) needs root",
)
@pytest.mark.parametrize("name", ["ca-key.pem", "challenge.secret", "steward.toml", "policy.toml"])
def test_serve_refuses_a_file_owned_by_another_user_naming_the_chown(tmp_path, capsys, name):
    d = tmp_path / "s"
    assert _init(d) == 0
    os.chown(d / name, 4242, 4242)  # modes untouched: 0600 / 0644 pass the mode check
    err = _refused_by_serve(d, f"{name} owned by uid 4242")
    assert "owned by another user" in err and f"fix: chown root {d / name}" in err


def test_init_serves_https_with_a_certificate_from_its_own_ca(tmp_path, capsys, kit):
    d = tmp_path / "s"
    assert _init(d) == 0
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    tls = x509.load_pem_x509_certificate((d / "tls.pem").read_bytes())
    tls.verify_directly_issued_by(ca)
    san = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert not san.get_values_for_type(x509.UniformResourceIdentifier)  # never a Keep identity
    eku = tls.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    config = load_config(d / "steward.toml")
    assert config.tls_cert == d / "tls.pem" and config.tls_key == d / "tls-key.pem"
    proc = kit.ServerProcess(d / "steward.toml")
    try:
        assert proc.url.startswith("https://127.0.0.1:")
        port = proc.url.rsplit(":", 1)[1]
        context = ssl.create_default_context(cafile=str(d / "ca.pem"))  # the CA alone, as a Keep pins it
        for host in ("127.0.0.1", "localhost"):
            assert httpx.get(f"https://{host}:{port}/healthz", verify=context).status_code == 200
    finally:
        proc.stop()
    assert not proc.events("insecure_http")


def test_init_prints_the_next_steps_down_to_the_keeps_command_line(tmp_path, capsys):
    d = tmp_path / "s"
    assert _init(d, "--simulated", "--host", "steward.example.org", "--ip", "192.0.2.7") == 0
    out = capsys.readouterr().out
    assert "donjon run --print-digest" in out
    assert f"donjon policy check --policy {d / 'policy.toml'}" in out
    assert f"donjon steward serve --config {d / 'steward.toml'}" in out
    assert (
        f"donjon run --backend sim-snp --sim-vendor {d / 'sim-vendor'} --steward "
        f"https://steward.example.org:8443 --steward-ca {d / 'ca.pem'} --config Donjon.toml app.wasm"
    ) in out
    tls = x509.load_pem_x509_certificate((d / "tls.pem").read_bytes())
    san = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["steward.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.7")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "bad host!"], "not a DNS host name"),
        (["--ip", "300.1.1.1"], "not an IP address"),
        (["--ip", "0.0.0.0"], "unspecified"),
        (["--insecure-http", "--host", "a.test"], "not with --insecure-http"),
    ],
)
def test_bad_names_are_usage_errors_before_anything_is_written(tmp_path, capsys, args, message):
    d = tmp_path / "s"
    assert _init(d, *args) == 2
    assert message in capsys.readouterr().err
    assert not d.exists() or not any(d.iterdir())


def test_insecure_http_is_loud_and_writes_no_certificate(tmp_path, capsys, kit):
    d = tmp_path / "s"
    assert _init(d, "--insecure-http") == 0
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "PLAIN HTTP" in captured.err
    assert "--steward-insecure-http --steward http://localhost:8443" in captured.out
    assert not (d / "tls.pem").exists() and load_config(d / "steward.toml").tls_cert is None
    proc = kit.ServerProcess(d / "steward.toml")
    try:
        assert proc.url.startswith("http://")
    finally:
        proc.stop()
    assert proc.events("insecure_http")


def test_tls_cert_renews_the_certificate_keeping_its_names_unless_told(tmp_path, capsys):
    d = tmp_path / "s"
    assert _init(d, "--host", "steward.test", "--ip", "127.0.0.2") == 0
    before = x509.load_pem_x509_certificate((d / "tls.pem").read_bytes())
    old_key = (d / "tls-key.pem").read_bytes()
    config = str(d / "steward.toml")
    assert cli_main(["steward", "tls-cert", "--config", config, "--days", "30"]) == 0
    after = x509.load_pem_x509_certificate((d / "tls.pem").read_bytes())
    assert after.serial_number != before.serial_number and (d / "tls-key.pem").read_bytes() != old_key
    assert _mode(d / "tls-key.pem") == 0o600
    san = after.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["steward.test"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.2")]
    assert 29 <= (after.not_valid_after_utc - after.not_valid_before_utc).days <= 30
    after.verify_directly_issued_by(x509.load_pem_x509_certificate((d / "ca.pem").read_bytes()))
    assert cli_main(["steward", "tls-cert", "--config", config, "--host", "other.test"]) == 0
    renamed = x509.load_pem_x509_certificate((d / "tls.pem").read_bytes())
    san = renamed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["other.test"]
    assert not san.get_values_for_type(x509.IPAddress)
    assert "restart" in capsys.readouterr().out


def test_tls_cert_without_https_configured_says_what_to_add(tmp_path, capsys):
    d = tmp_path / "s"
    assert _init(d, "--insecure-http") == 0
    capsys.readouterr()
    assert cli_main(["steward", "tls-cert", "--config", str(d / "steward.toml")]) == 2
    assert 'tls_cert = "tls.pem"' in capsys.readouterr().err
    assert cli_main(["steward", "tls-cert", "--config", str(tmp_path / "none.toml")]) == 3
    (d / "ca-key.pem").unlink()
    text = (d / "steward.toml").read_text().replace('# tls_cert = "tls.pem"', 'tls_cert = "tls.pem"')
    (d / "steward.toml").write_text(text.replace('# tls_key = "tls-key.pem"', 'tls_key = "tls-key.pem"'))
    assert cli_main(["steward", "tls-cert", "--config", str(d / "steward.toml")]) == 3
    assert "ca-key.pem: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["sim-snp", "sim-tdx"])
def test_a_simulated_steward_fresh_from_init_issues_to_a_keep_at_once(tmp_path, capsys, kit, backend):
    d = tmp_path / "s"
    assert _init(d, "--simulated") == 0
    assert "--sim-vendor" in capsys.readouterr().out
    assert cli_main(["policy", "check", "--policy", str(d / "policy.toml")]) == 0
    config = load_config(d / "steward.toml")
    assert config.simulated_roots == (d / "sim-vendor/sim-snp-ark.pem", d / "sim-vendor/sim-tdx-root.pem")
    digest = bytes(range(32))
    # The rule in the shape of the running Donjon's policy (demo_policy), with init's platforms.
    (d / "policy.toml").write_text(demo_policy([WorkloadRule(digest, "/init/test")]))
    proc = kit.ServerProcess(d / "steward.toml")
    try:
        identity = attest(
            SimBackend(backend, vendor_dir=d / "sim-vendor"),
            digest,
            proc.url,
            (d / "ca.pem").read_bytes(),
            retry=RetryPolicy(total=5),
        )
    finally:
        proc.stop()
    assert identity.simulated and str(identity.spiffe_id) == "spiffe://init.test/sim/init/test"
    # The collateral stays current for years, not Intel's month: a development Steward keeps working.
    crl = x509.load_der_x509_crl((d / "collateral/tdx-quote/pck.crl").read_bytes())
    assert crl.next_update_utc is not None and (crl.next_update_utc - crl.last_update_utc).days > 365
    issued = [e for e in proc.events("attest") if e.get("decision") == "issued"]
    assert len(issued) == 1, json.dumps(proc.lines)


def test_serve_never_creates_files_others_can_write_even_under_umask_000(tmp_path, capsys, kit, umask_000):
    d = tmp_path / "s"
    assert _init(d) == 0
    proc = kit.ServerProcess(d / "steward.toml")  # inherits this process's umask, 000
    try:
        context = ssl.create_default_context(cafile=str(d / "ca.pem"))
        assert httpx.get(f"{proc.url}/healthz", verify=context).status_code == 200
    finally:
        proc.stop()
    created = [p for p in d.iterdir() if p.name.startswith("log.db")]
    assert created and all(_mode(p) & 0o022 == 0 for p in created), [oct(_mode(p)) for p in created]


def _snapshot(d: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry below ``d``: its mode and, for a file, its bytes (links as links)."""
    return {
        str(p.relative_to(d)): (
            os.lstat(p).st_mode,
            p.read_bytes() if p.is_file() and not p.is_symlink() else None,
        )
        for p in sorted(d.rglob("*"))
    }


def _fail_writing(monkeypatch, name: str) -> None:
    """Make init's write of ``name`` fail as a full disk would."""
    import errno

    import donjon.steward.files as files

    real = files.write_public

    def write_public(path, data, **kwargs):
        if Path(path).name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kwargs)

    monkeypatch.setattr(files, "write_public", write_public)


def test_a_failure_half_way_leaves_no_folder_and_a_second_init_works(tmp_path, capsys, monkeypatch):
    d = tmp_path / "new" / "parents" / "s"
    _fail_writing(monkeypatch, "policy.toml")
    assert _init(d, "--simulated") == 3
    err = capsys.readouterr().err
    assert f"{d / 'policy.toml'}: No space left on device" in err  # the folder asked for, not the stage
    assert not list(tmp_path.iterdir())  # no partial folder, no stage, no parent made for it
    monkeypatch.undo()
    assert _init(d, "--simulated") == 0
    assert load_config(d / "steward.toml").policy.is_file()


def test_a_failure_half_way_with_force_leaves_the_previous_steward_intact(tmp_path, capsys, monkeypatch):
    d = tmp_path / "s"
    assert _init(d, "--simulated") == 0
    (d / "log.db").write_bytes(b"the log of the previous Steward")
    before = _snapshot(d)
    _fail_writing(monkeypatch, "policy.toml")
    assert _init(d, "--simulated", "--force") == 3
    assert _snapshot(d) == before
    assert not [p for p in d.iterdir() if p.name.startswith(".")]


def test_a_rename_failing_mid_commit_is_undone(tmp_path, capsys, monkeypatch):
    import errno

    d = tmp_path / "s"
    assert _init(d) == 0
    before = _snapshot(d)
    real = os.rename
    calls = []

    def rename(src, dst, *args, **kwargs):
        calls.append(Path(dst))
        if len(calls) == 7:  # some files are in place, some not yet
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)
    assert _init(d, "--force") == 3
    monkeypatch.undo()
    assert f"{d / calls[6].name}: Input/output error" in capsys.readouterr().err  # not the stage
    assert _snapshot(d) == before
    assert not [p for p in d.iterdir() if p.name.startswith(".")]


def test_force_keeps_other_files_the_folder_mode_and_the_simulated_vendors(tmp_path, capsys):
    d = tmp_path / "s"
    assert _init(d, "--simulated") == 0
    os.chmod(d, 0o750)
    (d / "log.db").write_bytes(b"log")
    (d / "collateral" / "bundle.json").write_bytes(b"{}")
    vendor = (d / "sim-vendor" / "sim-snp-vendor.json").read_bytes()
    old_ca = (d / "ca.pem").read_bytes()
    assert _init(d, "--simulated", "--force") == 0
    assert (d / "ca.pem").read_bytes() != old_ca
    assert (d / "log.db").read_bytes() == b"log" and (d / "collateral" / "bundle.json").is_file()
    assert (d / "sim-vendor" / "sim-snp-vendor.json").read_bytes() == vendor
    assert _mode(d) == 0o750
    assert not [p for p in d.iterdir() if p.name.startswith(".")]
