"""``[[secret]]`` rules by package signer: ``signers`` (and ``packages``) parsed strictly, matched
against what the Steward's own certificate says (never the request), refusals named, releases
logged with the rule and the package; and one release to a certificate ``donjon steward serve``
issued for a Keep its ``[[workload]]`` signer rule admitted."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.dice import PackageClaim
from donjon.steward.errors import ConfigError, Refused
from donjon.steward.policy import parse_policy
from donjon.steward.secrets.release import ClientIdentity, decide_release

from .conftest import StewardFiles, StewardProcess, run_donjon, secret_get, secret_records

CI = "sha256:" + "c1" * 32
OTHER = "sha256:" + "0e" * 32
MANIFEST = "sha256:" + "4d" * 32
APP = "registry.example/team/app"
DIGEST = "cd" * 32
VALUE = b"\x00content key of the package\xff"


def _client(package: PackageClaim | None, *, path: str = "/team/app", digest: str = DIGEST) -> ClientIdentity:
    return ClientIdentity(
        "1", f"spiffe://example.org{path}", path, False, False, "sev-snp", digest, package=package
    )


def _policy(rule: str) -> str:
    return f'version = 1\n\n[[secret]]\nname = "app-key"\n{rule}\n'


# -- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "line", "words"),
    [
        ('signers = ["sha256:abc"]', 5, "fingerprint 'sha256:abc' is not sha256:<64 hex>"),
        (f'signers = ["{CI}x"]', 5, "is not sha256:<64 hex>"),
        ("signers = []", 5, "non-empty list"),
        ('signers = "' + CI + '"', 5, "non-empty list"),
        ("signers = [42]", 5, "must be sha256:<64 hex> or a PEM public key file"),
        ('signers = ["missing.pub"]', 5, "signers: missing.pub"),
        (f'packages = ["{APP}"]\nspiffe_paths = ["/team/app"]', 5, "packages needs signers"),
        (f'signers = ["{CI}"]\npackages = []', 6, "non-empty list of package names"),
        (f'signers = ["{CI}"]\npackages = ["noslash"]', 6, "REGISTRY/REPOSITORY"),
        (f'signers = ["{CI}"]\npackages = ["r.example/{"a" * 1100}"]', 6, "REGISTRY/REPOSITORY"),
    ],
)
def test_a_bad_signers_rule_is_a_config_error_naming_the_rule_and_its_line(
    rule: str, line: int, words: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as e:
        parse_policy(_policy(rule), path=str(tmp_path / "policy.toml"))
    assert e.value.line == line, e.value
    assert words in e.value.reason and "secret 'app-key'" in e.value.reason, e.value.reason


def test_signers_alone_bind_a_secret_and_fingerprints_are_read_in_any_case() -> None:
    policy = parse_policy(_policy(f'signers = ["{CI.upper().replace("SHA256", "sha256")}"]'))
    [rule] = policy.secrets
    assert rule.signers == frozenset({CI}) and rule.packages is None and rule.spiffe_paths is None
    assert rule.label == "secret app-key #1" and rule.fields == ("signers",)


def test_a_signer_named_by_key_file_is_its_fingerprint_and_part_of_the_policy_digest(tmp_path: Path) -> None:
    from donjon.oci.signature import fingerprint

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "ci.pub").write_bytes(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    text = _policy('signers = ["ci.pub"]')
    policy = parse_policy(text, path=str(tmp_path / "policy.toml"))
    assert policy.secrets[0].signers == frozenset({fingerprint(key)})
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "ci.pub").write_bytes(
        other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert parse_policy(text, path=str(tmp_path / "policy.toml")).digest != policy.digest


# -- matching ---------------------------------------------------------------------------------------


def test_a_certificate_naming_a_bound_signer_gets_the_secret() -> None:
    policy = parse_policy(_policy(f'signers = ["{OTHER}", "{CI}"]'))
    rule = decide_release(policy, "app-key", _client(PackageClaim(MANIFEST, CI, APP)))
    assert rule.signers is not None and CI in rule.signers


def test_another_signer_is_refused_by_name() -> None:
    policy = parse_policy(_policy(f'signers = ["{CI}"]'))
    with pytest.raises(Refused) as e:
        decide_release(policy, "app-key", _client(PackageClaim(MANIFEST, OTHER, APP)))
    assert e.value.check == "secret.signer" and OTHER in e.value.reason


def test_a_certificate_without_package_evidence_is_refused_by_a_signers_rule() -> None:
    """A Keep admitted by its digest: its certificate names no signer, whatever it runs."""
    policy = parse_policy(_policy(f'signers = ["{CI}"]'))
    with pytest.raises(Refused) as e:
        decide_release(policy, "app-key", _client(None))
    assert e.value.check == "secret.signer" and "names none" in e.value.reason


@pytest.mark.parametrize("name", ["registry.example/team/other", None])
def test_another_package_name_or_none_is_refused_by_a_packages_rule(name: str | None) -> None:
    policy = parse_policy(_policy(f'signers = ["{CI}"]\npackages = ["{APP}"]'))
    assert decide_release(policy, "app-key", _client(PackageClaim(MANIFEST, CI, APP))).packages
    with pytest.raises(Refused) as e:
        decide_release(policy, "app-key", _client(PackageClaim(MANIFEST, CI, name)))
    assert e.value.check == "secret.package"


def test_every_field_a_rule_names_must_match() -> None:
    """AND within a rule, as for spiffe_paths and digests: the right signer on another path, or
    the right path without the signer, is refused; another rule for the name is an alternative."""
    policy = parse_policy(_policy(f'signers = ["{CI}"]\nspiffe_paths = ["/team/app"]'))
    good = PackageClaim(MANIFEST, CI, APP)
    assert decide_release(policy, "app-key", _client(good)).fields == ("spiffe_paths", "signers")
    with pytest.raises(Refused) as e:
        decide_release(policy, "app-key", _client(good, path="/elsewhere"))
    assert e.value.check == "secret.spiffe_id"
    with pytest.raises(Refused) as e:
        decide_release(policy, "app-key", _client(None))
    assert e.value.check == "secret.signer"
    either = parse_policy(
        _policy(f'signers = ["{CI}"]') + f'\n[[secret]]\nname = "app-key"\ndigests = ["{DIGEST}"]\n'
    )
    assert decide_release(either, "app-key", _client(None)).label == "secret app-key #2"


# -- through the served release endpoint, with minted certificates -----------------------------------

SERVED_POLICY = f"""
version = 1

