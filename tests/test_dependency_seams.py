"""The private seams of dependencies Donjon builds on, checked by name so an upgrade fails here.

Donjon subclasses uvicorn's h11 protocol twice (``donjon.steward.tlsscope.TlsH11Protocol`` and
``donjon.steward.connguard``'s ``GuardedH11Protocol`` on top of it), reaches into asyncio's TLS
protocol and ``socket.socket._accept`` (``connguard``), and into wasmtime-py's ffi
(``donjon.wasi.ffi``). None of these is a public API, which is why pyproject.toml pins uvicorn and
wasmtime below the next untested version. If a seam goes, the code would not always fail: a
renamed ``on_response_complete`` silently stops the keep-alive deadline, a ``scope`` built
without ``self.scope =`` silently drops the client certificate. Each test here names the seam,
who relies on it and the version found, so raising a pin fails loudly in CI instead.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import inspect
import socket
import tomllib
from pathlib import Path
from typing import Any

import h11
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _uvicorn_version() -> str:
    import uvicorn

    return str(uvicorn.__version__)


def _seam(what: str, who: str) -> str:
    return (
        f"uvicorn {_uvicorn_version()}: {what}; {who} relies on it. Adapt it (and this test) "
        "before raising the uvicorn pin in pyproject.toml."
    )


def test_uvicorn_is_pinned_below_the_next_untested_minor():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("uvicorn"))
    assert "<" in pin, f"{pin}: uvicorn's internals are subclassed; pin an upper bound"
    major, minor = (int(x) for x in _uvicorn_version().split(".")[:2])
    assert f"<{major}.{minor + 1}" in pin, f"{pin}: installed {_uvicorn_version()} is not the tested bound"


def test_uvicorn_h11_protocol_has_the_methods_the_subclasses_override():
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError as e:
        gone = f"uvicorn.protocols.http.h11_impl.H11Protocol is gone ({e})"
        pytest.fail(_seam(gone, "donjon.steward.tlsscope and .connguard"))
    for name in ("connection_made", "data_received", "on_response_complete", "handle_events"):
        assert callable(getattr(H11Protocol, name, None)), _seam(
            f"H11Protocol.{name} is gone", "donjon.steward.connguard.GuardedH11Protocol"
        )
    source = inspect.getsource(H11Protocol.handle_events)
    assert "self.scope =" in source, _seam(
        "H11Protocol.handle_events no longer assigns self.scope",
        "donjon.steward.tlsscope.TlsH11Protocol (its scope property adds the ASGI tls extension)",
    )
    assert "self.on_response_complete" in source, _seam(
        "H11Protocol.handle_events no longer hands on_response_complete to the request cycle",
        "donjon.steward.connguard (it re-arms the keep-alive deadline there)",
    )


def test_uvicorn_config_takes_the_settings_serve_passes():
    import uvicorn

    parameters = inspect.signature(uvicorn.Config).parameters
    for name in ("http", "ws", "loop", "ssl_context_factory", "h11_max_incomplete_event_size", "backlog"):
        assert name in parameters, _seam(f"uvicorn.Config has no {name}=", "donjon.steward.service.serve")


def test_uvicorn_calls_the_guarded_protocols_hooks_on_a_real_request():
    """Behaviour, not names: uvicorn builds the scope through ``self.scope`` (the tls extension
    reaches the application), keeps its h11 connection in ``self.conn``, and calls
    ``on_response_complete`` after the response."""
    import uvicorn
    from uvicorn.server import ServerState

    from donjon.steward.connguard import ConnectionGuard
    from donjon.steward.limits import ConnectionLimits
    from donjon.steward.tlsscope import TlsH11Protocol

    guarded = ConnectionGuard(ConnectionLimits()).protocol_class(TlsH11Protocol)
    seen: dict[str, Any] = {}
    completed: list[object] = []

    class Probe(guarded):  # type: ignore[misc,valid-type]
        def on_response_complete(self) -> None:
            completed.append(self.conn.their_state)
            super().on_response_complete()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["scope"] = scope
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def drive() -> bytes:
        config = uvicorn.Config(app, http=Probe, ws="none", lifespan="off", log_config=None)
        config.load()
        server, client = socket.socketpair()
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(
            lambda: Probe(config, ServerState(), {}), server
        )
        protocol._tls = {"marker": "tls extension"}  # what connection_made reads from a TLS transport
        try:
            await loop.sock_sendall(client, b"GET / HTTP/1.1\r\nHost: seams.test\r\n\r\n")
            return await asyncio.wait_for(loop.sock_recv(client, 4096), 10)
        finally:
            transport.close()
            client.close()

    answer = asyncio.run(drive())
    assert answer.startswith(b"HTTP/1.1 204"), answer
    assert seen["scope"].get("extensions", {}).get("tls") == {"marker": "tls extension"}, _seam(
        "the request's scope did not go through self.scope", "donjon.steward.tlsscope.TlsH11Protocol"
    )
    assert completed, _seam("on_response_complete was not called", "donjon.steward.connguard")
    assert completed[0] in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED), completed


def test_asyncio_and_socket_internals_connguard_uses():
    assert isinstance(getattr(asyncio.sslproto.SSLProtocol, "max_size", None), int), (
        "asyncio.sslproto.SSLProtocol.max_size is gone: donjon.steward.connguard.lean_tls_buffers "
        "sets it to bound the read buffer of every TLS connection"
    )
    assert "max_size" in inspect.getsource(asyncio.sslproto.SSLProtocol.__init__), (
        "SSLProtocol no longer allocates its read buffer by max_size: lean_tls_buffers has no effect"
    )
    assert callable(getattr(socket.socket, "_accept", None)), (
        "socket.socket._accept is gone: donjon.steward.connguard.GuardedListener.accept calls it"
    )


def test_wasmtime_internals_the_wasi_host_uses():
    import wasmtime
    from wasmtime import _ffi

    version = getattr(wasmtime, "__version__", "?")
    for name, who in (
        ("dll", "donjon.wasi.ffi"),
        ("wasmtime_val_raw_t", "donjon.wasi.ffi"),
        ("filename", "donjon.runtime.engine.wasmtime_build_id, the module cache's key"),
    ):
        assert hasattr(_ffi, name), f"wasmtime {version}: wasmtime._ffi.{name} is gone ({who})"
    assert callable(getattr(wasmtime.Store, "_context", None)), (
        f"wasmtime {version}: Store._context is gone (donjon.wasi.ffi.store_context)"
    )
    store = wasmtime.Store()
    memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(1, None)))
    assert hasattr(memory, "_memory"), f"wasmtime {version}: Memory._memory is gone (ffi.memory_from_export)"
