"""Real Enarx Keep CSRs (SGX, Ice Lake; from enarx/steward): parsed, and verified at their time.

The vectors and their collateral come from ../shared/vectors/sgx/steward (MANIFEST.tsv); the
expected enclave (MRENCLAVE 4046ea25..., MRSIGNER 7a49a07d...) and the advisories are the ones
enarx/steward's own test allowed. The collateral of that day is copied to a temporary
directory, as the Steward's own.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime

import httpx
import pytest
from cryptography import x509
from pyasn1.codec.der import decoder
from pyasn1.type import univ

from donjon import binding, csr
from donjon.cli import main as cli_main

MRENCLAVE = "4046ea255f0455131a024e1265ac1ebd131fdbd1240f1712a00381f6f04e8c15"
MRSIGNER = "7a49a07df0f8e90a6e1d9a63e3c696d9c844f0e3f8739b21daa640f99facc48a"
ADVISORIES = [
    "INTEL-SA-00289", "INTEL-SA-00381", "INTEL-SA-00389", "INTEL-SA-00477", "INTEL-SA-00586",
    "INTEL-SA-00614", "INTEL-SA-00615", "INTEL-SA-00617", "INTEL-SA-00657",
]  # fmt: skip
AT = datetime(2023, 2, 1, tzinfo=UTC)


def sgx_policy(*, signer: str = MRSIGNER, advisories: list[str] = ADVISORIES) -> str:
    return f"""
