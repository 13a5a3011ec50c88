"""``openssl x509 -text`` shows what a Steward-issued certificate claims (issue 10).

The TCG DICE ``MultiTcbInfo`` extension (2.23.133.5.4.5) is in every certificate by default —
here from a Steward as ``steward init`` makes it, without ``claims_oid`` — and the openssl
command line tool (Debian's ``openssl``) shows it: the OID with the readable vendor and model,
and with ``-certopt ext_parse`` its ASN.1 down to the SHA-256 FWID holding the workload digest.
IP address SANs the policy lists for ``/sim`` certificates are shown too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization


def _openssl_text(pem: Path, *extra: str) -> str:
    openssl = shutil.which("openssl")
    assert openssl is not None, "openssl (Debian's openssl package) is required"
    done = subprocess.run(
        [openssl, "x509", "-in", str(pem), "-noout", "-text", *extra],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_openssl_shows_the_dice_claims_and_ip_addresses(env, kit, tmp_path):
    text = env.config.read_text().replace('claims_oid = "1.3.6.1.4.1.99999.1"', "")
    env.config.write_text(text)  # as init writes it: no JSON claims extension
    env.policy.write_text(
        kit.policy_text().replace('sim_dns_names = ["web.sim.example.org"]', 'sim_ip = ["127.0.0.1", "::1"]')
    )
    steward = env.steward()
    try:
        outcome = steward.attest(kit.Keep(env.vendor).csr(steward.challenge()[0]))
    finally:
        steward.close()
    pem = tmp_path / "leaf.pem"
    pem.write_bytes(outcome.issued.certificate.public_bytes(serialization.Encoding.PEM))

    shown = _openssl_text(pem)
    assert "2.23.133.5.4.5:" in shown  # tcg-dice-MultiTcbInfo, not critical
    assert "2.23.133.5.4.5: critical" not in shown
    assert "AMD" in shown and "SEV-SNP (simulated)" in shown
    assert "Donjon" in shown and "workload" in shown
    assert "1.3.6.1.4.1.99999.1" not in shown
    assert "IP Address:127.0.0.1" in shown and "IP Address:0:0:0:0:0:0:0:1" in shown
    assert "DNS:" not in shown  # no production name on a /sim certificate

    parsed = _openssl_text(pem, "-certopt", "ext_parse")
    assert "OBJECT            :sha256" in parsed and "OBJECT            :sha384" in parsed
    digest = kit.WORKLOAD.hex()
    dump = parsed.replace(" ", "").replace("-", "")
    assert digest[:16] in dump and digest[32:48] in dump  # the FWID bytes, as openssl dumps them
