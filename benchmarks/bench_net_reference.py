"""Network load for Keeps, and the native Python reference it is compared with.

Run:  python benchmarks/bench_net_reference.py [--seconds 3] [--clients 16] [--format json]
      python benchmarks/bench_net_reference.py --target HOST:PORT --prot tls [--cafile ca.pem]
                                               [--server-name localhost] [--insecure]

Without ``--target`` it starts the reference servers — an ``asyncio`` echo server, plain TCP
and TLS 1.3 (``ssl`` module, self-signed EC P-256 certificate, the same shape a Keep presents)
— each in its own process, and runs the load against them. With ``--target`` it runs the
same load against any echo server, e.g. a Keep running ``examples/echo`` (the later Keep
benchmark does exactly that and prints ours / reference side by side).

The load (one client process, ``asyncio``, ``--clients`` concurrent connections):

* ``rr64``: request/response with 64-byte messages: each client writes 64 bytes and waits
  for the 64-byte echo, over one long-lived connection. Reported as requests/s (all clients).
* ``stream64k``: 64 KiB messages echoed: MB/s of payload echoed (counted once, 10^6 bytes).
* ``handshakes``: connect, (TLS handshake,) one byte there and back, close. Connections/s.

Clients use Python's ``ssl`` on the system OpenSSL; against a Keep that is Debian's OpenSSL
3.0, so the group negotiated is X25519 (no ML-KEM in 3.0), the same as against the reference.
Both server and load generator are Python, so on a 2-core machine the numbers are a ratio
scale, not an absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

MSG_SMALL = 64
MSG_LARGE = 64 << 10
WARMUP = 0.5


@dataclass(frozen=True)
class Target:
    """Where the load goes: an echo server speaking ``prot``."""

    host: str
    port: int
    prot: str  # "tcp" or "tls"
    cafile: str | None = None
    server_name: str | None = "localhost"
    insecure: bool = False  # accept any certificate (an unattested Keep's self-signed one)

    def client_ssl(self) -> ssl.SSLContext | None:
        if self.prot != "tls":
            return None
        ctx = ssl.create_default_context(cafile=self.cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass(frozen=True)
class LoadResult:
    rr64_requests_per_s: float
    stream64k_mb_per_s: float
    handshakes_per_s: float


# -- load generator -----------------------------------------------------------------------------


async def _connect(
    target: Target, ctx: ssl.SSLContext | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(
        target.host,
        target.port,
        ssl=ctx,
        server_hostname=target.server_name if ctx is not None else None,
        limit=MSG_LARGE * 2,
    )


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


async def _echo_loop(target: Target, ctx: ssl.SSLContext | None, size: int, start: float, end: float) -> int:
    """Echo ``size``-byte messages until ``end``; count those completed in [start, end)."""
    loop = asyncio.get_running_loop()
    reader, writer = await _connect(target, ctx)
    message = os.urandom(size)
    done = 0
    try:
        while (now := loop.time()) < end:
            writer.write(message)
            await writer.drain()
            if await reader.readexactly(size) != message:
                raise RuntimeError("echo mismatch")
            if now >= start:
                done += 1
    finally:
        await _close(writer)
    return done


async def _handshake_loop(target: Target, ctx: ssl.SSLContext | None, start: float, end: float) -> int:
    loop = asyncio.get_running_loop()
    done = 0
    while (now := loop.time()) < end:
        reader, writer = await _connect(target, ctx)
        try:
            writer.write(b"x")
            await writer.drain()
            if await reader.readexactly(1) != b"x":
                raise RuntimeError("echo mismatch")
        finally:
            await _close(writer)
        if now >= start:
            done += 1
    return done


async def _phase(
    clients: int, seconds: float, make: Callable[[float, float], Awaitable[int]]
) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    start = loop.time() + WARMUP
    end = start + seconds
    counts = await asyncio.gather(*(make(start, end) for _ in range(clients)))
    return sum(counts), seconds


def run_load(target: Target, *, clients: int = 16, seconds: float = 3.0) -> LoadResult:
    """The three loads against ``target``, one after the other."""

    async def main() -> LoadResult:
        ctx = target.client_ssl()
        n, t = await _phase(clients, seconds, lambda s, e: _echo_loop(target, ctx, MSG_SMALL, s, e))
        rr = n / t
        n, t = await _phase(clients, seconds, lambda s, e: _echo_loop(target, ctx, MSG_LARGE, s, e))
        mb = n * MSG_LARGE / t / 1e6
        n, t = await _phase(clients, seconds, lambda s, e: _handshake_loop(target, ctx, s, e))
        return LoadResult(rr, mb, n / t)

    return asyncio.run(main())


# -- reference servers --------------------------------------------------------------------------


async def _serve_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(MSG_LARGE):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def serve(prot: str, certfile: str | None, keyfile: str | None) -> None:
    """Run a reference echo server on 127.0.0.1 (an ephemeral port, printed on stdout) forever."""

    async def main() -> None:
        ctx = None
        if prot == "tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(str(certfile), str(keyfile))
        server = await asyncio.start_server(_serve_echo, "127.0.0.1", 0, ssl=ctx, backlog=256)
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def _write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed EC P-256 certificate for localhost/127.0.0.1, as an unattested Keep has."""
    from cryptography.hazmat.primitives import serialization

    from donjon.tls import self_signed

    creds = self_signed()
    cert = directory / "reference.crt"
    key = directory / "reference.key"
    cert.write_bytes(creds.leaf.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        creds.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


@contextlib.contextmanager
def reference_server(prot: str, directory: Path) -> Iterator[Target]:
    """Start the reference server for ``prot`` in a child process; yield its :class:`Target`."""
    args = [sys.executable, __file__, "--serve", prot]
    cafile = None
    if prot == "tls":
        cert, key = _write_self_signed(directory)
        args += ["--certfile", str(cert), "--keyfile", str(key)]
        cafile = str(cert)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"reference {prot} server did not start")
        yield Target("127.0.0.1", int(line), prot, cafile=cafile)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- command line -------------------------------------------------------------------------------


