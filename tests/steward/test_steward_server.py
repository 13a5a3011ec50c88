"""The Steward over real HTTP: issuance with simulated SNP evidence and every refusal the brief names."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import struct
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from donjon import csr, oids

PKCS10 = {"Content-Type": "application/pkcs10"}


def _chain(response: httpx.Response) -> list[x509.Certificate]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/pem-certificate-chain")
    return x509.load_pem_x509_certificates(response.content)


def _refusal(response: httpx.Response, status: int, check: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == "refused"
    assert body["check"] == check, body
    assert body["reason"]
    return body


def _walk_oids(der: bytes) -> list[tuple[int, ...]]:
    """Every OBJECT IDENTIFIER in a DER structure, decoded arc by arc (what Go's parser does)."""
    found: list[tuple[int, ...]] = []

    def walk(data: bytes) -> None:
        i = 0
        while i < len(data):
            tag = data[i]
            i += 1
            length = data[i]
            i += 1
            if length & 0x80:
                n = length & 0x7F
                length = int.from_bytes(data[i : i + n], "big")
                i += n
            content = data[i : i + length]
            i += length
            if tag == 0x06:
                arcs: list[int] = []
                value = 0
                for byte in content:
                    value = (value << 7) | (byte & 0x7F)
                    if not byte & 0x80:
                        arcs.append(value)
                        value = 0
                first = arcs[0]
                head = (min(first // 40, 2), first - 40 * min(first // 40, 2))
                found.append((*head, *arcs[1:]))
            elif tag & 0x20:  # constructed: walk inside
                walk(content)
            elif tag == 0x04 and content[:1] == b"\x30":  # extension values: DER inside OCTET STRING
                with contextlib.suppress(IndexError):
                    walk(content)

    walk(der)
    return found


def test_issues_spiffe_svid_for_simulated_snp(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        leaf, ca = _chain(keep.attest(client, server.url))
        ca_served = x509.load_pem_x509_certificate(client.get(f"{server.url}/ca").content)
    assert ca == ca_served
    leaf.verify_directly_issued_by(ca)
    # SPIFFE X.509-SVID profile.
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san.critical
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["spiffe://example.org/sim/test/web"]  # simulated evidence is marked in the path
    # Only the names the policy lists for /sim certificates, never the production web.example.org.
    assert san.value.get_values_for_type(x509.DNSName) == ["web.sim.example.org"]
    ku = leaf.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert leaf.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca is False
    assert leaf.public_key() == keep.key.public_key()
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.total_seconds() <= 2 * 3600 + 600  # policy lifetime 2h (+ backdating)
    claims = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"))
    assert not claims.critical
    assert b'"simulated":true' in claims.value.value
    # Every OID arc in the issued certificate is below 2**31 (Go's crypto/x509 rule).
    der = leaf.public_bytes(serialization.Encoding.DER)
    found = _walk_oids(der)
    assert (1, 3, 6, 1, 4, 1, 99999, 1) in found and (2, 5, 29, 17) in found
    assert all(arc < 2**31 for oid in found for arc in oid)
    # The log holds the decision, durable, with the serial of what the client received.
    entry = env_log_entry(server, leaf)
    assert entry.record["decision"] == "issued"
    assert entry.record["csr_key"] == hashlib.sha256(kit.spki(keep.key)).hexdigest()
    assert entry.record["workload_digest"] == kit.WORKLOAD.hex()
    assert entry.record["claims"]["simulated"] is True
    assert entry.record["policy_digest"] == hashlib.sha256(env.policy.read_bytes()).hexdigest()


def env_log_entry(server, cert):
    entry = server.steward.log.find_serial(format(cert.serial_number, "x"))
    assert entry is not None
    return entry


def test_walker_sees_a_large_arc():
    # The DER walker above must be able to fail: the UUID arc of Donjon's CSR OIDs is > 2**31.
    from pyasn1.codec.der import encoder
    from pyasn1.type import univ

    encoded = encoder.encode(univ.ObjectIdentifier(oids.DONJON_ARC))
    assert any(arc >= 2**31 for oid in _walk_oids(encoded) for arc in oid)


def test_challenge_endpoint_health_and_metrics(server, env, kit):
    with httpx.Client() as client:
        assert client.get(f"{server.url}/healthz").json() == {"status": "ok"}
        c = client.get(f"{server.url}/challenge")
        assert c.headers["cache-control"] == "no-store"
        nonce = base64.urlsafe_b64decode(c.json()["nonce"] + "==")
        assert len(nonce) == 56
        (stamp,) = struct.unpack(">Q", nonce[:8])
        assert abs(stamp - time.time()) < 5
        keep = kit.Keep(env.vendor)
        assert keep.attest(client, server.url).status_code == 200
        client.post(f"{server.url}/attest", content=b"garbage", headers=PKCS10)
        text = client.get(f"{server.url}/metrics").text
    assert 'donjon_steward_issued_total{path="native",kind="snp-report"} 1' in text
    # Garbage is counted as rejected (no log entry), not as a logged refusal.
    assert 'donjon_steward_rejected_total{reason="csr.parse"} 1' in text
    assert "donjon_steward_refused_total{" not in text
    assert "# TYPE donjon_steward_request_seconds histogram" in text
    assert 'donjon_steward_request_seconds_count{endpoint="attest"} 2' in text


@pytest.mark.parametrize(
    ("body", "check"),
    [
        (b"", "csr.parse"),
        (b"\x00" * 100, "csr.parse"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "csr.parse"),
        (b"\x30\x82\xff\xff" + b"\x00" * 20, "csr.parse"),
    ],
    ids=["empty", "zeros", "pem-garbage", "bad-length"],
)
def test_garbage_bodies_are_400(server, body, check):
    with httpx.Client() as client:
        _refusal(client.post(f"{server.url}/attest", content=body, headers=PKCS10), 400, check)
        _refusal(client.post(f"{server.url}/", content=body, headers=PKCS10), 400, check)


def test_truncated_csr_is_400(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        body = keep.csr(keep.nonce(client, server.url))
        for cut in (10, len(body) // 2, len(body) - 1):
            _refusal(
                client.post(f"{server.url}/attest", content=body[:cut], headers=PKCS10), 400, "csr.parse"
            )


def test_oversized_body_is_413(server):
    with httpx.Client() as client:
        big = b"\x30" + b"\x00" * (300 * 1024)
        _refusal(client.post(f"{server.url}/attest", content=big, headers=PKCS10), 413, "request.size")

        def chunks():
            for _ in range(100):
                yield b"\x00" * 4096

        # Without Content-Length (chunked), the limit still holds.
        _refusal(client.post(f"{server.url}/attest", content=chunks(), headers=PKCS10), 413, "request.size")


def test_wrong_content_type_is_415(server):
    with httpx.Client() as client:
        r = client.post(f"{server.url}/attest", content=b"x", headers={"Content-Type": "application/json"})
        _refusal(r, 415, "request.content_type")
        assert client.get(f"{server.url}/nope").status_code == 404
        assert client.get(f"{server.url}/attest").json()["check"] == "request.method"


def test_bad_csr_signature_is_refused(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        body = bytearray(keep.csr(keep.nonce(client, server.url)))
        body[-5] ^= 0x01  # inside the signature BIT STRING
        _refusal(
            client.post(f"{server.url}/attest", content=bytes(body), headers=PKCS10), 400, "csr.signature"
        )


def test_evidence_binding_another_key_is_refused(server, env, kit):
    keep = kit.Keep(env.vendor)
    other = ec.generate_private_key(ec.SECP256R1())
    with httpx.Client() as client:
        _refusal(keep.attest(client, server.url, report_key=other), 403, "binding")


def test_evidence_for_another_workload_is_refused(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        _refusal(keep.attest(client, server.url, report_workload=b"\x07" * 32), 403, "binding")


def test_replayed_evidence_under_a_new_key_is_refused(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        nonce = keep.nonce(client, server.url)
        original = keep.csr(nonce)
        assert client.post(f"{server.url}/attest", content=original, headers=PKCS10).status_code == 200
        # An attacker lifts the report and the nonce and signs a CSR with their own key.
        parsed = csr.parse_native_csr(original)
        thief = ec.generate_private_key(ec.SECP256R1())
        stolen = csr.build_csr(
            thief,
            statements=[(parsed.statements[0].type, parsed.statements[0].evidence)],
            workload_digest=parsed.workload_digest,
            nonce=parsed.nonce,
            certs=parsed.certs,
        )
        _refusal(client.post(f"{server.url}/attest", content=stolen, headers=PKCS10), 403, "binding")


def test_forged_and_expired_nonces_are_refused(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        nonce = bytearray(keep.nonce(client, server.url))
        nonce[-1] ^= 1
        body = keep.csr(bytes(nonce))
        _refusal(client.post(f"{server.url}/attest", content=body, headers=PKCS10), 403, "nonce.forged")
        # A nonce minted by this Steward's own secret, 10 minutes ago: correctly MACed, expired.
        old = server.steward.nonces.issue(time.time() - 600)
        body = keep.csr(old)
        _refusal(client.post(f"{server.url}/attest", content=body, headers=PKCS10), 403, "nonce.expired")
        body = keep.csr(b"short")
        _refusal(client.post(f"{server.url}/attest", content=body, headers=PKCS10), 400, "nonce.malformed")


def test_unknown_evidence_type_is_refused(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        nonce = keep.nonce(client, server.url)
        body = csr.build_csr(
            keep.key,
            statements=[(x509.ObjectIdentifier("1.3.6.1.4.1.99999.42"), b"whatever")],
            workload_digest=keep.workload,
            nonce=nonce,
        )
        _refusal(
            client.post(f"{server.url}/attest", content=body, headers=PKCS10), 400, "evidence.unknown_type"
        )


def test_corrupted_report_is_refused_by_the_verifier(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        nonce = keep.nonce(client, server.url)
        from donjon import binding

        ev = env.vendor.evidence(
            binding.keep_binding(kit.spki(keep.key), keep.workload, nonce), measurement=keep.measurement
        )
        report = bytearray(ev.report)
        report[0x90] ^= 0xFF  # MEASUREMENT, inside the signed region
        body = csr.build_csr(
            keep.key,
            statements=[(oids.EVIDENCE_SNP, bytes(report))],
            workload_digest=keep.workload,
            nonce=nonce,
            certs=ev.certs,
        )
        r = client.post(f"{server.url}/attest", content=body, headers=PKCS10)
        assert r.status_code == 403
        assert r.json()["check"] == "evidence.snp.signature"


def test_simulated_evidence_refused_when_policy_does_not_allow_it(env, kit):
    env.policy.write_text(kit.policy_text(allow_simulated=False))
    keep = kit.Keep(env.vendor)
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        _refusal(keep.attest(client, srv.url), 403, "policy.simulated")


def test_simulated_evidence_refused_when_its_root_is_not_configured(env, kit):
    text = env.config.read_text().replace('simulated = ["sim-ark.pem"]', "simulated = []")
    env.config.write_text(text)
    keep = kit.Keep(env.vendor)
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        r = keep.attest(client, srv.url)
        assert r.status_code == 403
        assert r.json()["check"].startswith("evidence.snp.chain")


def test_policy_denying_the_measurement(env, kit):
    env.policy.write_text(
        kit.policy_text(extra="").replace(
            "min_tcb", f'denied_measurements = ["{kit.MEASUREMENT.hex()}"]\nmin_tcb'
        )
    )
    keep = kit.Keep(env.vendor)
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        _refusal(keep.attest(client, srv.url), 403, "policy.measurement_denied")
        other = kit.Keep(env.vendor, measurement=hashlib.sha384(b"other image").digest())
        _refusal(other.attest(client, srv.url), 403, "policy.measurement")


def test_unknown_workload_and_debug_are_refused(server, env, kit):
    with httpx.Client() as client:
        stranger = kit.Keep(env.vendor, workload=hashlib.sha256(b"unknown").digest())
        _refusal(stranger.attest(client, server.url), 403, "policy.workload")
        keep = kit.Keep(env.vendor)
        r = keep.attest(client, server.url, debug=True)
        assert r.status_code == 403
        assert r.json()["check"] in ("evidence.snp.policy.debug", "policy.debug")


def test_missing_or_stale_collateral_is_refused(env, kit):
    crl = env.dir / "collateral" / "snp-report" / "ark.crl"
    crl.unlink()
    keep = kit.Keep(env.vendor)
    steward = env.steward()
    steward.collateral.recheck = 0  # see the directory change at once (the default looks once a second)
    with kit.ServerThread(steward) as srv, httpx.Client() as client:
        _refusal(keep.attest(client, srv.url), 403, "collateral.missing")
        # A CRL whose next update has passed: stale, refused (no grace in the policy).
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        crl.write_bytes(
            env.vendor.crl(last_update=now - timedelta(days=40), next_update=now - timedelta(days=2))
        )
        _refusal(keep.attest(client, srv.url), 403, "collateral.stale")


def test_collateral_grace_period_is_bounded_and_logged(env, kit):
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    crl = env.dir / "collateral" / "snp-report" / "ark.crl"
    crl.write_bytes(env.vendor.crl(last_update=now - timedelta(days=40), next_update=now - timedelta(days=2)))
    env.policy.write_text(
        kit.policy_text().replace('lifetime = "2h"', 'lifetime = "2h"\ncollateral_grace = "3d"')
    )
    keep = kit.Keep(env.vendor)
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        leaf, _ = _chain(keep.attest(client, srv.url))
        entry = env_log_entry(srv, leaf)
        assert entry.record["collateral"] == "steward-grace"
        assert "collateral_grace_until" in entry.record
    env.policy.write_text(
        kit.policy_text().replace('lifetime = "2h"', 'lifetime = "2h"\ncollateral_grace = "1d"')
    )
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        _refusal(keep.attest(client, srv.url), 403, "collateral.stale")


def test_every_admitted_decision_is_logged_and_the_tree_verifies(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        assert keep.attest(client, server.url).status_code == 200
        client.post(f"{server.url}/attest", content=b"junk", headers=PKCS10)
        keep.attest(client, server.url, report_key=ec.generate_private_key(ec.SECP256R1()))
    # Junk is not a decision: it is counted (donjon_steward_rejected_total), not logged.
    entries = list(server.steward.log.entries())
    assert [e.record["decision"] for e in entries] == ["issued", "refused"]
    assert [e.record.get("check") for e in entries[1:]] == ["binding"]
    assert entries[1].record["evidence_sha256"] and entries[1].record["csr_key"]
    log = server.steward.log
    assert log.verify(log.verifier).size == 2


def test_legacy_enarx_snp_csr(server, env, kit):
    from donjon import binding

    key = ec.generate_private_key(ec.SECP384R1())
    ev = env.vendor.evidence(binding.legacy_binding("snp-report", kit.spki(key)), measurement=kit.MEASUREMENT)
    body = csr.build_legacy_csr(
        key,
        "snp-report",
        ev.report,
        certs=ev.certs[:1],
        crls=[("https://kdsintf.amd.com/vcek/v1/Milan/crl", env.vendor.crl())],
    )
    with httpx.Client() as client:
        r = client.post(f"{server.url}/", content=body, headers=PKCS10)
        assert r.status_code == 200, r.text
        # DER SEQUENCE OF Certificate, issuer first.
        from pyasn1.codec.der import decoder
        from pyasn1.type import univ

        seq, rest = decoder.decode(r.content, asn1Spec=univ.SequenceOf(componentType=univ.Any()))
        assert rest == b""
        ca, leaf = (x509.load_der_x509_certificate(bytes(c)) for c in seq)
        leaf.verify_directly_issued_by(ca)
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [
            "spiffe://example.org/sim/enarx/legacy"
        ]
        entry = env_log_entry(server, leaf)
        assert entry.record["fresh"] is False
        assert "without freshness" in entry.record["freshness"]
        # The same evidence in a CSR signed by another key does not bind.
        thief = ec.generate_private_key(ec.SECP384R1())
        stolen = csr.build_legacy_csr(thief, "snp-report", ev.report, certs=ev.certs[:1])
        _refusal(client.post(f"{server.url}/", content=stolen, headers=PKCS10), 403, "binding")


def test_legacy_needs_policy_opt_in(env, kit):
    from donjon import binding

    env.policy.write_text(
        kit.policy_text().replace("allow_legacy_enarx = true", "allow_legacy_enarx = false")
    )
    key = ec.generate_private_key(ec.SECP384R1())
    ev = env.vendor.evidence(binding.legacy_binding("snp-report", kit.spki(key)), measurement=kit.MEASUREMENT)
    body = csr.build_legacy_csr(key, "snp-report", ev.report, certs=ev.certs[:1])
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        _refusal(client.post(f"{srv.url}/", content=body, headers=PKCS10), 403, "policy.legacy")


def test_a_native_csr_sent_to_the_legacy_endpoint_is_400(server, env, kit):
    keep = kit.Keep(env.vendor)
    with httpx.Client() as client:
        body = keep.csr(keep.nonce(client, server.url))
        _refusal(client.post(f"{server.url}/", content=body, headers=PKCS10), 400, "csr.no_evidence")


def test_slow_body_is_408_and_the_server_keeps_serving(env, kit):
    import socket

    with kit.ServerThread(env.steward(), request_timeout=0.5) as srv:
        with socket.create_connection(("127.0.0.1", srv.port)) as s:
            s.sendall(
                b"POST /attest HTTP/1.1\r\nHost: x\r\nContent-Type: application/pkcs10\r\n"
                b"Content-Length: 1000\r\n\r\n" + b"\x30" * 10
            )
            s.settimeout(10)
            answer = b""
            while b"request.timeout" not in answer:
                chunk = s.recv(65536)  # the answer may come in several segments
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408")
        assert b'"check":"request.timeout"' in answer
        with httpx.Client() as client:
            assert kit.Keep(env.vendor).attest(client, srv.url).status_code == 200


def test_policy_reload_under_load_drops_no_request(env, kit):
    import threading

    from donjon.steward.service import reload_policy

    keep = kit.Keep(env.vendor)
    statuses: list[int] = []
    with kit.ServerThread(env.steward()) as srv:
        stop = threading.Event()

        def load() -> None:
            with httpx.Client() as client:
                while not stop.is_set():
                    statuses.append(keep.attest(client, srv.url).status_code)

        workers = [threading.Thread(target=load) for _ in range(3)]
        for w in workers:
            w.start()
        good = env.policy.read_text()
        for i in range(6):
            env.policy.write_text(good if i % 2 else good + "\nbroken = = 1\n")
            assert reload_policy(srv.steward) is bool(i % 2)
            time.sleep(0.05)
        stop.set()
        for w in workers:
            w.join(30)
        assert srv.steward.policy.current.digest == hashlib.sha256(good.encode()).hexdigest()
    assert statuses and set(statuses) == {200}


def test_unattested_only_when_the_policy_says_so(env, kit):
    keep = kit.Keep(env.vendor)

    def nil_csr(client, url):
        return csr.build_csr(
            keep.key,
            statements=[(oids.EVIDENCE_NONE, b"")],
            workload_digest=keep.workload,
            nonce=keep.nonce(client, url),
        )

    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        r = client.post(f"{srv.url}/attest", content=nil_csr(client, srv.url), headers=PKCS10)
        _refusal(r, 403, "policy.unattested")
    env.policy.write_text("allow_unattested = true\n" + kit.policy_text())
    # allow_unattested is not enough (issue 9, finding 3): the workload must list "unattested".
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        r = client.post(f"{srv.url}/attest", content=nil_csr(client, srv.url), headers=PKCS10)
        _refusal(r, 403, "policy.platforms")
    env.policy.write_text(
        "allow_unattested = true\n"
        + kit.policy_text().replace('"simulated"]', '"simulated", "unattested"]', 1)
    )
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        leaf, _ = _chain(client.post(f"{srv.url}/attest", content=nil_csr(client, srv.url), headers=PKCS10))
        # No DNS or IP names: the rule lists none for /unattested certificates.
        assert not leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert uris.get_values_for_type(x509.UniformResourceIdentifier) == [
            "spiffe://example.org/unattested/test/web"
        ]
        assert env_log_entry(srv, leaf).record["unattested"] is True


def test_policy_test_cli_on_a_recorded_native_csr(env, kit, tmp_path, capsys):
    from donjon.cli import main as cli_main

    keep = kit.Keep(env.vendor)
    steward = env.steward()
    recorded = tmp_path / "keep.csr"
    recorded.write_bytes(keep.csr(steward.challenge()[0]))
    steward.log.close()
    args = ["policy", "test", "--policy", str(env.policy), "--simulated-root", str(env.dir / "sim-ark.pem")]
    args += ["--collateral", str(env.dir / "collateral"), "--evidence", str(recorded), "--format", "json"]
    assert cli_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] == "would issue" and out["spiffe_path"] == "/sim/test/web"
    assert out["nonce"].startswith("not checked")
    # Without the simulated root the same CSR is refused by the verifier, and says which check.
    args.remove("--simulated-root")
    args.remove(str(env.dir / "sim-ark.pem"))
    assert cli_main(args) == 1
    assert json.loads(capsys.readouterr().out)["check"].startswith("evidence.snp.chain")
    assert cli_main(["policy", "test", "--policy", str(env.policy), "--evidence", "/nonexistent"]) == 3
    # An unreadable policy file is operational (3), like any unreadable file; an invalid one is usage (2).
    missing = str(tmp_path / "missing.toml")
    assert cli_main(["policy", "test", "--policy", missing, "--evidence", str(recorded)]) == 3
    assert cli_main(["policy", "check", "--policy", missing]) == 3
    assert "cannot read policy" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("version = 1\nnonsense = true\n")
    assert cli_main(["policy", "check", "--policy", str(tmp_path / "bad.toml")]) == 2
    # A --collateral directory that does not exist is an unreadable file (3), not "no collateral".
    missing_dir = str(tmp_path / "no-such-collateral")
    assert cli_main(["policy", "test", "--policy", str(env.policy), "--evidence", str(recorded),
                     "--collateral", missing_dir]) == 3  # fmt: skip
    assert "no such directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("keep_age_days", "steward_has_crl", "expected"),
    [(1, True, "keep"), (10, True, "steward"), (1, False, "collateral.missing")],
    ids=["keep-newer", "keep-older", "steward-has-none"],
)
def test_keep_collateral_only_when_at_least_as_new(env, kit, keep_age_days, steward_has_crl, expected):
    from datetime import UTC, datetime, timedelta

    from donjon import binding

    now = datetime.now(UTC)
    crl_path = env.dir / "collateral" / "snp-report" / "ark.crl"
    if steward_has_crl:
        crl_path.write_bytes(
            env.vendor.crl(last_update=now - timedelta(days=5), next_update=now + timedelta(days=5))
        )
    else:
        crl_path.unlink()
    keep_crl = env.vendor.crl(
        last_update=now - timedelta(days=keep_age_days), next_update=now + timedelta(days=20)
    )
    key = ec.generate_private_key(ec.SECP384R1())
    ev = env.vendor.evidence(binding.legacy_binding("snp-report", kit.spki(key)), measurement=kit.MEASUREMENT)
    body = csr.build_legacy_csr(
        key, "snp-report", ev.report, certs=ev.certs[:1], crls=[("https://kds/crl", keep_crl)]
    )
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        r = client.post(f"{srv.url}/", content=body, headers=PKCS10)
        if expected.startswith("collateral."):
            _refusal(r, 403, expected)
            return
        assert r.status_code == 200, r.text
        entry = list(srv.steward.log.entries())[-1]
        assert entry.record["collateral"] == expected


def test_weak_csr_key_is_refused(server, env, kit):
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keep = kit.Keep(env.vendor, key=weak)
    with httpx.Client() as client:
        _refusal(keep.attest(client, server.url), 400, "csr.key")
    keep = kit.Keep(env.vendor, key=ec.generate_private_key(ec.SECP384R1()))
    with httpx.Client() as client:
        assert keep.attest(client, server.url).status_code == 200


def test_no_certificate_leaves_when_its_log_entry_cannot_be_committed(env, kit):
    """Signed but not logged is not issued: a failing commit answers 500 and hands out nothing."""
    steward = env.steward()
    real = steward.log
    appended: list[dict] = []

    class FailingLog:
        def append(self, record, time):
            appended.append(dict(record))
            raise OSError("disk full")

        def entries(self, *, start=1):
            return real.entries(start=start)

        def find_serial(self, serial):
            return real.find_serial(serial)

        def close(self):
            real.close()

    steward.log = FailingLog()
    keep = kit.Keep(env.vendor)
    with kit.ServerThread(steward) as srv, httpx.Client() as client:
        r = keep.attest(client, srv.url)
        assert r.status_code == 500, r.text
        assert r.json()["check"] == "server.error"
        assert "OSError" in r.json()["reason"]
        assert b"BEGIN CERTIFICATE" not in r.content
        assert [a["decision"] for a in appended] == ["issued"]  # the commit was tried, after signing
        metrics = client.get(f"{srv.url}/metrics").text
        assert "donjon_steward_issued_total{" not in metrics
        # Recorded where it can be: counted as a server fault.
        assert 'donjon_steward_rejected_total{reason="server.error"} 1' in metrics
        assert list(real.entries()) == []
