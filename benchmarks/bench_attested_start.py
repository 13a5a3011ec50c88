"""Attested start: from ``donjon run`` to the first TLS connection accepted, sim-snp beside nil.

Reproduce:

    /work/venv/bin/python benchmarks/bench_attested_start.py [--runs 7]

What is measured, in one run on this machine, interleaved (nil, sim-snp, nil, sim-snp...):

- the Keep is the real command line in a child process (``python -m donjon run --no-cache
  --verbose --config Donjon.toml http.wasm``) serving ``examples/http`` with ``prot = "tls"``;
- the client (this process) tries a TLS 1.3 handshake with the Keep's port every 2 ms from the
  moment the child is spawned; the time of the first completed handshake is the result;
- ``sim-snp`` attests to a real Steward (``donjon.demo.steward.LocalSteward``: HTTPS on loopback,
  SQLite log, the real SEV-SNP verifier on simulated evidence) running in this process;
  ``nil`` has no Steward and uses a self-signed certificate.

Phases of the sim-snp start, from the Keep's own ``--verbose`` lines (received on its stderr):
``start`` = until attestation begins (interpreter, imports, config, digest, backend);
``evidence`` = the simulator signing the report; ``Steward`` = the rest of the attestation (key,
challenge, CSR, the Steward's verification and issuance, the chain check: HTTPS both ways);
``TLS ready`` = from the certificate to the first handshake (compile the module, open the socket,
the handshake itself). Both sides run with the module cache off (attested backends keep it off
unless it is on measured storage), so compilation costs the same on both.

Goal: the attested start costs under 200 ms more than nil.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from donjon.backends.sim import load_or_create_sim_vendor
from donjon.config import parse_config, workload_digest
from donjon.demo.steward import LocalSteward, WorkloadRule, demo_policy

ROOT = Path(__file__).resolve().parents[1]
WASM = ROOT / "examples" / "http" / "http.wasm"
GOAL_MS = 200.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(port: int, steward: LocalSteward | None) -> str:
    head = ""
    if steward is not None:
        head = f'steward = "{steward.url}"\nsteward_ca = "{steward.ca_path}"\n'
    return head + (
        '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
        f'[[files]]\nkind = "listen"\nname = "web"\naddr = "127.0.0.1"\nport = {port}\nprot = "tls"\n'
    )


def _first_handshake(port: int, deadline: float) -> float:
    """Monotonic time of the first completed TLS 1.3 handshake with 127.0.0.1:``port``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # timing only; the e2e tests verify
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    while time.monotonic() < deadline:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                context.wrap_socket(raw) as tls,
            ):
                done = time.monotonic()
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return done
        except OSError:
            time.sleep(0.002)
    raise RuntimeError("the Keep never accepted a TLS connection")


class _Stderr:
    """The child's stderr lines with their arrival times."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def find(self, marker: str) -> tuple[float, str]:
        for when, line in self.lines:
            if marker in line:
                return when, line
        raise RuntimeError(f"no {marker!r} line: {[x for _, x in self.lines]}")


def _child_cpu(pid: int) -> float:
    """User + system CPU (ms) the child has used so far (/proc/PID/stat fields 14 and 15)."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """This process's CPU (ms): the Steward's work, and the client's polling."""
    return time.process_time() * 1000