def _table(rows: dict[str, LoadResult], clients: int) -> str:
    lines = [
        f"{'server':<28} {'rr64 req/s':>12} {'stream64k MB/s':>15} {'handshakes/s':>13}",
        "-" * 71,
    ]
    for name, r in rows.items():
        rr, mb, hs = r.rr64_requests_per_s, r.stream64k_mb_per_s, r.handshakes_per_s
        lines.append(f"{name:<28} {rr:>12.0f} {mb:>15.1f} {hs:>13.0f}")
    lines.append(
        f"({clients} concurrent clients; python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION} clients)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load (default 3)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--target", help="HOST:PORT of an echo server to load instead of the references")
    parser.add_argument("--prot", choices=("tcp", "tls"), default="tls", help="with --target")
    parser.add_argument("--cafile", help="with --target: PEM trust anchors for the server's certificate")
    parser.add_argument("--server-name", default="localhost", help="with --target: host name to verify")
    parser.add_argument("--insecure", action="store_true", help="with --target: accept any certificate")
    parser.add_argument("--serve", choices=("tcp", "tls"), help=argparse.SUPPRESS)
    parser.add_argument("--certfile", help=argparse.SUPPRESS)
    parser.add_argument("--keyfile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.clients <= 0:
        parser.error("--seconds and --clients must be positive")
    if args.serve:
        serve(args.serve, args.certfile, args.keyfile)
        return 0

    rows: dict[str, LoadResult] = {}
    try:
        if args.target:
            host, _, port = args.target.rpartition(":")
            if not host or not port.isdigit():
                parser.error("--target must be HOST:PORT")
            target = Target(
                host.strip("[]"), int(port), args.prot, args.cafile, args.server_name, args.insecure
            )
            rows[f"{args.prot} {args.target}"] = run_load(target, clients=args.clients, seconds=args.seconds)
        else:
            with tempfile.TemporaryDirectory(prefix="donjon-bench-net-") as tmp:
                for prot in ("tcp", "tls"):
                    with reference_server(prot, Path(tmp)) as target:
                        name = f"reference asyncio {prot}"
                        rows[name] = run_load(target, clients=args.clients, seconds=args.seconds)
    except (OSError, ssl.SSLError, RuntimeError, asyncio.IncompleteReadError) as e:
        print(f"bench_net_reference: {e}", file=sys.stderr)
        return 3
    if args.format == "json":
        print(json.dumps({name: asdict(r) for name, r in rows.items()}, indent=2))
    else:
        print(_table(rows, args.clients))
    return 0


if __name__ == "__main__":
    sys.exit(main())
