"""Bind before attesting (issue 10): a Keep whose port is taken fails before it asks the Steward.

A real Steward (whose policy admits the workload) and ``donjon run --backend sim-snp`` in a child
process; the port is held by another socket on 127.0.0.1. Before the fix the Keep attested first
(one certificate issued and logged), then failed to bind.
"""

from __future__ import annotations

import socket


def test_a_port_clash_fails_before_attesting_and_nothing_is_issued(e2e):
    steward = e2e.steward()
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, "/e2e/web")]))  # it WOULD be issued
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", w.port))
        busy.listen()
        keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
        assert keep.wait() == 3
    assert f'files[3] ("web"): listen 127.0.0.1:{w.port}: Address already in use' in keep.err
    assert "attested by" not in keep.err and "Traceback" not in keep.err
    assert keep.err.count("\n") == 0  # one line, nothing else
    assert steward.log_entries() == []  # no certificate issued, no decision logged at all


def test_the_same_keep_attests_once_the_port_is_free(e2e):
    # The control: with the port free, the same Keep is issued a certificate and listens.
    steward = e2e.steward()
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, "/e2e/web")]))
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    keep.wait_for(f"listening on tls 127.0.0.1:{w.port}")
    assert [r["decision"] for r in steward.log_entries()] == ["issued"]


def test_a_file_that_is_not_webassembly_is_refused_before_attesting(e2e, helpers):
    steward = e2e.steward()
    readme = b"# http\n\nA tiny HTTP server; build it with build-net.sh.\n"
    w = e2e.workload("http", steward_url=steward.url, steward_ca=steward.ca_path, name="web", module=readme)
    keep = e2e.keep(["--backend", "sim-snp", "--config", str(w.config), str(w.wasm)])
    assert keep.wait() == 2
    assert f'{w.wasm}: not a WebAssembly module (starts with "# http\\n\\nA tiny H", text;' in keep.err
    assert keep.err.count("\n") == 0 and "attested by" not in keep.err
    assert steward.log_entries() == []
    assert helpers.refuses_connections(w.port)
