"""Config entries to sockets: the policy each ``listen``/``connect`` entry asks for, and nothing else."""

from __future__ import annotations

import pytest

from donjon.config import ConnectEntry, ListenEntry, parse_config
from donjon.tls import Identity, TCPStream, TLSConfigError, TLSStream, self_signed
from donjon.tls.endpoints import client_context_for, open_connect, open_listen, server_context_for


def test_listen_entries_map_to_server_policies(ca) -> None:  # type: ignore[no-untyped-def]
    identity = Identity(self_signed())
    assert server_context_for(ListenEntry("p", "127.0.0.1", 80, "tcp"), identity) is None
    plain = server_context_for(ListenEntry("s", "127.0.0.1", 443, "tls"), identity)
    assert plain is not None and plain.client_auth is None
    pinned = ListenEntry("m", "127.0.0.1", 443, "tls", "steward", "spiffe://example.org/keep/a")
    context = server_context_for(pinned, identity, [ca.cert])
    assert context is not None and context.client_auth is not None
    assert {str(s) for s in context.client_auth.spiffe_ids} == {"spiffe://example.org/keep/a"}
    with pytest.raises(TLSConfigError, match="unattested"):
        server_context_for(pinned, identity)  # no Steward CA: refuse rather than trust nobody/everybody
    bad = ListenEntry("m", "127.0.0.1", 443, "tls", "steward", "spiffe://Example.org/")
    with pytest.raises(TLSConfigError, match="client_identity"):
        server_context_for(bad, identity, [ca.cert])


def test_connect_entries_map_to_client_policies(ca, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca.pem(tmp_path)
    keep = Identity(self_signed())
    assert (
        client_context_for(ConnectEntry("h", "h", 80, "tcp", None), config_dir=tmp_path, identity=keep)
        is None
    )
    system = client_context_for(ConnectEntry("h", "h", 443, "tls"), config_dir=tmp_path, identity=keep)
    assert system is not None and system.anchors.system
    from_file = ConnectEntry("h", "h", 443, "tls", "file", "Test_Steward_CA.pem")
    context = client_context_for(from_file, config_dir=tmp_path, identity=keep)
    assert context is not None and context.anchors.certificates == (ca.cert,)
    with pytest.raises(TLSConfigError, match="cannot read"):
        client_context_for(
            ConnectEntry("h", "h", 443, "tls", "file", "missing.pem"), config_dir=tmp_path, identity=keep
        )
    with pytest.raises(TLSConfigError, match="unattested"):
        client_context_for(ConnectEntry("h", "h", 443, "tls", "steward"), config_dir=tmp_path, identity=keep)


def test_open_listen_and_connect_from_entries(ca, server_creds, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca.pem(tmp_path)
    with open_listen(ListenEntry("web", "127.0.0.1", 0, "tls"), Identity(server_creds)) as listener:
        entry = ConnectEntry("localhost", "localhost", listener.port, "tls", "file", "Test_Steward_CA.pem")
        stream = open_connect(entry, config_dir=tmp_path, identity=Identity(self_signed()))
        assert isinstance(stream, TLSStream)
        assert stream.peer == f"localhost (127.0.0.1:{listener.port})"
        stream.close()
    with open_listen(ListenEntry("raw", "127.0.0.1", 0, "tcp"), Identity(server_creds)) as listener:
        entry = ConnectEntry("x", "127.0.0.1", listener.port, "tcp", None)
        stream = open_connect(entry, config_dir=tmp_path, identity=Identity(self_signed()))
        assert isinstance(stream, TCPStream)
        assert stream.peer == f"127.0.0.1:{listener.port}"
        stream.close()


def test_example_configs_ask_for_the_sockets_the_examples_use(pytestconfig) -> None:  # type: ignore[no-untyped-def]
    examples = pytestconfig.rootpath / "examples"
    expected = {
        "echo/Donjon.toml": ("ingest", "tcp"),
        "echo/Donjon-tls.toml": ("ingest", "tls"),
        "http/Donjon.toml": ("web", "tls"),
        "http/Donjon-tcp.toml": ("web", "tcp"),
        "client/Donjon.toml": ("example.com", "tls"),
        "client/Donjon-local.toml": ("localhost", "tcp"),
    }
    for path, (name, prot) in expected.items():
        parsed = parse_config((examples / path).read_bytes(), origin=path)
        assert not parsed.warnings
        files = parsed.config.files
        assert [f.kind for f in files[:3]] == ["stdin", "stdout", "stderr"]
        assert len(files) == 4 and files[3].name == name and getattr(files[3], "prot", None) == prot


def test_addresses_in_bind_errors_are_printed_with_brackets() -> None:
    # Every address is printed one way: [::]:443, never :::443 (issue 10).
    import socket

    from donjon.tls.errors import TLSConfigError
    from donjon.tls.sockets import bind_address

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(TLSConfigError) as e:
            bind_address("127.0.0.1", port)
        assert str(e.value).startswith(f"listen 127.0.0.1:{port}: ")
    with pytest.raises(TLSConfigError) as e:
        bind_address("::not-an-address", 1)
    assert "listen [::not-an-address]:1: cannot resolve" in str(e.value)
    from donjon.tls.errors import StreamError
    from donjon.tls.sockets import connect

    with pytest.raises(StreamError) as refused:
        connect("::1", 9, prot="tcp", timeout=2)  # the discard port: nothing listens there
    assert "cannot connect to [::1]:9" in str(refused.value)


def test_ports_opened_before_attesting_are_claimed_at_once() -> None:
    # Two Keeps starting together on one port: the second must fail before it attests. Binding
    # alone would not do (SO_REUSEADDR lets two sockets bind a port nobody listens on yet).
    from donjon.config import parse_config
    from donjon.runtime.errors import SocketUnavailable
    from donjon.runtime.net import bind_listeners

    text = '[[files]]\nkind = "listen"\nname = "web"\naddr = "127.0.0.1"\nport = PORT\nprot = "tcp"\n'
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = parse_config(text.replace("PORT", str(port))).config
    first = bind_listeners(config)
    try:
        with pytest.raises(SocketUnavailable) as e:
            bind_listeners(config)
        assert str(e.value) == f'files[0] ("web"): listen 127.0.0.1:{port}: Address already in use'
    finally:
        first.close()
    bind_listeners(config).close()  # released by close()
