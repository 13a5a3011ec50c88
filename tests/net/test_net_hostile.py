"""Any arguments a guest passes to the socket functions give an errno: never a host exception.

A host with every kind of socket fd (a listener, a plain TCP stream, a TLS stream stuck in its
handshake), all non-blocking so nothing waits, is called with arbitrary integers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.tls import ClientContext, HostName, Listener, TrustAnchors, connect, self_signed
from donjon.wasi import ConnectedSocket, GuestFile, GuestSpec, ListenSocket, Stdio, abi, ffi
from donjon.wasi.errors import Errno
from donjon.wasi.host import SIGNATURES, WasiHost

PAGE = 65536
FUNCTIONS = [
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
    "fd_read",
    "fd_write",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_filestat_get",
    "fd_close",
]
_ARG32 = st.one_of(st.integers(0, 8), st.integers(PAGE - 64, PAGE + 64), st.integers(0, 2**32 - 1))
_ARG64 = st.one_of(st.integers(0, 8), st.integers(0, 2**64 - 1))


class SocketHost:
    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        port = self.server.getsockname()[1]
        self.listener = Listener.bind("127.0.0.1", 0, prot="tcp")
        self.tcp = connect("127.0.0.1", port, prot="tcp")
        self.tls = connect(
            "127.0.0.1",
            port,
            prot="tls",
            client=ClientContext(TrustAnchors.steward_ca([self_signed().chain[0]]), HostName("localhost")),
        )
        self.peers = [self.server.accept()[0], self.server.accept()[0]]  # they never send nor read
        engine = wasmtime.Engine()
        self.store = wasmtime.Store(engine)
        instance = wasmtime.Instance(
            self.store, wasmtime.Module(engine, '(module (memory (export "memory") 1))'), []
        )
        memory = instance.exports(self.store)["memory"]
        assert isinstance(memory, wasmtime.Memory)
        files: list[GuestFile] = [
            Stdio("null"),
            ListenSocket(self.listener),
            ConnectedSocket(self.tcp),
            ConnectedSocket(self.tls),
        ]
        self.host = WasiHost(GuestSpec(args=["x"], env=[], files=files), ffi.store_context(self.store))
        self.host.memory.bind(ffi.memory_from_export(self.store, memory))
        self.initial = {fd for fd, _ in self.host.fds.items()}

    def reset(self) -> None:
        """Every socket fd non-blocking again; fds the last call opened are closed."""
        for fd, f in self.host.fds.items():
            if fd not in self.initial:
                self.host.fds.remove(fd).close()
            elif f.is_socket:
                f.fdflags = abi.FDFLAGS_NONBLOCK

    def close(self) -> None:
        self.host.close()
        for peer in self.peers:
            peer.close()
        self.server.close()


@pytest.fixture(scope="module")
def sockets() -> Iterator[SocketHost]:
    h = SocketHost()
    yield h
    h.close()


@pytest.mark.parametrize("name", FUNCTIONS)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_arguments_give_an_errno(sockets: SocketHost, name: str, data: st.DataObject) -> None:
    sockets.reset()
    args: list[Any] = [data.draw(_ARG32 if kind == "i" else _ARG64) for kind in SIGNATURES[name]]
    if name == "fd_close" and args[0] in sockets.initial:
        args[0] += 16  # closing the fixtures' own fds would leave later examples nothing to hit
    try:
        getattr(sockets.host, name)(*args)
    except Errno as e:
        assert 0 <= e.code <= abi.ENOTCAPABLE
    except OverflowError:
        pass  # the trampoline turns this into EINVAL (a guest number too large for the host)
