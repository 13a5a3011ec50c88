"""Host names cannot see the /sim marker, so a Keep's host-named connect checks it (issue 9 finding 3),
and a Keep's certificate may name IP addresses (issue 10 "IP addresses").

One local Steward (simulated vendors only) issues to Keep A, ``examples/http`` on
127.0.0.1 in a sim-snp Keep: its certificate is ``spiffe://…/sim/marked/a`` and carries the names
the policy lists for ``/sim`` certificates, ``localhost`` and ``127.0.0.1``. Then:

- Keep B (``examples/client``, a ``connect`` to ``host = "127.0.0.1"`` with ``trust = "steward"``,
  host-name verification) refuses A in the handshake: its certificate names the host, but its
  SPIFFE ID says SIMULATED. Keep B' — the same with ``allow_simulated = true`` on the entry, a
  workload of its own (the key is in the digest) — fetches A's page.
- ``curl https://127.0.0.1:PORT/ --cacert <Steward CA>`` (and Python's ssl, checking the IP SAN
  the same way) fetches A's page: the address is in the certificate.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from donjon.config import parse_config, workload_digest
from donjon.demo.steward import LocalSteward

from .conftest import https_get

ROOT = Path(__file__).resolve().parents[2]
HTTP = ROOT / "examples" / "http" / "http.wasm"
CLIENT = ROOT / "examples" / "client" / "client.wasm"


def _stdio() -> list[str]:
    lines: list[str] = []
    for kind in ("stdin", "stdout", "stderr"):
        lines += ["[[files]]", f'kind = "{kind}"']
    return lines


def _write(tmp_path: Path, name: str, lines: list[str], wasm: Path) -> SimpleNamespace:
    config = tmp_path / f"{name}.toml"
    config.write_text("\n".join(lines) + "\n")
    digest = workload_digest(wasm.read_bytes(), parse_config(config.read_bytes()).config)
    return SimpleNamespace(config=config, wasm=wasm, digest=digest)


def _head(steward: LocalSteward) -> list[str]:
    return [f'steward = "{steward.url}"', f'steward_ca = "{steward.ca_path}"', 'backends = ["sim-snp"]']


def _server(steward: LocalSteward, tmp_path: Path, port: int) -> SimpleNamespace:
    lines = [*_head(steward), "[env]", 'HTTP_FD_NAME = "web"', *_stdio()]
    lines += ["[[files]]", 'kind = "listen"', 'name = "web"', 'addr = "127.0.0.1"', f"port = {port}"]
    return _write(tmp_path, "a", lines, HTTP)


def _client(
    steward: LocalSteward, tmp_path: Path, port: int, *, name: str, extra: str = ""
) -> SimpleNamespace:
    lines = [*_head(steward), "[env]", 'CLIENT_FD_NAME = "peer"', *_stdio()]
    lines += ["[[files]]", 'kind = "connect"', 'name = "peer"', 'host = "127.0.0.1"', f"port = {port}"]
    lines += ['trust = "steward"', *([extra] if extra else [])]
    return _write(tmp_path, name, lines, CLIENT)


def _run(e2e: SimpleNamespace, w: SimpleNamespace) -> Any:
    return e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])


def test_host_named_connect_refuses_a_simulated_peer_unless_allowed_and_curl_reaches_the_ip(
    e2e: SimpleNamespace, helpers: SimpleNamespace, tmp_path: Path
) -> None:
    steward = e2e.steward()
    port = helpers.free_port()
    a = _server(steward, tmp_path, port)
    strict = _client(steward, tmp_path, port, name="b")
    lenient = _client(steward, tmp_path, port, name="b-allow", extra="allow_simulated = true")
    assert len({a.digest, strict.digest, lenient.digest}) == 3  # the key is part of the digest
    rules = [
        e2e.rule(a.digest, "/marked/a", dns_names=("localhost",), ip=("127.0.0.1", "::1")),
        e2e.rule(strict.digest, "/marked/b"),
        e2e.rule(lenient.digest, "/marked/b-allow"),
    ]
    steward.set_policy(e2e.policy(rules))

    keep_a = _run(e2e, a)
    keep_a.wait_for("listening on")
    sim_id = f"spiffe://{steward.trust_domain}/sim/marked/a"
    assert f"{sim_id} [SIMULATED TEE]" in keep_a.err

    # IP SANs: curl and Python's ssl reach https://127.0.0.1:PORT/ with only the Steward CA.
    assert b"Hello from a Donjon Keep" in https_get(port, steward.ca_path, server_hostname="127.0.0.1")
    curl = shutil.which("curl")
    if curl is not None:  # Debian's curl (scripts/test installs it); Python's ssl above checks the same
        got = subprocess.run(
            [curl, "-sS", "--max-time", "20", "--cacert", str(steward.ca_path), f"https://127.0.0.1:{port}/"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert got.returncode == 0, got.stderr
        assert "Hello from a Donjon Keep" in got.stdout

    # Host-name verification alone would accept A (it names 127.0.0.1); the /sim marker does not.
    keep_b = _run(e2e, strict)
    assert keep_b.wait() == 2  # examples/client: an I/O error on its socket
    assert "Hello from a Donjon Keep" not in "\n".join(keep_b.stdout)
    assert "SIMULATED evidence" in keep_b.err and sim_id in keep_b.err, keep_b.err
    assert "allow_simulated = true" in keep_b.err
    assert "Traceback" not in keep_b.err

    keep_b2 = _run(e2e, lenient)
    assert keep_b2.wait() == 0, keep_b2.err
    out = "\n".join(keep_b2.stdout)
    assert out.startswith("HTTP/1.1 200") and "Hello from a Donjon Keep" in out, out