[[secret]]
name = "db-password"
spiffe_paths = ["/db"]

[[secret]]
name = "app-key"
signers = ["{CI}"]
packages = ["{APP}"]
"""


def _serve(files: StewardFiles, serve: list[StewardProcess], policy: str) -> StewardProcess:
    files.policy.write_text(policy)
    out = run_donjon("steward", "secret", "put", "app-key", "-", "--config", str(files.config), stdin=VALUE)
    assert out.returncode == 0, out.stderr
    steward = StewardProcess(files.config)
    serve.append(steward)
    return steward


def test_the_served_endpoint_releases_by_signer_refuses_the_rest_and_logs_rule_and_package(
    steward_files: StewardFiles, serve: list[StewardProcess]
) -> None:
    steward = _serve(steward_files, serve, SERVED_POLICY)
    package = {"digest": MANIFEST, "signer": CI, "name": APP}
    answer = secret_get(steward, steward_files, "app-key", steward_files.client("/team/app", package=package))
    assert answer.status_code == 200, answer.text
    assert answer.content == VALUE
    cases = [
        (steward_files.client("/team/app", package={**package, "signer": OTHER}), "secret.signer"),
        (steward_files.client("/team/app"), "secret.signer"),  # admitted by digest: no package
        (
            steward_files.client("/team/app", package={**package, "name": "registry.example/x"}),
            "secret.package",
        ),
    ]
    for cert, check in cases:
        refused = secret_get(steward, steward_files, "app-key", cert)
        assert (refused.status_code, refused.json()["check"]) == (403, check), refused.text
        assert VALUE not in refused.content
    released, other_signer, by_digest, other_name = secret_records(steward_files)
    assert released["decision"] == "released"
    assert released["rule"] == "secret app-key #2" and released["matched"] == ["signers", "packages"]
    assert released["package"] == package
    assert base64.b64encode(VALUE).decode() not in json.dumps(released)
    assert other_signer["check"] == "secret.signer"
    assert other_signer["package"] == {**package, "signer": OTHER}
    assert by_digest["check"] == "secret.signer" and "package" not in by_digest
    assert other_name["check"] == "secret.package"


# -- end to end: issued by `steward serve` to a Keep its signer rule admitted, then released ---------


def _package_evidence(key: ec.EllipticCurvePrivateKey, workload: bytes) -> tuple[str, bytes]:
    from donjon.oci.admission import encode_package_evidence
    from donjon.oci.artifact import build_manifest
    from donjon.oci.signature import make_payload, sign_payload

    manifest, _ = build_manifest(b"\x00asm\x01\x00\x00\x00", b"", [], workload)
    payload = make_payload(APP, manifest.digest)
    return manifest.digest, encode_package_evidence(
        manifest.raw, payload, sign_payload(key, payload), key.public_key()
    )


def test_a_keep_admitted_by_signer_is_released_the_key_with_the_certificate_steward_serve_issued(
    steward_files: StewardFiles, serve: list[StewardProcess], tmp_path: Path
) -> None:
    """The whole path: a CSR with package evidence (no TEE: ``allow_unattested`` and the
    ``unattested`` marker, as on a machine without one), issued by a ``[[workload]]`` signer
    rule, and that very certificate released the key by a ``[[secret]]`` signers rule."""
    from donjon import csr, oids
    from donjon.oci.signature import fingerprint

    signer_key = ec.generate_private_key(ec.SECP256R1())
    fp = fingerprint(signer_key.public_key())
    workload = bytes.fromhex("5a" * 32)
    manifest_digest, evidence = _package_evidence(signer_key, workload)
    steward = _serve(
        steward_files,
        serve,
        f"""