def one_start(backend: str, config: Path, vendor_dir: Path) -> dict[str, float]:
    argv = [sys.executable, "-m", "donjon", "run", "--backend", backend, "--no-cache", "--verbose"]
    argv += ["--sim-vendor", str(vendor_dir), "--config", str(config), str(WASM)]
    port = int(config.read_text().split("port = ")[1].split()[0])
    own_cpu = _own_cpu()
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    err = _Stderr(proc)
    try:
        first = _first_handshake(port, started + 30)
        keep_cpu = _child_cpu(proc.pid)
        steward_cpu = _own_cpu() - own_cpu
    finally:
        proc.terminate()
        proc.wait(10)
        err.thread.join(5)
    result = {"total": (first - started) * 1000, "cpu": keep_cpu + steward_cpu}
    if backend != "nil":
        attested_at, _ = err.find("attested by the Steward")
        _, timing = err.find("attestation took")
        attest_ms = float(timing.split("attestation took ")[1].split(" ms")[0])
        evidence_ms = float(timing.split("(evidence ")[1].split(" ms")[0])
        result["start"] = (attested_at - started) * 1000 - attest_ms
        result["evidence"] = evidence_ms
        result["steward"] = attest_ms - evidence_ms
        result["tls_ready"] = (first - attested_at) * 1000
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp:
        base = Path(tmp)
        vendor_dir = base / "vendor"
        load_or_create_sim_vendor("sim-snp", vendor_dir)
        nil_config = base / "nil.toml"
        with LocalSteward(base / "steward", sim_vendor_dir=vendor_dir, policy=demo_policy([])) as steward:
            snp_config = base / "snp.toml"
            module = WASM.read_bytes()
            results: dict[str, list[dict[str, float]]] = {"nil": [], "sim-snp": []}
            for _ in range(args.runs):
                for backend in ("nil", "sim-snp"):
                    port = _free_port()
                    path = nil_config if backend == "nil" else snp_config
                    path.write_text(_config(port, None if backend == "nil" else steward))
                    if backend != "nil":
                        digest = workload_digest(module, parse_config(path.read_bytes()).config)
                        steward.set_policy(demo_policy([WorkloadRule(digest, "/bench/http")]))
                    results[backend].append(one_start(backend, path, vendor_dir))

    def med(backend: str, key: str) -> float:
        return statistics.median(r[key] for r in results[backend])

    nil_total, snp_total = med("nil", "total"), med("sim-snp", "total")
    cpu_extra = med("sim-snp", "cpu") - med("nil", "cpu")
    extra = snp_total - nil_total
    # Each sim-snp start minus the nil start just before it: the spread of the difference.
    pairs = sorted(a["total"] - n["total"] for n, a in zip(results["nil"], results["sim-snp"], strict=True))
    quartiles = statistics.quantiles(pairs, n=4) if len(pairs) >= 2 else [pairs[0]] * 3
    rows = [
        ("nil", f"{nil_total:.0f}", "-", "-", "-", "-", "-"),
        (
            "sim-snp",
            f"{snp_total:.0f}",
            f"{med('sim-snp', 'start'):.0f}",
            f"{med('sim-snp', 'evidence'):.1f}",
            f"{med('sim-snp', 'steward'):.0f}",
            f"{med('sim-snp', 'tls_ready'):.0f}",
            f"{extra:+.0f}",
        ),
    ]
    print(
        "| backend | to first TLS connection (ms) | start | evidence | Steward round-trip | TLS ready "
        "| attested extra (ms) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    verdict = "yes" if extra < GOAL_MS else "NO"
    print(f"goal: attested start < nil + {GOAL_MS:.0f} ms: {verdict} ({extra:+.0f} ms)")
    cpu_verdict = "yes" if cpu_extra < GOAL_MS else "NO"
    print(
        f"CPU until the first connection (Keep + Steward + client): nil {med('nil', 'cpu'):.0f} ms, "
        f"sim-snp {med('sim-snp', 'cpu'):.0f} ms: {cpu_extra:+.0f} ms "
        f"({cpu_verdict} for the goal, in CPU time)"
    )
    print(
        f"difference per interleaved pair: min {pairs[0]:+.0f}, quartiles {quartiles[0]:+.0f} / "
        f"{quartiles[1]:+.0f} / {quartiles[2]:+.0f}, max {pairs[-1]:+.0f} ms"
    )
    print(f"medians of {args.runs} interleaved runs each; module cache off on both; the Steward runs in the")
    print("benchmark's process on the same 2 cores. reproduce: python benchmarks/bench_attested_start.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
