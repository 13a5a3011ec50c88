"""Every request to the Steward ends in one accounted outcome, and hostile bodies are cheap.

docs/steward.md "Outcomes": a request that passes the csr.* and nonce.* checks
(admitted) gets exactly one log entry — issued, or refused with its check; any
other request is counted in ``donjon_steward_rejected_total{reason}`` and sampled
in the JSON log, never written to the log database. Internal faults become
``server.error`` naming the exception's type. The tests drive the real ASGI
application (Starlette's TestClient) over a real Steward with its SQLite log.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # Starlette >= 1.x would rather drive its TestClient with "httpx2"; httpx still works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from donjon import csr, oids
from donjon.steward.app import create_app
from donjon.steward.errors import Refused
from donjon.steward.issuance import Steward
from donjon.steward.sampling import LogSampler

PKCS10 = {"Content-Type": "application/pkcs10"}


# --- DER by hand (X.690), for shapes no encoder would make ---


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def long_arc_oid(size: int) -> bytes:
    """OBJECT IDENTIFIER 1.2.<one arc of ``size`` base-128 bytes>."""
    return tlv(0x06, b"\x2a" + b"\xff" * max(size - 2, 0) + b"\x7f")


KEY = ec.generate_private_key(ec.SECP256R1())


def signed_native(nonce: bytes, *, statements: bytes, certs: bytes | None = None) -> bytes:
    """A native CSR signed by KEY, with a valid nonce and this AttestationBundle content."""
    bundle = tlv(0x30, tlv(0x30, statements) + (tlv(0x30, certs) if certs is not None else b""))
    attrs = csr._Attributes()
    for oid, value in (
        (oids.ID_AA_ATTESTATION, bundle),
        (oids.CSR_ATTR_WORKLOAD_DIGEST, tlv(0x04, b"\x01" * 32)),
        (oids.CSR_ATTR_NONCE, tlv(0x04, nonce)),
    ):
        attrs.append(csr._attribute(oid, value))
    return csr._finish(KEY, attrs)


def statement(type_der: bytes, evidence: bytes) -> bytes:
    return tlv(0x30, type_der + tlv(0x04, evidence))


def oid_der(oid: Any) -> bytes:
    return bytes(csr.der_encoder.encode(csr.univ.ObjectIdentifier(oid.dotted_string)))


# --- the application under test ---


@dataclasses.dataclass
class Asgi:
    client: TestClient
    steward: Steward

    def post(self, path: str, body: bytes, headers: dict[str, str] = PKCS10) -> Any:
        return self.client.post(path, content=body, headers=headers)

    def entries(self) -> int:
        return sum(1 for _ in self.steward.log.entries())

    def metrics(self) -> str:
        return str(self.client.get("/metrics").text)

    def nonce(self) -> bytes:
        return self.steward.challenge()[0]


@pytest.fixture
def asgi(env: Any) -> Iterator[Asgi]:
    steward = env.steward()
    with TestClient(create_app(steward), base_url="http://testserver") as client:
        yield Asgi(client, steward)
    steward.close()


def rejected(metrics: str, reason: str) -> int:
    prefix = f'donjon_steward_rejected_total{{reason="{reason}"}} '
    return sum(int(line[len(prefix) :]) for line in metrics.splitlines() if line.startswith(prefix))


# --- finding 2: one long OID arc ---


@pytest.mark.parametrize("size", [60_000, 240_000], ids=["60KB", "240KB"])
def test_a_long_arc_statement_type_is_a_fast_400_and_nothing_is_logged(asgi, size):
    # Before: 0.3 s / 5 s of CPU, then an uncaught ValueError (a 500). The bound here is
    # generous (the benchmark measures ~0.3 ms): it only catches the quadratic decode.
    body = signed_native(asgi.nonce(), statements=statement(long_arc_oid(size), b"report"))
    started = time.process_time()
    r = asgi.post("/attest", body)
    spent = time.process_time() - started
    assert r.status_code == 400, r.text
    assert r.json()["check"] == "csr.parse" and "OBJECT IDENTIFIER" in r.json()["reason"]
    assert spent < 0.25, f"{spent:.3f} s of CPU for one CSR"
    assert asgi.entries() == 0
    assert rejected(asgi.metrics(), "csr.parse") == 1


def test_the_same_csr_with_a_short_type_is_admitted_and_logged(asgi):
    # The counterpart of the test above: a well-formed CSR with a valid nonce gets its entry.
    body = signed_native(asgi.nonce(), statements=statement(oid_der(oids.EVIDENCE_SNP), b"report"))
    r = asgi.post("/attest", body)
    assert r.status_code == 400 and r.json()["check"].startswith("evidence."), r.text
    assert asgi.entries() == 1


# --- finding 6: garbage is counted, not stored ---


def test_a_garbage_flood_does_not_grow_the_log_and_is_sampled(env, kit, caplog):
    steward = env.steward()
    keep = kit.Keep(env.vendor)
    valid = keep.csr(steward.challenge()[0])
    bodies = [os.urandom(n) for n in (0, 1, 50, 3000)] * 10
    bodies += [valid[:-1], valid + b"\x00", valid[:40] + b"\xff" + valid[41:]] * 10
    caplog.set_level("INFO", logger="donjon.steward")

    def stored() -> dict[str, int]:  # the SQLite database and its write-ahead log, on disk
        return {p.name: p.stat().st_size for p in env.dir.glob("log.db*")}

    with TestClient(create_app(steward, log_lines_per_second=3)) as client:
        before = stored()
        started = time.monotonic()
        for body in bodies:
            assert client.post("/attest", content=body, headers=PKCS10).status_code == 400
        assert client.post("/attest", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
        assert client.get("/nope").status_code == 404 and client.get("/attest").status_code == 405
        seconds = time.monotonic() - started
        metrics = client.get("/metrics").text
        assert stored() == before  # not a byte written for the flood
        assert client.post("/attest", content=valid, headers=PKCS10).status_code == 200
    assert [e.record["decision"] for e in steward.log.entries()] == ["issued"]
    steward.close()
    counted = sum(int(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                  if line.startswith("donjon_steward_rejected_total{"))  # fmt: skip
    assert counted == len(bodies) + 3
    assert rejected(metrics, "request.path") == 1 and rejected(metrics, "request.method") == 1
    assert "donjon_steward_refused_total{" not in metrics
    lines = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("decision") == "refused"]
    assert all(line["logged"] is False for line in lines)
    parse_lines = [line for line in lines if line["check"] == "csr.parse"]
    # At most 3 lines per second and reason; the rest are counted in the next line written.
    assert 1 <= len(parse_lines) <= 3 * (int(seconds) + 2) < rejected(metrics, "csr.parse")


def test_the_sampler_writes_n_lines_per_second_and_counts_the_rest():
    now = [100.0]
    sampler = LogSampler(2, clock=lambda: now[0])
    assert [sampler.admit("csr.parse") for _ in range(5)] == [0, 0, None, None, None]
    assert sampler.admit("nonce.forged") == 0  # reasons are sampled separately
    now[0] = 101.2
    assert sampler.admit("csr.parse") == 3  # the three left out, reported on the next line
    assert sampler.admit("csr.parse") == 0
    assert sampler.admit("csr.parse") is None


# --- internal errors: one accounted outcome, never a bare 500 ---


def test_a_fault_after_admission_is_a_logged_server_error_naming_its_type(env, kit, caplog):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug in a verifier")

    steward = env.steward(verifier=broken)
    caplog.set_level("INFO", logger="donjon.steward")
    with TestClient(create_app(steward)) as client:
        r = kit.Keep(env.vendor).attest(client, "http://testserver")
        metrics = client.get("/metrics").text
    assert r.status_code == 500
    assert r.json() == {
        "error": "internal",
        "check": "server.error",
        "reason": "internal error (KeyError); nothing was issued",
    }
    (entry,) = steward.log.entries()
    assert entry.record["decision"] == "refused" and entry.record["check"] == "server.error"
    assert "KeyError" in entry.record["reason"] and entry.record["evidence_kind"] == "snp-report"
    assert 'donjon_steward_refused_total{check="server.error"} 1' in metrics
    (line,) = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("check") == "server.error"]
    assert line["logged"] is True and line["exception"] == "KeyError" and line["status"] == 500
    steward.close()


def test_a_fault_while_signing_is_logged_without_any_certificate_field(env, kit, monkeypatch):
    steward = env.steward()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("no room to sign")  # (an Exception, like any resource fault)

    monkeypatch.setattr(steward.ca, "issue", broken)
    with pytest.raises(Refused) as info:
        steward.attest(kit.Keep(env.vendor).csr(steward.challenge()[0]))
    assert info.value.check == "server.error" and info.value.logged and "MemoryError" in info.value.reason
    (entry,) = steward.log.entries()
    assert entry.record["decision"] == "refused" and entry.record["claims"]
    assert not {"serial", "spiffe_id", "certificate_sha256"} & set(entry.record)
    steward.close()


def test_a_fault_before_admission_is_counted_and_logged_as_a_json_line(env, kit, caplog, monkeypatch):
    from donjon.steward import issuance

    def broken(body: bytes) -> Any:
        raise ValueError("a bug in the parser")

    monkeypatch.setattr(issuance, "parse_native_csr", broken)
    steward = env.steward()
    caplog.set_level("INFO", logger="donjon.steward")
    with TestClient(create_app(steward)) as client:
        r = client.post("/attest", content=b"anything", headers=PKCS10)
        metrics = client.get("/metrics").text
    assert r.status_code == 500 and r.json()["check"] == "server.error"
    assert list(steward.log.entries()) == []  # not admitted: nothing to log it under
    assert rejected(metrics, "server.error") == 1
    (line,) = [r.fields for r in caplog.records if getattr(r, "fields", {}).get("check") == "server.error"]
    assert line["logged"] is False and line["exception"] == "ValueError"
    assert line["detail"] == "a bug in the parser"
    assert line["where"].startswith("test_steward_outcomes.py:") and line["where"].endswith("in broken")
    steward.close()


def test_a_refusal_the_log_cannot_record_is_a_counted_server_error(env, kit):
    steward = env.steward()
    real = steward.log

    class FullDisk:
        def append(self, record: Any, time: str) -> Any:
            raise OSError("disk full")

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    steward.log = FullDisk()  # type: ignore[assignment]
    keep = kit.Keep(env.vendor)
    with TestClient(create_app(steward)) as client:
        r = keep.attest(client, "http://testserver", report_key=ec.generate_private_key(ec.SECP256R1()))
        metrics = client.get("/metrics").text
    # The binding refused it, but the refusal could not be logged: a server fault, recorded in metrics.
    assert r.status_code == 500 and r.json()["check"] == "server.error" and "OSError" in r.json()["reason"]
    assert rejected(metrics, "server.error") == 1
    assert "donjon_steward_refused_total{" not in metrics
    real.close()


# --- deadlines: the chain always ends in one outcome ---


def test_a_certificate_signed_past_its_deadline_is_logged_as_a_timeout(env, kit):
    release = threading.Event()
    steward = env.steward()
    real_verify = steward.verifier

    def slow(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real_verify(*args, **kwargs)

    steward.verifier = slow
    keep = kit.Keep(env.vendor)
    with TestClient(create_app(steward, request_timeout=0.3)) as client:
        r = keep.attest(client, "http://testserver")
        assert r.status_code == 503 and r.json()["check"] == "server.timeout"
        release.set()
        give_up = time.monotonic() + 20
        while not list(steward.log.entries()) and time.monotonic() < give_up:
            time.sleep(0.01)
        metrics = client.get("/metrics").text
    (entry,) = steward.log.entries()
    # Not "issued": the client never received it, so the log must not say it was handed out.
    assert entry.record["decision"] == "refused" and entry.record["check"] == "server.timeout"
    assert "serial" not in entry.record and entry.record["evidence_kind"] == "snp-report"
    assert 'donjon_steward_refused_total{check="server.timeout"} 1' in metrics
    assert "donjon_steward_issued_total{" not in metrics
    steward.close()


def test_commit_past_the_deadline_logs_a_timeout_and_work_queued_past_it_is_not_done(env, kit):
    steward = env.steward()
    keep = kit.Keep(env.vendor)
    prepared = steward.prepare(keep.csr(steward.challenge()[0]), deadline=time.monotonic() + 60)
    late = dataclasses.replace(prepared, deadline=time.monotonic() - 1)
    with pytest.raises(Refused) as info:
        steward.commit(late)
    assert info.value.check == "server.timeout" and info.value.status == 503 and info.value.logged
    (entry,) = steward.log.entries()
    assert entry.record["check"] == "server.timeout" and "serial" not in entry.record
    # A request whose deadline passed while it waited for a worker is refused before any check.
    with pytest.raises(Refused) as info:
        steward.prepare(keep.csr(steward.challenge()[0]), deadline=time.monotonic() - 1)
    assert info.value.check == "server.timeout" and not info.value.logged
    assert len(list(steward.log.entries())) == 1
    assert 'donjon_steward_rejected_total{reason="server.timeout"} 1' in steward.metrics.render()
    steward.close()


# --- the property: any body -> 2xx/4xx, and the log grows only for admitted requests ---

# Statement types whose evidence the Steward verifies (CCA included: with no platform key pinned
# it is a named, logged refusal, evidence.cca.platform.key, never a 500).
KINDS = ("snp-report", "tdx-quote", "sgx-quote", "cca-token", "none")


def _der_junk() -> st.SearchStrategy[bytes]:
    """DER-shaped junk: nested TLVs with any tag, lengths that lie, long OIDs, deep nesting."""
    leaf = st.one_of(
        st.builds(tlv, st.integers(0, 255), st.binary(max_size=64)),
        st.integers(1, 70_000).map(long_arc_oid),
        st.builds(
            lambda tag, n, rest: bytes([tag, 0x84]) + n.to_bytes(4, "big") + rest,
            st.integers(0, 255),
            st.integers(0, 2**32 - 1),
            st.binary(max_size=16),
        ),
        st.integers(1, 20_000).map(lambda depth: b"\x30\x80" * depth),  # indefinite lengths (BER)
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.builds(lambda tag, parts: tlv(tag, b"".join(parts)), st.sampled_from([0x30, 0x31, 0xA0, 0x04]),
                      st.lists(inner, max_size=4)),
        ),
        max_leaves=12,
    )  # fmt: skip


def _mutate(data: bytes, draw: Any) -> bytes:
    how = draw(st.sampled_from(["flip", "truncate", "insert", "splice"]))
    i = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if how == "truncate":
        return data[:i]
    if how == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=32)) + data[i:]
    return data[:i] + draw(_der_junk()) + data[i + draw(st.integers(0, 64)) :]


@st.composite
def _bodies(draw: Any, native: bytes, legacy: bytes, nonce: bytes) -> tuple[str, bytes, bool]:
    """(endpoint, body, admitted): admitted by construction — well-formed, signed, nonce valid."""
    shape = draw(st.sampled_from(["random", "junk", "mutated", "signed-junk-evidence", "signed-bad-shape"]))
    path = draw(st.sampled_from(["/attest", "/"]))
    if shape == "random":
        return path, draw(st.binary(max_size=4096)), False
    if shape == "junk":
        return path, draw(_der_junk()), False
    if shape == "mutated":
        return path, _mutate(native if path == "/attest" else legacy, draw), False
    if shape == "signed-bad-shape":
        # Signed, valid nonce, but the bundle is not what a Keep sends: refused before admission.
        stmts = draw(st.one_of(
            _der_junk(),
            st.integers(64, 100_000).map(lambda n: statement(long_arc_oid(n), b"x")),
            st.just(statement(tlv(0x06, b"\x2b\x06\x01\x04\x01\x82\x37\x2a"), b"x")),  # unknown type
        ))  # fmt: skip
        return "/attest", signed_native(nonce, statements=stmts), False
    evidence = draw(st.binary(max_size=2048))
    certs = draw(st.lists(st.builds(tlv, st.just(0x30), st.binary(max_size=200)), max_size=3))
    if path == "/attest":
        kind = draw(st.sampled_from(KINDS))
        stmts = statement(oid_der(oids.EVIDENCE_OID_BY_KIND[kind]), evidence)
        return path, signed_native(nonce, statements=stmts, certs=b"".join(certs) or None), True
    kind = draw(st.sampled_from(["snp-report", "sgx-quote"]))
    body = csr.build_legacy_csr(
        KEY,
        kind,
        evidence,
        certs=[certs[0] if certs else b"\x30\x00"] if kind == "snp-report" else certs,
        crls=[("http://crl", c) for c in certs[:2]],
        tcb_info=draw(st.binary(max_size=64)),
    )
    return path, body, True  # the test policy accepts Enarx CSRs: they have no nonce to check


def test_any_body_is_2xx_or_4xx_and_only_admitted_requests_grow_the_log(env, kit):
    steward = env.steward()
    keep = kit.Keep(env.vendor)
    nonce = steward.challenge()[0]
    native = keep.csr(nonce)
    legacy = csr.build_legacy_csr(KEY, "snp-report", b"r" * 100, certs=[b"\x30\x00"])
    with TestClient(create_app(steward)) as client:
        counts = {"entries": 0, "admitted": 0, "other": 0}

        @settings(
            max_examples=int(os.environ.get("DONJON_PROPERTY_EXAMPLES", "300")),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(_bodies(native, legacy, nonce), st.sampled_from(["application/pkcs10"] * 6 + ["text/plain"]))
        def check(case: tuple[str, bytes, bool], ctype: str) -> None:
            path, body, admitted = case
            r = client.post(path, content=body, headers={"Content-Type": ctype})
            after = sum(1 for _ in steward.log.entries())
            grew, counts["entries"] = after - counts["entries"], after
            assert r.status_code < 500, (r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/json")
            assert r.json()["check"]
            expected = 1 if admitted and ctype == "application/pkcs10" else 0
            assert grew == expected, (path, r.json())
            counts["admitted" if expected else "other"] += 1

        check()
        # Both sides of the rule were exercised.
        assert counts["admitted"] >= 10 and counts["other"] >= 10, counts
    steward.close()
