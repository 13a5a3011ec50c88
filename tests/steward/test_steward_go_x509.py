"""Every certificate the Steward issues parses and verifies with Go's crypto/x509.

Go's parser is strict where others are lenient: it refuses a whole certificate
holding an OBJECT IDENTIFIER arc of 2**31 or more, and its ``Verify`` refuses
unhandled critical extensions. DESIGN.md "Evidence in the CSR" requires every
issued certificate to pass it, so this test issues certificates through the
Steward's real checks (simulated SNP and TDX evidence, the real verifiers, a
legacy Enarx CSR, an unattested Keep) under three CA configurations (P-256 with
a claims OID under a Private Enterprise Number arc, P-384 without claims, and a
claims OID whose last arc is 2**31 - 1), and hands them to
``tests/steward/go/parsecerts.go`` (standard library only), which also decodes
the TCG DICE ``MultiTcbInfo`` claims every certificate carries with
``encoding/asn1`` and reports them, and the IP address SANs. Negative controls
built here show the Go program refuses what it should (a garbled DICE extension
among them), so the positive results mean something.

Needs ``go`` (Debian's golang-go); skipped without it, a failure under CI=true.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from donjon import binding, csr, oids
from donjon.attestation.simtdx import SimulatedTdx
from donjon.steward.ca import create_ca
from donjon.steward.issuance import Outcome, Steward

GO_SOURCE = Path(__file__).resolve().parent / "go" / "parsecerts.go"
PEN_ARC = "1.3.6.1.4.1.63999.1.2"  # an operator's Private Enterprise Number arc
EDGE_ARC = "1.3.6.1.4.1.63999.2147483647"  # the largest arc Go accepts: 2**31 - 1
MRTD = hashlib.sha384(b"donjon go x509 tdx keep").digest()
OTHER_WORKLOAD = hashlib.sha256(b"donjon go x509 worker without DNS names").digest()


def _go_binary() -> str:
    go = shutil.which("go")
    if go is None:
        message = "go is not installed (apt-get install golang-go)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": required under CI")
        pytest.skip(message)
    return go


@dataclass(frozen=True)
class GoRun:
    returncode: int
    by_file: dict[str, dict[str, Any]]  # one JSON line per certificate, keyed by file name
    stderr: str


@pytest.fixture(scope="module")
def parsecerts(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., GoRun]:
    """Build parsecerts.go once (offline: standard library only), return a runner."""
    go = _go_binary()
    work = tmp_path_factory.mktemp("go")
    go_env = {
        **os.environ,
        "GOCACHE": str(work / "cache"),
        "GOPATH": str(work / "path"),
        "GOTOOLCHAIN": "local",  # newer Go would otherwise try to download a toolchain
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOENV": "off",  # no user go.env: the build does not depend on $HOME
    }
    binary = work / "parsecerts"
    built = subprocess.run(
        [go, "build", "-o", str(binary), str(GO_SOURCE)],
        cwd=work,
        env=go_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"go build failed:\n{built.stderr}"

    def run(ca: Path, *leaves: Path, at: datetime | None = None) -> GoRun:
        args = [str(binary)]
        if at is not None:
            args += ["-at", at.strftime("%Y-%m-%dT%H:%M:%SZ")]
        proc = subprocess.run([*args, str(ca), *map(str, leaves)], capture_output=True, text=True, timeout=60)
        lines = [json.loads(line) for line in proc.stdout.splitlines()]
        by_file = {Path(line["file"]).name: line for line in lines}
        assert len(by_file) == len(lines) == 1 + len(leaves), proc.stdout + proc.stderr
        return GoRun(proc.returncode, by_file, proc.stderr)

    return run


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(directory: Path, name: str, cert: x509.Certificate) -> Path:
    path = directory / name
    path.write_bytes(_pem(cert))
    return path


def _configure(env: Any, kit: Any, tdx: SimulatedTdx, *, claims_oid: str | None, curve: str) -> None:
    """A Steward directory as in conftest, plus TDX collateral, another workload, and the CA asked for."""
    if curve != "p256":
        key, cert = create_ca("Donjon Steward CA (example.org)", curve=curve, now=datetime.now(UTC))
        (env.dir / "ca.pem").write_bytes(_pem(cert))
        (env.dir / "ca-key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    text = env.config.read_text()
    old = 'claims_oid = "1.3.6.1.4.1.99999.1"'
    assert old in text
    text = text.replace(old, f'claims_oid = "{claims_oid}"' if claims_oid else "")
    env.config.write_text(text)
    kit.trust_sim_tdx(env, tdx)
    policy = kit.policy_text().replace(
        'sim_dns_names = ["web.sim.example.org"]',
        'sim_dns_names = ["web.sim.example.org", "www.sim.example.org"]\nsim_ip = ["127.0.0.1", "::1"]',
    )
    env.policy.write_text(
        "allow_unattested = true\n"
        + policy
        + f"""
