"""The Steward under attack: honest sim-snp Keeps beside idle, slow and garbage clients.

Reproduce:

    python benchmarks/bench_steward_attack.py [--seconds 60]

One real ``donjon steward serve`` process (HTTPS on 127.0.0.1, SQLite log; its files written by
``donjon.demo.steward.LocalSteward``, its ``[connections]`` limits the defaults) serves, in turn:

1. **no attack**: ``--keeps`` honest sim-snp Keeps attest in a loop for ``--seconds``;
2. **under attack**: the same honest load for ``--seconds`` while an attacker process holds
   ``--idle-tls`` connections that complete the TLS handshake and send nothing,
   ``--idle-tcp`` plain TCP connections to the same HTTPS listener that never start a TLS
   handshake (the Steward serves one listener; on a plain-HTTP Steward the same connections are
   idle HTTP connections), ``--slow`` clients sending a request head one byte every 0.5 s, and
   ``--garbage`` clients posting random bytes as CSRs as fast as they can. Every attacking
   connection is re-opened as soon as the Steward drops it (after ``--retry-delay`` if it was
   refused at accept).

The honest Keeps are the Keep's own attestation code (``Attestor.attest_once``: key, challenge,
simulated SNP evidence, CSR, POST, chain check) on a new HTTPS connection each time, from
127.0.0.1, in threads of this process; the attackers use the ``--attack-addresses`` source
addresses 127.0.0.2, 127.0.0.3... (bound before connecting), from a process of their own.
Latency is a whole attestation as the Keep sees it (its own crypto included). Steward RSS is
read from /proc every 0.5 s (the peak is shown); CPU is the Steward process's user + system
time over the phase's wall time (100 % = one core). The attackers, the honest Keeps and the
Steward share this machine's CPUs: every CPU second an attacker spends is taken from the others.

``--server-src DIR`` runs the Steward from another checkout's ``src`` (e.g. the code before the
connection defence) against the same files, for a before/after comparison.
Goal under attack: 100 % of honest attestations succeed, p99 < 1 s, Steward RSS < 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import resource
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509

from donjon.backends.registry import create_backend
from donjon.demo.steward import DEMO_CLAIMS_OID, LocalSteward, WorkloadRule, demo_policy
from donjon.keep.attest import Attestor
from donjon.keep.steward_client import StewardClient, StewardEndpoint

WORKLOAD = hashlib.sha256(b"bench attack workload").digest()
#: Seconds an attacking client waits after a refused connect (--retry-delay).
RETRY_DELAY = 0.05


# --- the attacker (a process of its own: --role attacker)


def _raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Tally:
    def __init__(self) -> None:
        self.connected = 0
        self.refused = 0
        self.held: list[float] = []  # seconds each connection stayed open before the Steward dropped it
        self.statuses: dict[str, int] = {}

    def as_dict(self) -> dict[str, Any]:
        held = sorted(self.held)
        return {
            "connected": self.connected,
            "refused": self.refused,
            "dropped": len(held),
            "held_p50": held[len(held) // 2] if held else None,
            "held_max": held[-1] if held else None,
            "statuses": self.statuses,
        }


async def _open(host: str, port: int, source: str, tls: ssl.SSLContext | None) -> Any:
    return await asyncio.wait_for(
        asyncio.open_connection(
            host, port, ssl=tls, local_addr=(source, 0), server_hostname=None if tls is None else host
        ),
        timeout=10,
    )


async def _idle(host: str, port: int, source: str, tls: ssl.SSLContext | None, stop: float, t: Tally) -> None:
    while time.monotonic() < stop:
        try:
            reader, writer = await _open(host, port, source, tls)
        except (TimeoutError, OSError, ssl.SSLError):
            t.refused += 1
            await asyncio.sleep(RETRY_DELAY)
            continue
        opened = time.monotonic()
        try:
            await asyncio.wait_for(reader.read(), timeout=max(0.1, stop - time.monotonic()))
            t.connected += 1
            t.held.append(time.monotonic() - opened)
        except TimeoutError:  # still open when the attack ended (TimeoutError is an OSError)
            t.connected += 1
        except ConnectionResetError:
            # The kernel completes a TCP connect before the Steward accepts it: a connection
            # reset at accept (per-address cap, rate limit) shows up here, at once.
            if time.monotonic() - opened < 0.5:
                t.refused += 1
            else:
                t.connected += 1
                t.held.append(time.monotonic() - opened)
        except (OSError, ssl.SSLError):
            t.connected += 1
            t.held.append(time.monotonic() - opened)
        with contextlib.suppress(Exception):
            writer.transport.abort()


async def _slow(host: str, port: int, source: str, tls: ssl.SSLContext, stop: float, t: Tally) -> None:
    head = (
        b"POST /attest HTTP/1.1\r\nHost: steward\r\nContent-Type: application/pkcs10\r\nX-Slow: "
        + b"a" * 4000
    )
    while time.monotonic() < stop:
        try:
            reader, writer = await _open(host, port, source, tls)
        except (TimeoutError, OSError, ssl.SSLError):
            t.refused += 1
            await asyncio.sleep(RETRY_DELAY)
            continue
        t.connected += 1
        opened = time.monotonic()
        try:
            for i in range(len(head)):
                if time.monotonic() >= stop:
                    break
                writer.write(head[i : i + 1])
                await writer.drain()
                with contextlib.suppress(asyncio.TimeoutError):
                    if await asyncio.wait_for(reader.read(1), timeout=0.5) == b"":
                        raise ConnectionResetError
            else:
                continue
        except (OSError, ssl.SSLError):
            t.held.append(time.monotonic() - opened)
        with contextlib.suppress(Exception):
            writer.transport.abort()


async def _garbage(host: str, port: int, source: str, tls: ssl.SSLContext, stop: float, t: Tally) -> None:
    rng = random.Random(source)
    while time.monotonic() < stop:
        try:
            reader, writer = await _open(host, port, source, tls)
        except (TimeoutError, OSError, ssl.SSLError):
            t.refused += 1
            await asyncio.sleep(RETRY_DELAY)
            continue
        t.connected += 1
        try:
            while time.monotonic() < stop:
                body = rng.randbytes(rng.randrange(64, 4096))
                writer.write(
                    b"POST /attest HTTP/1.1\r\nHost: steward\r\nContent-Type: application/pkcs10\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=15)
                status = head.split(b" ", 2)[1].decode()
                t.statuses[status] = t.statuses.get(status, 0) + 1
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        with contextlib.suppress(Exception):
            writer.transport.abort()


async def _attack(args: argparse.Namespace) -> dict[str, Any]:
    host, port = args.url.split("://", 1)[1].rsplit(":", 1)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    # Idle clients on 127.0.0.2.., slow ones on 127.0.0.200.., garbage posters on 127.0.0.210..:
    # each kind is limited on its own merits, not because it shares an address with another.
    sources = [f"127.0.0.{2 + i}" for i in range(args.attack_addresses)]
    slow_sources = [f"127.0.0.{200 + i}" for i in range(args.slow)]
    garbage_sources = [f"127.0.0.{210 + i}" for i in range(args.garbage)]
    stop = time.monotonic() + args.seconds
    tallies = {k: Tally() for k in ("idle_tls", "idle_tcp", "slow", "garbage")}
    jobs = []
    for i in range(args.idle_tls):
        jobs.append(_idle(host, int(port), sources[i % len(sources)], tls, stop, tallies["idle_tls"]))
    for i in range(args.idle_tcp):
        jobs.append(_idle(host, int(port), sources[(i + 7) % len(sources)], None, stop, tallies["idle_tcp"]))
    for i in range(args.slow):
        jobs.append(_slow(host, int(port), slow_sources[i], tls, stop, tallies["slow"]))
    for i in range(args.garbage):
        jobs.append(_garbage(host, int(port), garbage_sources[i], tls, stop, tallies["garbage"]))
    await asyncio.gather(*jobs)
    return {k: v.as_dict() for k, v in tallies.items()}


def attacker_main(args: argparse.Namespace) -> int:
    global RETRY_DELAY
    RETRY_DELAY = args.retry_delay
    nofile = _raise_nofile()
    result = asyncio.run(_attack(args))
    result["nofile"] = nofile
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))
    return 0


# --- the Steward and the honest Keeps


class Steward:
    def __init__(self, config: Path, server_src: str | None) -> None:
        env = dict(os.environ)
        if server_src:
            env["PYTHONPATH"] = server_src
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "donjon", "steward", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.url = ""
        self.log: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line.rstrip())
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("event") == "listening":
                        self.url = event["url"]
                        ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30) or not self.url:
            self.proc.kill()
            raise RuntimeError(f"steward did not start: {self.log[-5:]}")
        self.rss_peak = 0
        self._watch = threading.Event()
        threading.Thread(target=self._rss, daemon=True).start()

    def _rss(self) -> None:
        while not self._watch.wait(0.5):
            self.rss_peak = max(self.rss_peak, self.rss())

    def rss(self) -> int:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu(self) -> float:
        """CPU seconds (user + system) the Steward process has used."""
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return 0.0

    def stop(self) -> None:
        self._watch.set()
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def honest(
    url: str, ca: tuple[x509.Certificate, ...], vendor_dir: Path, seconds: float, keeps: int
) -> dict[str, Any]:
    results: list[tuple[float, str | None]] = []
    stop = time.monotonic() + seconds
    endpoint = StewardEndpoint(url=url, ca=ca, timeout=10.0)

    def keep() -> None:
        attestor = Attestor(
            create_backend("sim-snp", sim_vendor_dir=vendor_dir),
            WORKLOAD,
            endpoint,
            claims_oid=DEMO_CLAIMS_OID,
        )
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                with StewardClient(endpoint) as client:  # a new connection each time, as a Keep does
                    attestor.attest_once(client)
                error = None
            except Exception as e:
                error = f"{type(e).__name__}: {e}"[:160]
            results.append((time.perf_counter() - started, error))

    threads = [threading.Thread(target=keep) for _ in range(keeps)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    ok = sorted(d for d, e in results if e is None)
    errors: dict[str, int] = {}
    for _, e in results:
        if e is not None:
            errors[e] = errors.get(e, 0) + 1
    pct = lambda p: ok[min(len(ok) - 1, int(p / 100 * len(ok)))] * 1000 if ok else float("nan")  # noqa: E731
    return {
        "attempts": len(results),
        "ok": len(ok),
        "success": len(ok) / len(results) if results else 0.0,
        "p50": pct(50),
        "p99": pct(99),
        "rate": len(ok) / elapsed,
        "errors": errors,
    }


def _attacker_cmd(args: argparse.Namespace, url: str, **counts: int) -> list[str]:
    cmd = [sys.executable, __file__, "--role", "attacker", "--url", url, "--seconds", str(args.seconds + 8)]
    for kind in ("idle_tls", "idle_tcp", "slow", "garbage"):
        cmd += [f"--{kind.replace('_', '-')}", str(counts.get(kind, 0))]
    return [*cmd, "--attack-addresses", str(args.attack_addresses), "--retry-delay", str(args.retry_delay)]


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def scrape(url: str, ca_path: Path) -> dict[str, float]:
    wanted = (
        "donjon_steward_connections_refused_total",
        "donjon_steward_connections_dropped_total",
        "donjon_steward_rate_limited_total",
        "donjon_steward_refused_total",
    )
    out: dict[str, float] = {}
    with contextlib.suppress(Exception):
        text = httpx.get(
            f"{url}/metrics", verify=ssl.create_default_context(cafile=str(ca_path)), timeout=10
        ).text
        for line in text.splitlines():
            if line.startswith(wanted):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60, help="length of each phase (default 60)")
    ap.add_argument("--keeps", type=int, default=16, help="honest Keeps attesting in a loop")
    ap.add_argument("--idle-tls", type=int, default=1024, help="idle connections after the TLS handshake")
    ap.add_argument("--idle-tcp", type=int, default=1024, help="idle TCP connections (no TLS handshake)")
    ap.add_argument("--slow", type=int, default=4, help="slow-header clients")
    ap.add_argument("--garbage", type=int, default=4, help="clients posting garbage CSRs")
    ap.add_argument("--attack-addresses", type=int, default=16, help="source addresses 127.0.0.2...")
    ap.add_argument(
        "--retry-delay",
        type=float,
        default=0.05,
        help="seconds an attacking client waits after a refused connect (default 0.05)",
    )
    ap.add_argument("--server-src", help="run the Steward from this src directory (PYTHONPATH)")
    ap.add_argument("--role", choices=["bench", "attacker"], default="bench", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "attacker":
        return attacker_main(args)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        vendor_dir = Path(tmp) / "vendor"
        create_backend("sim-snp", sim_vendor_dir=vendor_dir)  # saves the simulated vendor
        from donjon.backends.sim import load_or_create_sim_vendor

        load_or_create_sim_vendor("sim-snp", vendor_dir)
        local = LocalSteward(
            Path(tmp) / "steward",
            sim_vendor_dir=vendor_dir,
            policy=demo_policy([WorkloadRule(WORKLOAD, "/bench")]),
        )
        steward = Steward(local.config_path, args.server_src)
        try:
            ca = (local.ca,)
            cpu = steward.cpu()
            own = _own_cpu()
            base = honest(steward.url, ca, vendor_dir, args.seconds, args.keeps)
            base["keeps_cpu"] = (_own_cpu() - own) / args.seconds
            base["rss"] = steward.rss_peak
            base["cpu"] = (steward.cpu() - cpu) / args.seconds
            # Two attacker processes (each its own interpreter): the reconnecting idle clients
            # must not starve the garbage posters of CPU.
            attackers = [
                subprocess.Popen(
                    _attacker_cmd(args, steward.url, **counts), stdout=subprocess.PIPE, text=True
                )
                for counts in (
                    {"idle_tls": args.idle_tls, "idle_tcp": args.idle_tcp},
                    {"slow": args.slow, "garbage": args.garbage},
                )
            ]
            time.sleep(5)  # let the attackers connect: the honest load runs while they are there
            rss_attack = steward.rss()
            steward.rss_peak = rss_attack
            cpu = steward.cpu()
            own = _own_cpu()
            attacked = honest(steward.url, ca, vendor_dir, args.seconds, args.keeps)
            attacked["keeps_cpu"] = (_own_cpu() - own) / args.seconds
            attacked["rss"] = steward.rss_peak
            attacked["cpu"] = (steward.cpu() - cpu) / args.seconds
            attack: dict[str, Any] = {"cpu": 0.0}
            for proc in attackers:
                out, _ = proc.communicate(timeout=args.seconds + 120)
                part = json.loads(out.strip().splitlines()[-1])
                attack["cpu"] += part.pop("cpu")
                part.pop("nofile")
                for kind, tally in part.items():
                    if tally["connected"] or tally["refused"]:
                        attack[kind] = tally
            metrics = scrape(steward.url, local.ca_path)
        finally:
            steward.stop()
    print(
        f"Steward under attack ({os.cpu_count()} CPUs, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after); {args.seconds:.0f} s per phase, {args.keeps} honest sim-snp Keeps"
    )
    print(
        f"attack: {args.idle_tls} idle TLS + {args.idle_tcp} idle TCP (same HTTPS listener), "
        f"{args.slow} slow-header, {args.garbage} garbage-CSR clients; idle ones from "
        f"{args.attack_addresses} addresses 127.0.0.2.., slow from 127.0.0.200.., garbage from "
        f"127.0.0.210..; honest Keeps from 127.0.0.1; retry delay {args.retry_delay} s"
    )
    print(
        f"{'phase':<14}{'attempts':>9}{'success':>9}{'p50 ms':>9}{'p99 ms':>9}{'att/s':>8}{'RSS MB':>8}"
        f"{'Steward CPU':>12}{'Keeps CPU':>10}"
    )
    for label, r in (("no attack", base), ("under attack", attacked)):
        print(
            f"{label:<14}{r['attempts']:>9}{r['success']:>9.1%}{r['p50']:>9.0f}{r['p99']:>9.0f}"
            f"{r['rate']:>8.1f}{r['rss'] / 2**20:>8.0f}{r['cpu']:>12.0%}{r['keeps_cpu']:>10.0%}"
        )
        for error, n in sorted(r["errors"].items(), key=lambda x: -x[1])[:3]:
            print(f"   {n} x {error}")
    print(f"Steward RSS with the attackers connected, before the honest load: {rss_attack / 2**20:.0f} MB")
    print(f"attackers' CPU: {attack.pop('cpu') / (args.seconds + 8):.0%} over the attack (100 % = one core)")
    for kind, t in attack.items():
        if not isinstance(t, dict):
            continue
        held = "none dropped"
        if t["held_max"] is not None:
            held = f"held p50 {t['held_p50']:.1f} s, max {t['held_max']:.1f} s"
        answers = f", answers {t['statuses']}" if t["statuses"] else ""
        print(
            f"attacker {kind:<9} connected {t['connected']:>6}, refused {t['refused']:>6}, "
            f"dropped {t['dropped']:>6} ({held}){answers}"
        )
    for name, value in sorted(metrics.items()):
        print(f"  {name} {value:.0f}")
    print("command: python benchmarks/bench_steward_attack.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