allow_legacy_enarx = true
[platform.sgx]
allowed_measurements = ["{MRENCLAVE}"]
signers = ["{signer}"]
allowed_tcb_statuses = ["UpToDate", "OutOfDate", "SWHardeningNeeded"]
allowed_advisories = {advisories!r}
allow_missing_qe_identity = true   # enarx/steward never had the QE identity
[[legacy]]
platform = "sgx"
measurement = "{MRENCLAVE}"
signer = "{MRSIGNER}"
spiffe_path = "/enarx/sgx"
""".replace("'", '"')


@pytest.fixture
def sgx(kit):
    return kit.need_shared("vectors", "sgx", "steward")


@pytest.fixture
def intel_root(kit):
    return kit.need_shared("vectors", "roots", "intel", "steward_sgx_root.der")


def test_parse_real_enarx_csrs(sgx):
    for name, prefix in (
        ("icelake.signed.tcb.crl.single.i5.csr", "i5"),
        ("icelake.signed.tcb.crl.multi.xeon.csr", "xeon"),
    ):
        der = (sgx / name).read_bytes()
        assert csr.is_legacy(der)
        parsed = csr.parse_legacy_csr(der)
        assert parsed.kind == "sgx-quote"
        assert parsed.evidence == (sgx / f"{prefix}.quote.dat").read_bytes()
        assert parsed.tcb_info == (sgx / f"{prefix}.tcbinfo.json").read_bytes()
        assert len(parsed.crls) == 3 and all(url.startswith("https://") for url, _ in parsed.crls)
        assert len(parsed.certs) == 2  # TCB signing certificate, Intel SGX Root CA
        # Enarx's legacy binding: REPORTDATA[0:32] = SHA-256(SPKI), the rest zero (SGX report body at 48).
        report_data = parsed.evidence[48 + 320 : 48 + 384]
        binding.check_legacy_binding("sgx-quote", report_data, parsed.spki_der)
        with pytest.raises(csr.MalformedCsr):
            csr.parse_native_csr(der)  # no id-aa-attestation attribute


def test_real_enarx_csr_flipped_signature_is_refused(sgx):
    der = bytearray((sgx / "icelake.signed.tcb.crl.single.i5.csr").read_bytes())
    der[-3] ^= 0x01
    with pytest.raises(csr.CsrSignatureInvalid):
        csr.parse_legacy_csr(bytes(der))


def _steward_for_2023(env, sgx, intel_root, policy_text: str, prefix: str = "i5"):
    root_copy = env.dir / "intel-root.der"
    shutil.copy(intel_root, root_copy)
    text = env.config.read_text().replace("files = []", 'files = ["intel-root.der"]')
    # The simulated AMD root stays configured: real Intel evidence must still verify beside it.
    env.config.write_text(text)
    coll = env.dir / "collateral" / "sgx-quote"
    coll.mkdir(parents=True, exist_ok=True)
    for suffix in ("tcbinfo.json", "tcbinfo_issuer_chain.pem", "rootca.crl.der", "pck_processor.crl.der"):
        shutil.copy(sgx / f"{prefix}.{suffix}", coll / f"{prefix}.{suffix}")
    env.policy.write_text(policy_text)
    return env.steward(clock=lambda: AT)


def test_real_enarx_sgx_csr_issued_by_the_legacy_endpoint_at_its_time(env, sgx, intel_root, kit):
    steward = _steward_for_2023(env, sgx, intel_root, sgx_policy())
    body = (sgx / "icelake.signed.tcb.crl.single.i5.csr").read_bytes()
    with kit.ServerThread(steward) as srv, httpx.Client() as client:
        r = client.post(f"{srv.url}/", content=body, headers={"Content-Type": "application/pkcs10"})
        assert r.status_code == 200, r.text
        seq, rest = decoder.decode(r.content, asn1Spec=univ.SequenceOf(componentType=univ.Any()))
        assert rest == b""
        ca, leaf = (x509.load_der_x509_certificate(bytes(c)) for c in seq)
        leaf.verify_directly_issued_by(ca)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org/enarx/sgx"]
        entry = steward.log.find_serial(format(leaf.serial_number, "x"))
        assert entry is not None
        assert entry.record["fresh"] is False and entry.record["claims"]["tee"] == "sgx"
        assert entry.record["claims"]["measurement"] == MRENCLAVE
        assert entry.record["csr_key"] == hashlib.sha256(csr.parse_legacy_csr(body).spki_der).hexdigest()


@pytest.mark.parametrize(
    ("policy", "check"),
    [
        (
            sgx_policy(signer="00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"),
            "policy.signer",
        ),
        (sgx_policy(advisories=["bogus-1234"]), "policy.advisories"),
    ],
    ids=["untrusted-signer", "extra-advisories"],
)
def test_real_enarx_sgx_csr_refused_like_enarx_steward(env, sgx, intel_root, kit, policy, check):
    # enarx/steward's negative cases for the same CSR (MANIFEST.tsv): wrong signer, unexpected advisories.
    steward = _steward_for_2023(env, sgx, intel_root, policy)
    body = (sgx / "icelake.signed.tcb.crl.single.i5.csr").read_bytes()
    with kit.ServerThread(steward) as srv, httpx.Client() as client:
        r = client.post(f"{srv.url}/", content=body, headers={"Content-Type": "application/pkcs10"})
        assert r.status_code == 403 and r.json()["check"] == check


def test_real_enarx_csr_today_is_refused_for_stale_collateral(env, sgx, intel_root):
    steward = _steward_for_2023(env, sgx, intel_root, sgx_policy())
    steward.clock = lambda: datetime.now(UTC)
    body = (sgx / "icelake.signed.tcb.crl.single.i5.csr").read_bytes()
    from donjon.steward.errors import Refused

    with pytest.raises(Refused) as info:
        steward.attest_legacy(body)
    assert info.value.check == "collateral.stale"


def test_policy_test_cli_on_real_enarx_csrs(tmp_path, sgx, intel_root, capsys):
    policy = tmp_path / "policy.toml"
    policy.write_text(sgx_policy())
    coll = tmp_path / "coll"
    coll.mkdir()
    for suffix in ("tcbinfo.json", "tcbinfo_issuer_chain.pem", "rootca.crl.der", "pck_platform.crl.der"):
        shutil.copy(sgx / f"xeon.{suffix}", coll / suffix)
    args = ["policy", "test", "--policy", str(policy), "--roots", str(intel_root), "--collateral", str(coll)]
    xeon = str(sgx / "icelake.signed.tcb.crl.multi.xeon.csr")
    assert cli_main([*args, "--evidence", xeon, "--at", "2023-02-01T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "would issue /enarx/sgx" in out
    # The same evidence today: its collateral expired in February 2023.
    assert cli_main([*args, "--evidence", xeon, "--format", "json"]) == 1
    assert '"check": "collateral.stale"' in capsys.readouterr().out
    # Raw quote, no CSR: evidence and policy are checked; the binding cannot be.
    quote = str(sgx / "xeon.quote.dat")
    code = cli_main(
        [*args, "--kind", "sgx-quote", "--legacy", "--evidence", quote, "--at", "2023-02-01T00:00:00Z"]
    )
    assert code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(sgx_policy(signer="00" * 32))
    assert (
        cli_main(
            [
                "policy",
                "test",
                "--policy",
                str(bad),
                "--roots",
                str(intel_root),
                "--collateral",
                str(coll),
                "--evidence",
                xeon,
                "--at",
                "2023-02-01T00:00:00Z",
            ]
        )
        == 1
    )
    assert "REFUSED by policy.signer" in capsys.readouterr().out