[[workload]]
digest = "{OTHER_WORKLOAD.hex()}"
spiffe_path = "/test/worker"
platforms = ["simulated", "unattested"]

[platform.tdx]
allowed_measurements = ["{MRTD.hex()}"]
registers = {{ rtmr0 = ["{"00" * 48}"] }}
"""
    )


def _spki(key: Any) -> bytes:
    der: bytes = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _issue_all(steward: Steward, env: Any, kit: Any, tdx: SimulatedTdx) -> dict[str, Outcome]:
    """One certificate per kind of request the Steward answers, each through every real check."""
    out: dict[str, Outcome] = {}

    def nonce() -> bytes:
        return steward.challenge()[0]

    # Native SNP, P-256 Keep key: DNS names from the policy.
    out["snp-dns"] = steward.attest(kit.Keep(env.vendor).csr(nonce()))
    # Native SNP for a workload without DNS names, P-384 and Ed25519 and RSA Keep keys.
    for name, key in (
        ("snp-p384", ec.generate_private_key(ec.SECP384R1())),
        ("snp-ed25519", ed25519.Ed25519PrivateKey.generate()),
        ("snp-rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ):
        out[name] = steward.attest(kit.Keep(env.vendor, key=key, workload=OTHER_WORKLOAD).csr(nonce()))
    # Native TDX (the DCAP verifier with the Steward's own Intel collateral).
    key = ec.generate_private_key(ec.SECP256R1())
    n = nonce()
    quote = tdx.quote(binding.keep_binding(_spki(key), kit.WORKLOAD, n), mrtd=MRTD)
    body = csr.build_csr(key, statements=[(oids.EVIDENCE_TDX, quote)], workload_digest=kit.WORKLOAD, nonce=n)
    out["tdx"] = steward.attest(body)
    # A legacy Enarx SNP CSR (no nonce, no workload digest).
    key = ec.generate_private_key(ec.SECP384R1())
    ev = env.vendor.evidence(binding.legacy_binding("snp-report", _spki(key)), measurement=kit.MEASUREMENT)
    legacy = csr.build_legacy_csr(
        key,
        "snp-report",
        ev.report,
        certs=ev.certs[:1],
        crls=[("https://kdsintf.amd.com/vcek/v1/Milan/crl", env.vendor.crl())],
    )
    out["legacy"] = steward.attest_legacy(legacy)
    # An unattested Keep (the policy opts in).
    key = ec.generate_private_key(ec.SECP256R1())
    nil = csr.build_csr(
        key, statements=[(oids.EVIDENCE_NONE, b"")], workload_digest=OTHER_WORKLOAD, nonce=nonce()
    )
    out["unattested"] = steward.attest(nil)
    return out


SIM_NAMES = ["web.sim.example.org", "www.sim.example.org"]
SIM_IPS = ["127.0.0.1", "::1"]
EXPECTED = {
    "snp-dns": ("spiffe://example.org/sim/test/web", SIM_NAMES, SIM_IPS),
    "snp-p384": ("spiffe://example.org/sim/test/worker", [], []),
    "snp-ed25519": ("spiffe://example.org/sim/test/worker", [], []),
    "snp-rsa": ("spiffe://example.org/sim/test/worker", [], []),
    "tdx": ("spiffe://example.org/sim/test/web", SIM_NAMES, SIM_IPS),
    "legacy": ("spiffe://example.org/sim/enarx/legacy", [], []),
    "unattested": ("spiffe://example.org/unattested/test/worker", [], []),
}
SHA256, SHA384 = "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.2"
#: The TCG DICE MultiTcbInfo entries Go must read from each certificate: (vendor, model, FWID).
EXPECTED_DICE = {
    "snp-dns": [("AMD", "SEV-SNP (simulated)", "measurement"), ("Donjon", "workload", "web")],
    "snp-p384": [("AMD", "SEV-SNP (simulated)", "measurement"), ("Donjon", "workload", "worker")],
    "snp-ed25519": [("AMD", "SEV-SNP (simulated)", "measurement"), ("Donjon", "workload", "worker")],
    "snp-rsa": [("AMD", "SEV-SNP (simulated)", "measurement"), ("Donjon", "workload", "worker")],
    "tdx": [("Intel", "TDX (simulated)", "mrtd"), ("Donjon", "workload", "web")],
    "legacy": [("AMD", "SEV-SNP (simulated)", "measurement")],
    "unattested": [("Donjon", "workload", "worker")],
}


KEY_ALGORITHMS = {"snp-ed25519": "Ed25519", "snp-rsa": "RSA"}  # the Keep keys; the others are EC


@dataclass(frozen=True)
class Issuance:
    curve: str
    claims_oid: str | None
    dir: Path
    ca: Path
    leaves: dict[str, Path]
    outcomes: dict[str, Outcome]
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate


@pytest.fixture(scope="module")
def tdx() -> SimulatedTdx:
    return SimulatedTdx(issued_at=datetime.now(UTC) - timedelta(days=1))


@pytest.fixture(
    scope="module",
    params=[("p256", PEN_ARC), ("p384", None), ("p256", EDGE_ARC)],
    ids=["p256-pen-claims", "p384-no-claims", "p256-edge-arc-claims"],
)
def issuance(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, vendor: Any, kit: Any, tdx: Any
) -> Issuance:
    curve, claims_oid = request.param
    base = tmp_path_factory.mktemp(f"steward-{curve}")
    env = kit.make_env(base / "steward", vendor)
    _configure(env, kit, tdx, claims_oid=claims_oid, curve=curve)
    steward = env.steward()
    try:
        outcomes = _issue_all(steward, env, kit, tdx)
    finally:
        steward.close()
    certs = base / "certs"
    certs.mkdir()
    ca_cert = x509.load_pem_x509_certificate((env.dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((env.dir / "ca-key.pem").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    # The CA certificate exactly as the Steward serves it with each answer.
    ca = certs / "ca.pem"
    ca.write_bytes(outcomes["snp-dns"].ca_pem)
    assert x509.load_pem_x509_certificate(ca.read_bytes()) == ca_cert
    leaves = {name: _write(certs, f"{name}.pem", o.issued.certificate) for name, o in outcomes.items()}
    return Issuance(curve, claims_oid, base, ca, leaves, outcomes, ca_key, ca_cert)


def test_go_accepts_every_certificate_the_steward_issues(
    parsecerts: Callable[..., GoRun], issuance: Issuance, kit: Any
) -> None:
    got = issuance
    run = parsecerts(got.ca, *got.leaves.values())
    assert run.returncode == 0, run.stderr
    ca = run.by_file["ca.pem"]
    assert ca["role"] == "ca" and "Donjon Steward CA" in ca["subject"]
    assert ca["signature_algorithm"] == ("ECDSA-SHA256" if got.curve == "p256" else "ECDSA-SHA384")
    fwids = {
        "measurement": f"{SHA384}:{kit.MEASUREMENT.hex()}",
        "mrtd": f"{SHA384}:{MRTD.hex()}",
        "web": f"{SHA256}:{kit.WORKLOAD.hex()}",
        "worker": f"{SHA256}:{OTHER_WORKLOAD.hex()}",
    }
    for name, (spiffe_id, dns_names, ip_addresses) in EXPECTED.items():
        line = run.by_file[f"{name}.pem"]
        assert "error" not in line, line
        assert line["role"] == "leaf"
        assert line["spiffe_id"] == spiffe_id
        assert line["dns_names"] == dns_names
        assert line["ip_addresses"] == ip_addresses
        # Go's encoding/asn1 read the DICE claims: every entry, its FWID, and notSecure (none of
        # these certificates stands on a genuine TEE).
        assert "2.23.133.5.4.5" in line["extension_oids"]
        dice = [(e["vendor"], e["model"], e["fwids"]) for e in line["dice"]]
        assert dice == [(v, m, [fwids[f]]) for v, m, f in EXPECTED_DICE[name]], line["dice"]
        assert all(e["not_secure"] for e in line["dice"])
        tee = line["dice"][0]
        if tee["vendor"] == "AMD":  # the reported TCB: SVNs by name, and TCB_VERSION as one integer
            assert tee["version"].startswith("bootloader=") and " snp=" in tee["version"], tee
            assert int(tee["svn"]) > 0 and tee["layer"] == "0"
        elif tee["vendor"] == "Intel":
            assert tee["version"].startswith("tee_tcb_svn="), tee
        issued = got.outcomes[name].issued
        assert line["serial"].lstrip("0") == issued.serial
        assert line["not_after"] == issued.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        # Go saw the claims extension exactly when the operator configured its OID.
        if got.claims_oid is None:
            assert not any(oid.startswith("1.3.6.1.4.1.") for oid in line["extension_oids"]), line
        else:
            assert got.claims_oid in line["extension_oids"], line
        assert "2.5.29.17" in line["extension_oids"]
        assert line["key_algorithm"] == KEY_ALGORITHMS.get(name, "ECDSA")


def test_go_verifies_at_the_certificate_s_own_validity_edges(
    parsecerts: Callable[..., GoRun], issuance: Issuance
) -> None:
    """Verification time inside validity passes; past notAfter Go refuses (so Verify really runs)."""
    got = issuance
    leaf = got.outcomes["snp-dns"].issued.certificate
    path = got.leaves["snp-dns"]
    inside = leaf.not_valid_after_utc - timedelta(seconds=1)
    assert parsecerts(got.ca, path, at=inside).returncode == 0
    after = parsecerts(got.ca, path, at=leaf.not_valid_after_utc + timedelta(seconds=1))
    assert after.returncode == 1
    assert "expired or is not yet valid" in after.by_file["snp-dns.pem"]["error"]


# --- negative controls: twins of a real issued certificate, one deviation each ---


def _twin(
    got: Issuance,
    *,
    extra: x509.ExtensionType | None = None,
    extra_critical: bool = False,
    replace: Callable[[x509.Extension[Any]], tuple[x509.ExtensionType, bool] | None] | None = None,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """The issued ``snp-dns`` certificate rebuilt and signed by the same CA, with one change."""
    leaf = got.outcomes["snp-dns"].issued.certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject if subject is not None else leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())  # type: ignore[arg-type,unused-ignore]
        .serial_number(x509.random_serial_number())
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
    )
    for ext in leaf.extensions:
        changed = replace(ext) if replace is not None else (ext.value, ext.critical)
        if changed is not None:
            builder = builder.add_extension(*changed)
    if extra is not None:
        builder = builder.add_extension(extra, critical=extra_critical)
    return builder.sign(got.ca_key, hashes.SHA256())


def _claims_under(oid: str) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), b"\x0c\x02{}")  # UTF8String "{}"


def _san(value: x509.SubjectAlternativeName, critical: bool) -> Callable[..., Any]:
    def replace(ext: x509.Extension[Any]) -> tuple[x509.ExtensionType, bool] | None:
        if ext.oid == x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
            return value, critical
        return ext.value, ext.critical

    return replace


def test_go_refuses_an_arc_of_2_31_and_accepts_2_31_minus_1(
    parsecerts: Callable[..., GoRun], issuance: Issuance
) -> None:
    """The control that makes the acceptance above meaningful: Go is strict about exactly this arc."""
    got = issuance
    out = got.dir / "controls"
    out.mkdir(exist_ok=True)
    big = _write(out, "arc-2-31.pem", _twin(got, extra=_claims_under("1.3.6.1.4.1.63999.3.2147483648")))
    edge = _write(out, "arc-edge.pem", _twin(got, extra=_claims_under("1.3.6.1.4.1.63999.3.2147483647")))
    # Donjon's CSR arc (2.25.<UUID>) is the real-world case the design warns about.
    uuid = _write(out, "arc-uuid.pem", _twin(got, extra=_claims_under(oids.DONJON_ARC + ".1")))
    run = parsecerts(got.ca, big, edge, uuid)
    assert run.returncode == 1
    assert "malformed extension OID field" in run.by_file["arc-2-31.pem"]["error"]
    assert "malformed extension OID field" in run.by_file["arc-uuid.pem"]["error"]
    accepted = run.by_file["arc-edge.pem"]
    assert "error" not in accepted, accepted
    assert "1.3.6.1.4.1.63999.3.2147483647" in accepted["extension_oids"]


def test_the_go_program_refuses_profile_deviations(
    parsecerts: Callable[..., GoRun], issuance: Issuance
) -> None:
    """Each profile check in parsecerts.go can fail: one twin per deviation, each named in the error."""
    got = issuance
    out = got.dir / "profile"
    out.mkdir(exist_ok=True)
    uri = x509.UniformResourceIdentifier
    spiffe = uri("spiffe://example.org/sim/test/web")
    ku_cert_sign = x509.KeyUsage(True, False, False, False, False, True, False, False, False)

    def swap(oid: x509.ObjectIdentifier, value: x509.ExtensionType, critical: bool) -> Callable[..., Any]:
        def replace(ext: x509.Extension[Any]) -> tuple[x509.ExtensionType, bool] | None:
            return (value, critical) if ext.oid == oid else (ext.value, ext.critical)

        return replace

    ext = x509.oid.ExtensionOID
    cases = {
        "san-not-critical.pem": (
            _twin(got, replace=_san(x509.SubjectAlternativeName([spiffe]), False)),
            "not critical",
        ),
        "two-uris.pem": (
            _twin(
                got, replace=_san(x509.SubjectAlternativeName([spiffe, uri("spiffe://example.org/b")]), True)
            ),
            "exactly one URI SAN",
        ),
        "https-uri.pem": (
            _twin(got, replace=_san(x509.SubjectAlternativeName([uri("https://example.org/a")]), True)),
            "scheme is not spiffe",
        ),
        "subject.pem": (
            _twin(got, subject=x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "web")])),
            "subject is not empty",
        ),
        "ca-true.pem": (
            _twin(
                got,
                replace=swap(ext.BASIC_CONSTRAINTS, x509.BasicConstraints(ca=True, path_length=None), True),
            ),
            "CA is true",
        ),
        "cert-sign.pem": (_twin(got, replace=swap(ext.KEY_USAGE, ku_cert_sign, True)), "keyCertSign"),
        # The DICE claims must parse (a SEQUENCE OF holding an INTEGER is no DiceTcbInfo).
        "dice-garbage.pem": (
            _twin(
                got,
                replace=swap(
                    x509.ObjectIdentifier("2.23.133.5.4.5"),
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier("2.23.133.5.4.5"), b"\x30\x03\x02\x01\x01"
                    ),
                    False,
                ),
            ),
            "MultiTcbInfo does not parse",
        ),
        "unknown-critical.pem": (
            _twin(got, extra=_claims_under("1.3.6.1.4.1.63999.9"), extra_critical=True),
            "unhandled critical extension",
        ),
        # The unchanged twin is accepted: the others fail for their deviation, not for being rebuilt.
        "unchanged-twin.pem": (_twin(got), None),
    }
    paths = [_write(out, name, cert) for name, (cert, _) in cases.items()]
    run = parsecerts(got.ca, *paths)
    assert run.returncode == 1
    for name, (_, expected) in cases.items():
        line = run.by_file[name]
        if expected is None:
            assert "error" not in line, line
        else:
            assert expected in line.get("error", ""), (name, line)


def test_go_refuses_a_leaf_from_another_ca(
    parsecerts: Callable[..., GoRun], issuance: Issuance, tmp_path: Path
) -> None:
    """Verify really checks the chain: the same leaf against an unrelated CA is refused."""
    got = issuance
    _, other = create_ca("Another CA", now=datetime.now(UTC))
    other_ca = _write(tmp_path, "other-ca.pem", other)
    run = parsecerts(other_ca, got.leaves["snp-dns"])
    assert run.returncode == 1
    assert "unknown authority" in run.by_file["snp-dns.pem"]["error"]


def test_go_program_refuses_garbage_and_reports_unreadable_files(
    parsecerts: Callable[..., GoRun], tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate")
    run = parsecerts(garbage)
    assert run.returncode == 1 and "no PEM block" in run.by_file["garbage.pem"]["error"]
    missing = tmp_path / "missing.pem"
    run = parsecerts(missing)
    assert run.returncode == 3 and run.by_file["missing.pem"]["role"] == "ca"


def test_go_accepts_certificates_signed_in_a_pkcs11_token(
    parsecerts: Callable[..., GoRun], softhsm: Any, tmp_path: Path
) -> None:
    """A CA key in SoftHSM2 (docs/steward.md "Keys in an HSM"): the reassembled certificates
    (the token's signature in place of the throwaway one) parse and verify in Go too."""
    from donjon.dice import TcbInfo
    from donjon.hsm import parse_uri
    from donjon.hsm.keys import create_ec_key
    from donjon.steward.ca import CertificateAuthority, create_ca_certificate

    now = datetime.now(UTC)
    for curve in ("p256", "p384"):
        signer = create_ec_key(parse_uri(softhsm.uri(softhsm.label_for(f"go-{curve}"))), curve)
        try:
            ca_cert = create_ca_certificate(signer, f"Token CA {curve}", now=now)
            ca = CertificateAuthority(signer, ca_cert, trust_domain="example.org", claims_oid=PEN_ARC)
            leaf_key = ec.generate_private_key(ec.SECP256R1())
            spki = leaf_key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            issued = ca.issue(
                spki,
                spiffe_path="/token/web",
                dns_names=["web.example.org"],
                lifetime=3600,
                now=now,
                claims={"tee": "sev-snp"},
                dice=[TcbInfo(vendor="AMD", model="SEV-SNP", svn=3)],
            )
        finally:
            signer.close()
        run = parsecerts(
            _write(tmp_path, f"ca-{curve}.pem", ca_cert),
            _write(tmp_path, f"leaf-{curve}.pem", issued.certificate),
        )
        assert run.returncode == 0, run.stderr + str(run.by_file)
        leaf = run.by_file[f"leaf-{curve}.pem"]
        assert "error" not in leaf and leaf["dice"][0]["vendor"] == "AMD"
