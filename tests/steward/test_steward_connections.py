"""The Steward's connection-level defence, on the real ``donjon steward serve`` process.

Deadlines from accept (TLS handshake, request head, body), the cap per client address, the
429 for addresses that keep being refused, and a short version of the "under attack" benchmark
(benchmarks/bench_steward_attack.py): honest Keeps succeed while idle, slow and garbage clients
are connected. Attackers bind other 127.0.0.x source addresses than the honest clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.cli import main as cli_main
from donjon.demo.steward import https_certificate
from donjon.steward.config import load_config
from donjon.steward.errors import ConfigError
from donjon.steward.limits import ConnectionLimits, address_key
from donjon.steward.ratelimit import RefusalLimiter

PKCS10 = {"Content-Type": "application/pkcs10"}
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0


def _configure(env, *, tls: bool = True, **values: str) -> None:
    """Turn on HTTPS (a certificate from the Steward's CA) and set ``[connections]`` values."""
    text = env.config.read_text()
    if tls:
        ca = x509.load_pem_x509_certificate((env.dir / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((env.dir / "ca-key.pem").read_bytes(), None)
        https_certificate(key, ca, env.dir)
        text = text.replace('# tls_cert = "tls.pem"', 'tls_cert = "tls.pem"')
        text = text.replace('# tls_key = "tls-key.pem"', 'tls_key = "tls-key.pem"')
    for key_name, value in values.items():
        lines = [ln for ln in text.splitlines() if ln.startswith(f"{key_name} = ")]
        assert len(lines) == 1, key_name
        text = text.replace(lines[0], f"{key_name} = {value}")
    env.config.write_text(text)


def _client(env, source: str | None = None, **kwargs) -> httpx.Client:
    verify = ssl.create_default_context(cafile=str(env.dir / "ca.pem"))
    transport = httpx.HTTPTransport(verify=verify, local_address=source) if source else None
    return httpx.Client(verify=verify, transport=transport, timeout=10, **kwargs)


def _tls_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _connect(url: str, source: str, *, tls: bool) -> socket.socket:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
    if tls:
        sock = _tls_context().wrap_socket(sock, server_hostname=host)  # the handshake completes here
    return sock


def _closed_after(sock: socket.socket, limit: float, *, trickle: bytes = b"") -> float:
    """Seconds until the Steward closes ``sock`` (sending ``trickle`` one byte every 0.2 s)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - started < limit:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except (TimeoutError, ssl.SSLWantReadError):
            pass
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            return time.monotonic() - started
        if sent < len(trickle):
            try:
                sock.send(trickle[sent : sent + 1])
            except (OSError, ssl.SSLError):
                return time.monotonic() - started
            sent += 1
    raise AssertionError(f"the connection was still open after {limit} s")


@pytest.fixture(scope="module")
def steward(tmp_path_factory, vendor, kit):
    """One HTTPS Steward process with short deadlines, small caps and a small refusal bucket."""
    env = kit.make_env(tmp_path_factory.mktemp("conn") / "steward", vendor)
    _configure(
        env,
        header_timeout=f'"{HEADER_TIMEOUT:.0f}s"',
        body_timeout=f'"{BODY_TIMEOUT:.0f}s"',
        max_per_address="4",
        refusal_burst="3",
        refusal_rate="0.5",
    )
    proc = kit.ServerProcess(env.config)
    proc.env = env
    yield proc
    proc.stop()


def _metric(proc, name: str) -> float:
    with _client(proc.env) as client:
        for line in client.get(f"{proc.url}/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def test_idle_connection_after_the_tls_handshake_is_dropped(steward):
    sock = _connect(steward.url, "127.0.0.21", tls=True)
    with sock:
        held = _closed_after(sock, HEADER_TIMEOUT + 3)
    assert HEADER_TIMEOUT - 0.5 <= held <= HEADER_TIMEOUT + 2.5


def test_tcp_connection_that_never_starts_tls_is_dropped(steward):
    with _connect(steward.url, "127.0.0.22", tls=False) as sock:
        held = _closed_after(sock, HEADER_TIMEOUT + 3)
    assert HEADER_TIMEOUT - 0.5 <= held <= HEADER_TIMEOUT + 2.5


def test_slow_request_head_is_dropped_by_the_deadline_from_accept(steward):
    # Bytes keep arriving (one every 0.2 s), which resets no deadline: the head must be complete.
    head = b"POST /attest HTTP/1.1\r\nHost: steward\r\nX-Slow: " + b"a" * 200
    with _connect(steward.url, "127.0.0.23", tls=True) as sock:
        held = _closed_after(sock, HEADER_TIMEOUT + 3, trickle=head)
    assert held <= HEADER_TIMEOUT + 2.5


def test_slow_body_is_dropped(steward):
    head = (
        b"POST /attest HTTP/1.1\r\nHost: steward\r\n"
        b"Content-Type: application/pkcs10\r\nContent-Length: 500\r\n\r\n"
    )
    with _connect(steward.url, "127.0.0.24", tls=True) as sock:
        sock.sendall(head)
        held = _closed_after(sock, BODY_TIMEOUT + 3, trickle=b"\x30" * 500)
    assert held <= BODY_TIMEOUT + 2.5


def test_idle_keep_alive_connection_is_dropped_after_its_response(steward):
    with _connect(steward.url, "127.0.0.25", tls=True) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: steward\r\n\r\n")
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        held = _closed_after(sock, HEADER_TIMEOUT + 3)
    assert held <= HEADER_TIMEOUT + 2.5


def test_per_address_cap_while_another_address_is_served(steward, kit):
    env = steward.env
    held = [_connect(steward.url, "127.0.0.3", tls=True) for _ in range(4)]
    try:
        # The fifth connection from the same address is closed at accept, before any TLS.
        with pytest.raises((ConnectionResetError, ssl.SSLError, OSError)):
            extra = _connect(steward.url, "127.0.0.3", tls=True)
            extra.settimeout(2)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: steward\r\n\r\n")
            if extra.recv(4096) == b"":
                raise ConnectionResetError("closed")
        # Meanwhile another address is served: a Keep attests from 127.0.0.1.
        with _client(env) as client:
            assert kit.Keep(env.vendor).attest(client, steward.url).status_code == 200
    finally:
        for sock in held:
            sock.close()
    assert _metric(steward, 'donjon_steward_connections_refused_total{reason="per_address"}') >= 1
    # The slots come back when the connections close: the address is served again.
    deadline = time.monotonic() + 5
    while True:
        try:
            with _client(env, "127.0.0.3") as client:
                assert client.get(f"{steward.url}/healthz").status_code == 200
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_an_address_that_keeps_being_refused_gets_429_with_retry_after(steward, kit):
    env = steward.env
    with _client(env, "127.0.0.4") as attacker, _client(env) as honest:
        statuses = [
            attacker.post(f"{steward.url}/attest", content=b"garbage", headers=PKCS10).status_code
            for _ in range(3)
        ]
        assert statuses == [400, 400, 400]
        limited = attacker.post(f"{steward.url}/attest", content=b"garbage", headers=PKCS10)
        assert limited.status_code == 429
        assert limited.json()["check"] == "request.rate"
        assert 1 <= int(limited.headers["retry-after"]) <= 2  # one token at 0.5 a second
        assert limited.headers["connection"] == "close"
        # Limited before any work: even a valid CSR from that address is not looked at (its new
        # connection is reset at accept until a token is back)...
        keep = kit.Keep(env.vendor)
        nonce = keep.nonce(honest, steward.url)
        with pytest.raises(httpx.TransportError):
            attacker.post(f"{steward.url}/attest", content=keep.csr(nonce), headers=PKCS10)
        # ...while another address is served.
        assert keep.attest(honest, steward.url).status_code == 200
        # After Retry-After, the address is served again.
        time.sleep(int(limited.headers["retry-after"]))
        assert attacker.get(f"{steward.url}/healthz").status_code == 200
    assert _metric(steward, "donjon_steward_rate_limited_total") >= 1


def test_an_address_whose_connections_keep_being_dropped_is_reset_at_accept(steward):
    # Each idle connection dropped before carrying a request is a refusal of its address: after
    # refusal_burst (3) of them, its next connection is reset at accept, before any TLS work.
    socks = [_connect(steward.url, "127.0.0.26", tls=False) for _ in range(3)]
    for sock in socks:
        with sock:
            _closed_after(sock, HEADER_TIMEOUT + 3)
    refused_before = _metric(steward, 'donjon_steward_connections_refused_total{reason="rate"}')
    with pytest.raises((ConnectionResetError, ssl.SSLError, OSError)):
        _connect(steward.url, "127.0.0.26", tls=True)
    assert _metric(steward, 'donjon_steward_connections_refused_total{reason="rate"}') == refused_before + 1
    # An idle keep-alive connection closed after its answer is no refusal: 127.0.0.25 (the
    # keep-alive test above) or a fresh address is served.
    with _client(steward.env, "127.0.0.27") as client:
        for _ in range(4):
            assert client.get(f"{steward.url}/healthz").status_code == 200


def test_idle_tcp_connection_on_an_http_steward_is_dropped(env, kit):
    _configure(env, tls=False, header_timeout=f'"{HEADER_TIMEOUT:.0f}s"')
    proc = kit.ServerProcess(env.config)
    try:
        assert proc.url.startswith("http://")
        with _connect(proc.url, "127.0.0.31", tls=False) as sock:
            held = _closed_after(sock, HEADER_TIMEOUT + 3)
    finally:
        proc.stop()
    assert HEADER_TIMEOUT - 0.5 <= held <= HEADER_TIMEOUT + 2.5


def test_when_every_slot_is_taken_the_longest_waiting_connection_makes_room(env, kit):
    # 16 slots in all, idle connections held for up to 20 s: a new client still gets in.
    _configure(env, header_timeout='"20s"', max_connections="16", max_per_address="64")
    proc = kit.ServerProcess(env.config)
    idle = [_connect(proc.url, f"127.0.0.{40 + i % 4}", tls=True) for i in range(16)]
    try:
        with _client(env) as client:
            assert client.get(f"{proc.url}/healthz").status_code == 200
            metrics = client.get(f"{proc.url}/metrics").text
        assert 'donjon_steward_connections_dropped_total{phase="evicted"} 1' in metrics
        # The oldest idle connection was the one dropped.
        assert _closed_after(idle[0], 2) < 2
    finally:
        for sock in idle:
            sock.close()
        proc.stop()


def test_refusal_buckets_are_bounded_and_refill():
    now = [0.0]
    limiter = RefusalLimiter(burst=2, rate=1.0, table_size=100, clock=lambda: now[0])
    assert limiter.retry_after("a") is None
    limiter.refused("a")
    assert limiter.retry_after("a") is None
    assert limiter.refused("a") is True  # the bucket is empty now
    assert limiter.retry_after("a") == pytest.approx(1.0)
    now[0] = 0.5
    assert limiter.retry_after("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert limiter.retry_after("a") is None
    # Many addresses cannot grow the table: the least recently refused are forgotten.
    for i in range(10_000):
        limiter.refused(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 100


def test_address_keys_count_ipv6_per_64_and_mapped_ipv4_as_ipv4():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"
    assert address_key(None) == "unknown"


def test_connections_section_is_validated(env):
    config = load_config(env.config)
    assert config.connections == ConnectionLimits()  # init writes the defaults
    text = env.config.read_text()
    for bad in (
        'header_timeout = "0s"',
        "max_per_address = 0",
        'refusal_rate = "fast"',
        "max_connections = 2",
    ):
        key = bad.split(" = ")[0]
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{key} = "))
        env.config.write_text(text.replace(line, bad))
        with pytest.raises(ConfigError) as caught:
            load_config(env.config)
        assert key in str(caught.value) and caught.value.line is not None
    env.config.write_text(text + "bogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(env.config)


def test_ctrl_c_exits_130_without_traceback_and_closes_the_log(env, kit):
    proc = kit.ServerProcess(env.config)
    try:
        with httpx.Client() as client:
            assert kit.Keep(env.vendor).attest(client, proc.url).status_code == 200
        proc.proc.send_signal(signal.SIGINT)
        assert proc.proc.wait(15) == 130
    finally:
        proc.stop()
    proc._reader.join(5)
    assert all("raw" not in line for line in proc.lines), proc.lines  # JSON lines only: no traceback
    assert proc.lines[-1]["event"] == "stopped" and proc.lines[-1]["signal"] == "SIGINT"
    # SQLite removes the write-ahead log when its last connection closes: the log was closed.
    assert (env.dir / "log.db").exists() and not (env.dir / "log.db-wal").exists()
    assert cli_main(["steward", "log", "verify", "--config", str(env.config)]) == 0


@pytest.mark.parametrize(("host", "shown"), [("127.0.0.1", "127.0.0.1:{port}"), ("::1", "[::1]:{port}")])
def test_port_clash_names_the_address(env, host, shown):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as taken:
        taken.bind((host, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env.config.write_text(env.config.read_text().replace('listen = "127.0.0.1"', f'listen = "{host}"'))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "donjon",
                "steward",
                "serve",
                "--config",
                str(env.config),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 3
    # Before it serves, the Steward speaks like every command: one 'donjon:' line, not JSON.
    # (This Steward serves plain HTTP, so its log's first line, JSON, warns of that.)
    (line,) = [line for line in out.stderr.splitlines() if '"event": "insecure_http"' not in line]
    assert line == f"donjon: cannot listen on {shown.format(port=port)}: address already in use"


def test_ipv6_listener_url_is_bracketed(env, kit):
    env.config.write_text(env.config.read_text().replace('listen = "127.0.0.1"', 'listen = "::1"'))
    proc = kit.ServerProcess(env.config)
    try:
        assert proc.url.startswith("http://[::1]:")
        assert httpx.get(f"{proc.url}/healthz").status_code == 200
    finally:
        proc.stop()


def test_http_servers_own_log_lines_are_json(env, kit):
    proc = kit.ServerProcess(env.config)  # plain HTTP
    try:
        host, port = proc.url.split("://", 1)[1].rsplit(":", 1)
        for _ in range(8):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                assert sock.recv(4096).startswith(b"HTTP/1.1 400")
        metrics = httpx.get(f"{proc.url}/metrics").text
        assert "donjon_steward_rate_limit_addresses 1" in metrics  # bytes that are not HTTP: refusals
    finally:
        proc.stop()
    proc._reader.join(5)
    assert all("raw" not in line for line in proc.lines), proc.lines
    invalid = [e for e in proc.lines if e.get("logger") == "uvicorn.error"]
    assert invalid and invalid[0]["message"] == "Invalid HTTP request received."
    assert invalid[0]["level"] == "warning" and invalid[0]["event"] == "http_server"
    assert len(invalid) <= 5  # sampled: a flood of bad requests is not a flood of lines


# --- under attack: the short version of benchmarks/bench_steward_attack.py


async def _attack(url: str, stop: threading.Event, tally: dict[str, list[float]]) -> None:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    ctx = _tls_context()
    sources = [f"127.0.0.{i}" for i in range(10, 20)]

    async def opened(source: str, tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(
            asyncio.open_connection(
                host, int(port), ssl=ctx if tls else None, local_addr=(source, 0),
                server_hostname=host if tls else None,
            ),
            5,
        )  # fmt: skip

    async def idle(source: str, tls: bool) -> None:
        while not stop.is_set():
            try:
                reader, writer = await opened(source, tls)
            except (OSError, TimeoutError, ssl.SSLError):
                await asyncio.sleep(0.05)
                continue
            began = time.monotonic()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(reader.read(), HEADER_TIMEOUT + 5)
            tally["held"].append(time.monotonic() - began)
            writer.transport.abort()

    async def slow(source: str) -> None:
        while not stop.is_set():
            try:
                reader, writer = await opened(source, True)
            except (OSError, TimeoutError, ssl.SSLError):
                await asyncio.sleep(0.05)
                continue
            began = time.monotonic()
            with contextlib.suppress(OSError, ssl.SSLError):
                for byte in b"POST /attest HTTP/1.1\r\nHost: s\r\nX: " + b"a" * 100:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(reader.read(1), 0.3) == b"":
                            break
            tally["slow"].append(time.monotonic() - began)
            writer.transport.abort()

    async def garbage(source: str) -> None:
        rng = random.Random(source)
        while not stop.is_set():
            try:
                reader, writer = await opened(source, True)
            except (OSError, TimeoutError, ssl.SSLError):
                await asyncio.sleep(0.05)
                continue
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
                while not stop.is_set():
                    body = rng.randbytes(rng.randrange(64, 2048))
                    writer.write(
                        b"POST /attest HTTP/1.1\r\nHost: s\r\nContent-Type: application/pkcs10\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    tally["garbage"].append(float(head.split(b" ", 2)[1]))
                    length = next(
                        int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")[1:])
                        if k.lower() == b"content-length"
                    )  # fmt: skip
                    await reader.readexactly(length)
            writer.transport.abort()

    jobs = [idle(sources[i % 10], True) for i in range(300)]
    jobs += [idle(sources[(i + 5) % 10], False) for i in range(300)]
    jobs += [slow(sources[i]) for i in range(2)] + [garbage(sources[i + 2]) for i in range(2)]
    await asyncio.gather(*jobs)


def test_honest_keeps_succeed_while_attackers_are_connected(tmp_path, vendor, kit):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    env = kit.make_env(tmp_path / "steward", vendor)
    _configure(env, header_timeout=f'"{HEADER_TIMEOUT:.0f}s"')
    proc = kit.ServerProcess(env.config)
    stop = threading.Event()
    tally: dict[str, list[float]] = {"held": [], "slow": [], "garbage": []}
    attacker = threading.Thread(target=lambda: asyncio.run(_attack(proc.url, stop, tally)), daemon=True)
    statuses: list[int] = []
    try:
        attacker.start()
        time.sleep(1.0)  # the idle connections are open; the honest Keeps come while they are there

        def keep() -> None:
            k = kit.Keep(env.vendor)
            until = time.monotonic() + 5
            while time.monotonic() < until:
                with _client(env) as client:  # a new connection each time, as a Keep does
                    try:
                        statuses.append(k.attest(client, proc.url).status_code)
                    except httpx.HTTPError as e:
                        statuses.append(type(e).__name__)

        keeps = [threading.Thread(target=keep) for _ in range(4)]
        for t in keeps:
            t.start()
        for t in keeps:
            t.join(30)
        counts = (
            _metric_of(proc, env, 'donjon_steward_connections_dropped_total{phase="head"}'),
            _metric_of(proc, env, 'donjon_steward_connections_refused_total{reason="rate"}'),
        )
    finally:
        stop.set()
        attacker.join(HEADER_TIMEOUT + 10)
        proc.stop()
    assert len(statuses) >= 8 and set(statuses) == {200}, statuses
    # The idle and slow connections were closed by the deadline, not held; then their
    # addresses, refused too often, were reset at accept.
    dropped, rate_refused = counts
    assert dropped >= 200 and rate_refused > 0
    # (Without deadlines they would be held until the attacker gives up, HEADER_TIMEOUT + 5 s.)
    assert tally["held"] and max(tally["held"]) <= HEADER_TIMEOUT + 3
    assert tally["slow"] and max(tally["slow"]) <= HEADER_TIMEOUT + 3
    assert {400, 429} <= set(tally["garbage"])


def _metric_of(proc, env, name: str) -> float:
    proc.env = env
    return _metric(proc, name)


def test_max_connections_is_lowered_to_fit_the_open_file_limit(monkeypatch):
    # Running out of descriptors stops asyncio accepting anyone: the cap must fit under the limit.
    from donjon.steward import service

    limits: list[tuple[int, int]] = [(1024, 1024)]
    monkeypatch.setattr(service.resource, "getrlimit", lambda which: limits[-1])
    monkeypatch.setattr(service.resource, "setrlimit", lambda which, value: limits.append(value))
    fitted = service._file_limit(ConnectionLimits(max_connections=4096))
    assert fitted.max_connections == 1024 - 256
    assert limits[-1] == (1024, 1024)  # the soft limit cannot go past the hard one
    limits[:] = [(1024, 100_000)]
    assert service._file_limit(ConnectionLimits(max_connections=4096)).max_connections == 4096
    assert limits[-1] == (4096 + 256, 100_000)
