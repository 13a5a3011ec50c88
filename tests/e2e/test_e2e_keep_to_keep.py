"""Keep to Keep through the real ``donjon run`` (issue 3): mutual TLS between two attested Keeps.

One local Steward issues to two sim-snp Keeps, its policy mapping each workload digest to its own
SPIFFE path. Keep A serves ``examples/http`` on a ``listen`` entry with ``client_auth = "steward"``
and ``client_identity`` = B's SPIFFE ID; Keep B runs ``examples/client`` with a ``connect`` entry
to A, ``trust = "steward"`` and ``peer_identity`` = A's SPIFFE ID (so A is checked by SPIFFE ID,
not host name: B dials 127.0.0.1, a name A's certificate does not carry). Both identities are
SIMULATED (path ``/sim/...``); each side accepts the other only because its config names that
exact ID (docs/run.md "Sockets", the relying party's rules).

(examples/echo would not do: examples/client reads its answer until the server closes, and the
echo server never closes first; examples/http answers one request per connection and closes.)
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from donjon.config import parse_config, workload_digest
from donjon.demo.steward import LocalSteward

ROOT = Path(__file__).resolve().parents[2]
HTTP = ROOT / "examples" / "http" / "http.wasm"
CLIENT = ROOT / "examples" / "client" / "client.wasm"
PATH_A, PATH_B, PATH_C = "/k2k/a", "/k2k/b", "/k2k/c"


def _head(steward: LocalSteward) -> list[str]:
    return [
        f'steward = "{steward.url}"',
        f'steward_ca = "{steward.ca_path}"',
        'backends = ["sim-snp"]',
    ]


def _stdio() -> list[str]:
    lines: list[str] = []
    for kind in ("stdin", "stdout", "stderr"):
        lines += ["[[files]]", f'kind = "{kind}"']
    return lines


def _sim_id(steward: LocalSteward, path: str) -> str:
    return f"spiffe://{steward.trust_domain}/sim{path}"


def _write(tmp_path: Path, name: str, lines: list[str], wasm: Path) -> SimpleNamespace:
    config = tmp_path / f"{name}.toml"
    config.write_text("\n".join(lines) + "\n")
    digest = workload_digest(wasm.read_bytes(), parse_config(config.read_bytes()).config)
    return SimpleNamespace(config=config, wasm=wasm, digest=digest)


def server_a(
    steward: LocalSteward, tmp_path: Path, port: int, *, client_identity: str, name: str = "a"
) -> SimpleNamespace:
    lines = [*_head(steward), "[env]", 'HTTP_FD_NAME = "web"', *_stdio()]
    lines += [
        "[[files]]",
        'kind = "listen"',
        'name = "web"',
        'addr = "127.0.0.1"',
        f"port = {port}",
        'prot = "tls"',
        'client_auth = "steward"',
        f'client_identity = "{client_identity}"',
    ]
    return _write(tmp_path, name, lines, HTTP)


def client_b(
    steward: LocalSteward, tmp_path: Path, port: int, *, peer_identity: str, name: str = "b"
) -> SimpleNamespace:
    lines = [*_head(steward), "[env]", 'CLIENT_FD_NAME = "peer"', *_stdio()]
    lines += [
        "[[files]]",
        'kind = "connect"',
        'name = "peer"',
        'host = "127.0.0.1"',
        f"port = {port}",
        'prot = "tls"',
        'trust = "steward"',
        f'peer_identity = "{peer_identity}"',
    ]
    return _write(tmp_path, name, lines, CLIENT)


def run(e2e: SimpleNamespace, w: SimpleNamespace) -> Any:
    return e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])


def test_keep_b_fetches_from_keep_a_each_checking_the_others_spiffe_id(
    e2e: SimpleNamespace, helpers: SimpleNamespace, tmp_path: Path
) -> None:
    steward = e2e.steward()
    port = helpers.free_port()
    id_a, id_b = _sim_id(steward, PATH_A), _sim_id(steward, PATH_B)
    a = server_a(steward, tmp_path, port, client_identity=id_b)
    b = client_b(steward, tmp_path, port, peer_identity=id_a)
    # B expecting another Keep than A: a workload of its own (the expectation is in its digest).
    wrong = client_b(steward, tmp_path, port, peer_identity=_sim_id(steward, PATH_C), name="b-wrong")
    assert len({a.digest, b.digest, wrong.digest}) == 3
    steward.set_policy(
        e2e.policy([e2e.rule(a.digest, PATH_A), e2e.rule(b.digest, PATH_B), e2e.rule(wrong.digest, PATH_B)])
    )

    keep_a = run(e2e, a)
    keep_a.wait_for("listening on")
    assert f"{id_a} [SIMULATED TEE]" in keep_a.err

    keep_b = run(e2e, b)
    assert keep_b.wait() == 0, keep_b.err
    assert f"{id_b} [SIMULATED TEE]" in keep_b.err
    out = "\n".join(keep_b.stdout)
    assert out.startswith("HTTP/1.1 200") and "Hello from a Donjon Keep" in out, out

    # B's expectation names C: A's certificate (A's ID) is refused in the handshake, nothing served.
    keep_wrong = run(e2e, wrong)
    assert keep_wrong.wait() == 2  # examples/client: an I/O error on its socket
    assert "tls: handshake failed, connection to" in keep_wrong.err
    assert "SPIFFE ID is not an expected one" in keep_wrong.err
    assert "Hello from a Donjon Keep" not in "\n".join(keep_wrong.stdout)
    assert id_a in keep_wrong.err and _sim_id(steward, PATH_C) in keep_wrong.err, keep_wrong.err
    assert "Traceback" not in keep_wrong.err
    # A authenticated B by its SPIFFE ID; B's refusal of A failed A's side of that handshake too.
    assert f"peer {id_b}" in keep_a.wait_for("tls: connection from")
    keep_a.wait_for("tls: handshake failed, connection from")
    assert keep_a.proc.poll() is None


def test_keep_a_requiring_another_client_identity_refuses_keep_b(
    e2e: SimpleNamespace, helpers: SimpleNamespace, tmp_path: Path
) -> None:
    steward = e2e.steward()
    port = helpers.free_port()
    id_a, id_b, id_c = (_sim_id(steward, p) for p in (PATH_A, PATH_B, PATH_C))
    a = server_a(steward, tmp_path, port, client_identity=id_c)
    b = client_b(steward, tmp_path, port, peer_identity=id_a)
    steward.set_policy(e2e.policy([e2e.rule(a.digest, PATH_A), e2e.rule(b.digest, PATH_B)]))

    keep_a = run(e2e, a)
    keep_a.wait_for("listening on")
    keep_b = run(e2e, b)
    assert keep_b.wait() == 2  # examples/client: an I/O error on its socket
    assert "Hello from a Donjon Keep" not in "\n".join(keep_b.stdout)
    assert "Traceback" not in keep_b.err
    # A says why: B's ID is not the one its config names.
    line = keep_a.wait_for("handshake failed")
    assert id_b in line and id_c in line, line
