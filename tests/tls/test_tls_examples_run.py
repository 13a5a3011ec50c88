"""The networking examples, run on a minimal test-only WASI host over donjon.tls streams.

Donjon's real WASI host (donjon.wasi) gets socket fds in a later step; until then this fake
implements just the wasi_snapshot_preview1 calls the examples import (sock_accept, sock_recv,
sock_send, sock_shutdown, poll_oneoff, fd_write, environ/args, proc_exit), the way the real
host is meant to drive the Stream interface: readiness from ``readable()``/``writable()``,
waiting on ``poll_events()``, errnos from the exceptions. It proves two things at once: the C
examples work, and the Stream interface is enough for a WASI host.
"""

from __future__ import annotations

import errno
import select
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from donjon.tls import (
    ClientContext,
    HostName,
    Identity,
    Listener,
    ServerContext,
    Stream,
    StreamError,
    WouldBlock,
    connect,
)

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 10.0

# WASI errno values (witx typenames `$errno`).
W_SUCCESS, W_AGAIN, W_BADF, W_CONNABORTED, W_CONNRESET, W_INVAL = 0, 6, 8, 13, 15, 28
W_NOTCONN, W_NOTSOCK, W_PIPE, W_SPIPE = 53, 57, 64, 70
_FROM_POSIX = {
    errno.EAGAIN: W_AGAIN,
    errno.EBADF: W_BADF,
    errno.ECONNABORTED: W_CONNABORTED,
    errno.ECONNRESET: W_CONNRESET,
    errno.EINVAL: W_INVAL,
    errno.ENOTCONN: W_NOTCONN,
    errno.EPIPE: W_PIPE,
}
FDFLAGS_NONBLOCK = 4
EVENTTYPE_CLOCK, EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE = 0, 1, 2


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class MiniHost:
    """fd 0-2 stdio (captured), then listeners and streams; blocking unless FDFLAGS_NONBLOCK."""

    def __init__(
        self, sockets: list[tuple[str, Listener | Stream]], env: dict[str, str], args: list[str]
    ) -> None:
        self.files: dict[int, Any] = {0: "stdin", 1: "stdout", 2: "stderr"}
        self.nonblocking: set[int] = set()
        names = ["stdin", "stdout", "stderr"]
        for i, (name, obj) in enumerate(sockets, start=3):
            self.files[i] = obj
            names.append(name)
        self.env = {"FD_COUNT": str(len(names)), "FD_NAMES": ":".join(names), **env}
        self.args = ["main.wasm", *args]
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.mem: wasmtime.Memory | None = None
        self.store: Any = None

    # -- memory helpers
    def read(self, ptr: int, n: int) -> bytes:
        assert self.mem is not None
        return bytes(self.mem.read(self.store, ptr, ptr + n))

    def write(self, ptr: int, data: bytes) -> None:
        assert self.mem is not None
        self.mem.write(self.store, data, ptr)

    def iovecs(self, ptr: int, count: int) -> list[tuple[int, int]]:
        raw = self.read(ptr, 8 * count)
        return [struct.unpack_from("<II", raw, 8 * i) for i in range(count)]

    def _strings(self, items: list[str], ptrs: int, buf: int) -> int:
        offset = buf
        for i, item in enumerate(items):
            data = item.encode() + b"\0"
            self.write(ptrs + 4 * i, struct.pack("<I", offset))
            self.write(offset, data)
            offset += len(data)
        return W_SUCCESS

    # -- blocking helper: retry an operation, waiting the way poll_oneoff would
    def _blocking(self, fd: int, obj: Any, op: Callable[[], Any], read: bool) -> Any:
        end = time.monotonic() + TIMEOUT
        while True:
            try:
                return op()
            except WouldBlock:
                if fd in self.nonblocking:
                    raise
                poller = select.poll()
                events = select.POLLIN if isinstance(obj, Listener) else obj.poll_events(read, not read)
                poller.register(obj.fileno(), events)
                if time.monotonic() > end:
                    raise
                poller.poll(50)

    # -- WASI functions
    def args_sizes_get(self, argc: int, size: int) -> int:
        self.write(argc, struct.pack("<I", len(self.args)))
        self.write(size, struct.pack("<I", sum(len(a.encode()) + 1 for a in self.args)))
        return W_SUCCESS

    def args_get(self, ptrs: int, buf: int) -> int:
        return self._strings(self.args, ptrs, buf)

    def environ_sizes_get(self, count: int, size: int) -> int:
        items = [f"{k}={v}" for k, v in self.env.items()]
        self.write(count, struct.pack("<I", len(items)))
        self.write(size, struct.pack("<I", sum(len(i.encode()) + 1 for i in items)))
        return W_SUCCESS

    def environ_get(self, ptrs: int, buf: int) -> int:
        return self._strings([f"{k}={v}" for k, v in self.env.items()], ptrs, buf)

    def fd_write(self, fd: int, iovs: int, count: int, nwritten: int) -> int:
        if fd not in (1, 2):
            return W_BADF
        data = b"".join(self.read(p, n) for p, n in self.iovecs(iovs, count))
        (self.stdout if fd == 1 else self.stderr).extend(data)
        self.write(nwritten, struct.pack("<I", len(data)))
        return W_SUCCESS

    def fd_close(self, fd: int) -> int:
        obj = self.files.pop(fd, None)
        if obj is None:
            return W_BADF
        if not isinstance(obj, str):
            obj.close()
        self.nonblocking.discard(fd)
        return W_SUCCESS

    def fd_seek(self, fd: int, offset: int, whence: int, out: int) -> int:
        return W_SPIPE if fd in self.files else W_BADF

    def fd_fdstat_get(self, fd: int, out: int) -> int:
        if fd not in self.files:
            return W_BADF
        filetype = 2 if fd < 3 else 6  # character device; socket stream
        flags = FDFLAGS_NONBLOCK if fd in self.nonblocking else 0
        self.write(out, struct.pack("<BxHxxxxQQ", filetype, flags, (1 << 64) - 1, (1 << 64) - 1))
        return W_SUCCESS

    def proc_exit(self, code: int) -> None:
        raise Exit(code)

    def _sock(self, fd: int) -> Any:
        obj = self.files.get(fd)
        if obj is None:
            raise _Errno(W_BADF)
        if isinstance(obj, str):
            raise _Errno(W_NOTSOCK)
        return obj

    def sock_accept(self, fd: int, flags: int, out: int) -> int:
        try:
            listener = self._sock(fd)
            if not isinstance(listener, Listener):
                return W_INVAL
            stream = self._blocking(fd, listener, listener.accept, True)
        except _Errno as e:
            return e.code
        except StreamError as e:
            return _FROM_POSIX.get(e.errno, W_CONNABORTED)
        new = max(self.files) + 1
        self.files[new] = stream
        if flags & FDFLAGS_NONBLOCK:
            self.nonblocking.add(new)
        self.write(out, struct.pack("<I", new))
        return W_SUCCESS

    def sock_recv(self, fd: int, iovs: int, count: int, riflags: int, out_len: int, out_flags: int) -> int:
        try:
            stream = self._sock(fd)
            iov = self.iovecs(iovs, count)
            total = sum(n for _, n in iov)
            data = self._blocking(fd, stream, lambda: stream.recv(total, peek=bool(riflags & 1)), True)
        except _Errno as e:
            return e.code
        except StreamError as e:
            return _FROM_POSIX.get(e.errno, W_CONNRESET)
        offset = 0
        for ptr, n in iov:
            chunk = data[offset : offset + n]
            self.write(ptr, chunk)
            offset += len(chunk)
        self.write(out_len, struct.pack("<I", len(data)))
        self.write(out_flags, struct.pack("<H", 0))
        return W_SUCCESS

    def sock_send(self, fd: int, iovs: int, count: int, siflags: int, out_len: int) -> int:
        try:
            stream = self._sock(fd)
            data = b"".join(self.read(p, n) for p, n in self.iovecs(iovs, count))
            sent = self._blocking(fd, stream, lambda: stream.send(data), False)
        except _Errno as e:
            return e.code
        except StreamError as e:
            return _FROM_POSIX.get(e.errno, W_PIPE)
        self.write(out_len, struct.pack("<I", sent))
        return W_SUCCESS

    def sock_shutdown(self, fd: int, how: int) -> int:
        try:
            stream = self._sock(fd)
            flag = {1: socket.SHUT_RD, 2: socket.SHUT_WR, 3: socket.SHUT_RDWR}.get(how)
            if flag is None:
                return W_INVAL
            stream.shutdown(flag)
        except _Errno as e:
            return e.code
        except StreamError as e:
            return _FROM_POSIX.get(e.errno, W_NOTCONN)
        return W_SUCCESS

    def poll_oneoff(self, subs: int, events_out: int, nsubs: int, nevents: int) -> int:
        raw = self.read(subs, 48 * nsubs)
        timeout: float | None = None
        wanted: list[tuple[int, int, int, Any]] = []  # userdata, type, fd, obj
        clock_ud = 0
        for i in range(nsubs):
            userdata, tag = struct.unpack_from("<QB", raw, 48 * i)
            if tag == EVENTTYPE_CLOCK:
                _, ns = struct.unpack_from("<IxxxxQ", raw, 48 * i + 16)
                t = ns / 1e9
                timeout = t if timeout is None else min(timeout, t)
                clock_ud = userdata
            else:
                (fd,) = struct.unpack_from("<I", raw, 48 * i + 16)
                wanted.append((userdata, tag, fd, self.files.get(fd)))
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            ready: list[tuple[int, int, int]] = []  # userdata, errno, type
            for userdata, tag, _fd, obj in wanted:
                if obj is None or isinstance(obj, str):
                    ready.append((userdata, W_BADF, tag))
                elif (tag == EVENTTYPE_FD_READ and obj.readable()) or (
                    tag == EVENTTYPE_FD_WRITE and not isinstance(obj, Listener) and obj.writable()
                ):
                    ready.append((userdata, W_SUCCESS, tag))
            now = time.monotonic()
            if not ready and end is not None and now >= end:
                ready.append((clock_ud, W_SUCCESS, EVENTTYPE_CLOCK))
            if ready:
                for index, (userdata, err, tag) in enumerate(ready):
                    self.write(
                        events_out + 32 * index, struct.pack("<QHBxxxxxQHxxxxxx", userdata, err, tag, 0, 0)
                    )
                self.write(nevents, struct.pack("<I", len(ready)))
                return W_SUCCESS
            poller = select.poll()
            wait = 0.05 if end is None else min(0.05, end - now)
            for _, tag, _fd, obj in wanted:
                if isinstance(obj, Listener):
                    poller.register(obj.fileno(), select.POLLIN)
                    continue
                events = obj.poll_events(tag == EVENTTYPE_FD_READ, tag == EVENTTYPE_FD_WRITE)
                poller.register(obj.fileno(), events)
                if obj.deadline is not None:
                    wait = max(0.0, min(wait, obj.deadline - now))
            poller.poll(wait * 1000)

    def run(self, wasm: Path) -> int:
        engine = wasmtime.Engine()
        store = wasmtime.Store(engine)
        self.store = store
        linker = wasmtime.Linker(engine)
        i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
        signatures = {
            "args_sizes_get": [i32, i32],
            "args_get": [i32, i32],
            "environ_sizes_get": [i32, i32],
            "environ_get": [i32, i32],
            "fd_write": [i32, i32, i32, i32],
            "fd_close": [i32],
            "fd_seek": [i32, i64, i32, i32],
            "fd_fdstat_get": [i32, i32],
            "poll_oneoff": [i32, i32, i32, i32],
            "sock_accept": [i32, i32, i32],
            "sock_recv": [i32, i32, i32, i32, i32, i32],
            "sock_send": [i32, i32, i32, i32, i32],
            "sock_shutdown": [i32, i32],
        }
        for name, params in signatures.items():
            method = getattr(self, name)
            linker.define_func("wasi_snapshot_preview1", name, wasmtime.FuncType(params, [i32]), method)
        linker.define_func(
            "wasi_snapshot_preview1", "proc_exit", wasmtime.FuncType([i32], []), self.proc_exit
        )
        instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(wasm)))
        memory = instance.exports(store)["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.mem = memory
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
        except Exit as e:
            return e.code
        finally:
            for obj in self.files.values():
                if not isinstance(obj, str):
                    obj.close()
        return 0


class _Errno(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def run_in_thread(host: MiniHost, wasm: Path) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def target() -> None:
        try:
            result.append(host.run(wasm))
        except BaseException as e:
            result.append(e)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def echo_with(port: int, ctx: ssl.SSLContext | None, messages: list[bytes]) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        sock: Any = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
        for message in messages:
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = sock.recv(65536)
                assert chunk, "closed early"
                got += chunk
            assert got == message
        sock.close()
    return True


@pytest.fixture
def ca_pem(ca, tmp_path):  # type: ignore[no-untyped-def]
    return ca.pem(tmp_path)


@pytest.mark.parametrize("prot", ["tcp", "tls"])
def test_echo_example_serves_concurrent_clients(prot, server_creds, ca_pem, caplog):  # type: ignore[no-untyped-def]
    server = ServerContext(Identity(server_creds)) if prot == "tls" else None
    listener = Listener.bind("127.0.0.1", 0, prot=prot, server=server)
    port = listener.port
    clients = 8
    extra = 1 if prot == "tls" else 0  # a plain-TCP client on the TLS port
    host = MiniHost([("ingest", listener)], {"ECHO_EXIT_AFTER": str(clients + extra)}, [])
    thread, result = run_in_thread(host, ROOT / "examples/echo/echo.wasm")
    ctx = ssl.create_default_context(cafile=str(ca_pem)) if prot == "tls" else None
    if prot == "tls":
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            while plain.recv(4096):
                pass
    messages = [b"hello", b"x" * 100_000, bytes(range(256)) * 4]
    with ThreadPoolExecutor(clients) as pool:
        assert all(pool.map(lambda _: echo_with(port, ctx, messages), range(clients)))
    thread.join(TIMEOUT)
    assert result == [0], (result, host.stderr.decode(errors="replace"))
    assert b"served %d connections" % (clients + extra) in host.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary")
def test_http_example_answers_curl_over_tls(server_creds, ca_pem):  # type: ignore[no-untyped-def]
    listener = Listener.bind("127.0.0.1", 0, prot="tls", server=ServerContext(Identity(server_creds)))
    host = MiniHost([("web", listener)], {"HTTP_EXIT_AFTER": "2"}, [])
    thread, result = run_in_thread(host, ROOT / "examples/http/http.wasm")
    base = ["curl", "-sS", "--max-time", "5", "--cacert", str(ca_pem)]
    page = subprocess.run([*base, f"https://localhost:{listener.port}/"], capture_output=True, timeout=10)
    missing = subprocess.run(
        [*base, "-o", "/dev/null", "-w", "%{http_code}", f"https://localhost:{listener.port}/nope"],
        capture_output=True,
        timeout=10,
    )
    thread.join(TIMEOUT)
    assert page.returncode == 0, page.stderr
    assert b"<h1>Hello from a Donjon Keep</h1>" in page.stdout
    assert missing.stdout == b"404"
    assert result == [0], host.stderr


def test_client_example_fetches_a_page_over_verified_tls(serve, ca, server_creds):  # type: ignore[no-untyped-def]
    web = serve(ServerContext(Identity(server_creds)), mode="http")
    stream = connect(
        "127.0.0.1", web.port, prot="tls", client=ClientContext(ca.anchors(), HostName("localhost"))
    )
    host = MiniHost([("localhost", stream)], {}, ["/index.html"])
    assert host.run(ROOT / "examples/client/client.wasm") == 0, host.stderr
    assert host.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"hello from a Donjon test" in host.stdout
    assert b"client: " in host.stderr and b"bytes from localhost" in host.stderr