version = 1
allow_unattested = true

[[workload]]
signer = "{fp}"
package = "{APP}"
spiffe_path = "/team/app"
platforms = ["unattested"]

[[secret]]
name = "app-key"
signers = ["{fp}"]
packages = ["{APP}"]
platforms = ["unattested"]
""",
    )
    keep_key = ec.generate_private_key(ec.SECP256R1())
    ca_context = ssl.create_default_context(cafile=str(steward_files.directory / "ca.pem"))
    with httpx.Client(verify=ca_context, trust_env=False) as client:
        text = client.get(f"{steward.url}/challenge").json()["nonce"]
        nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = csr.build_csr(
            keep_key,
            statements=[(oids.EVIDENCE_NONE, b"")],
            workload_digest=workload,
            nonce=nonce,
            package=evidence,
        )
        issued = client.post(
            f"{steward.url}/attest", content=body, headers={"Content-Type": "application/pkcs10"}
        )
    assert issued.status_code == 200, issued.text
    cert = x509.load_pem_x509_certificates(issued.content)[0]
    cert_path, key_path = tmp_path / "keep.pem", tmp_path / "keep-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        keep_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    answer = secret_get(steward, steward_files, "app-key", (cert_path, key_path))
    assert answer.status_code == 200, answer.text
    assert answer.content == VALUE
    [released] = secret_records(steward_files)
    assert released["spiffe_id"] == "spiffe://example.org/unattested/team/app"
    assert released["package"] == {"digest": manifest_digest, "signer": fp, "name": APP}
    assert released["rule"] == "secret app-key #1"


def test_the_docs_example_is_a_policy_that_releases_by_the_ci_key() -> None:
    """docs/secrets.md "By package signer": its TOML, with a real fingerprint for the elided one."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "secrets.md").read_text()
    section = doc[doc.index("#### By package signer") :]
    example = re.search(r"```toml\n(.*?)```", section, flags=re.S)
    assert example is not None
    policy = parse_policy("version = 1\n" + example.group(1).replace("sha256:3b1f…", CI))
    package = PackageClaim(MANIFEST, CI, APP)
    assert decide_release(policy, "app-key", _client(package, digest="ef" * 32)).label == "secret app-key #1"
    with pytest.raises(Refused):
        decide_release(policy, "app-key", _client(PackageClaim(MANIFEST, OTHER, APP)))
