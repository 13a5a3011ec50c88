"""From ``Donjon.toml`` socket entries to open sockets: what the runtime calls per ``[[files]]`` entry.

``listen`` entries become a :class:`~donjon.tls.sockets.Listener`, ``connect`` entries a connected
:class:`~donjon.tls.stream.Stream`, with the TLS policy the entry asks for:

* ``listen``, ``prot = "tls"``: present the Keep's :class:`Identity`; with ``client_auth =
  "steward"`` require a client certificate from the Steward's CA, and with ``client_identity``
  that SPIFFE ID.
* ``connect``, ``prot = "tls"``: verify the server against ``trust`` (``"system"`` roots, the
  ``"steward"`` CA, or the PEM ``"file"`` ``trust_file``, relative to the config file) and the
  entry's ``host`` — or, with ``peer_identity`` (a peer Keep), one of those SPIFFE IDs instead of
  the host name; present the Keep's identity if the server asks for a client certificate. A
  host-named server whose certificate a Steward marked ``/sim/`` or ``/unattested/`` is refused
  unless the entry sets ``allow_simulated`` / ``allow_unattested``.

An entry that asks for the Steward's CA when the Keep has none (an unattested Keep) is refused
(:class:`TLSConfigError`): failing closed beats silently trusting nothing or everything.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from donjon.config.model import ConnectEntry, ListenEntry
from donjon.tls.anchors import TrustAnchors
from donjon.tls.context import ClientAuth, ClientContext, ExpectedPeer, HostName, ServerContext, SpiffeIds
from donjon.tls.errors import InvalidSpiffeId, TLSConfigError
from donjon.tls.identity import Identity
from donjon.tls.sockets import Listener, connect
from donjon.tls.spiffe import SpiffeId, parse_spiffe_id
from donjon.tls.stream import DEFAULT_HANDSHAKE_TIMEOUT, Stream

__all__ = ["client_context_for", "open_connect", "open_listen", "server_context_for"]


def _steward(steward_ca: Sequence[x509.Certificate], what: str) -> TrustAnchors:
    if not steward_ca:
        raise TLSConfigError(what, "needs the Steward's CA, but this Keep has no Steward (unattested)")
    return TrustAnchors.steward_ca(steward_ca)


def server_context_for(
    entry: ListenEntry, identity: Identity, steward_ca: Sequence[x509.Certificate] = ()
) -> ServerContext | None:
    """The TLS server policy of a ``listen`` entry; ``None`` for ``prot = "tcp"``."""
    if entry.prot == "tcp":
        return None
    client_auth = None
    if entry.client_auth == "steward":
        ids: frozenset[SpiffeId] = frozenset()
        if entry.client_identity is not None:
            try:
                ids = frozenset({parse_spiffe_id(entry.client_identity)})
            except InvalidSpiffeId as e:
                raise TLSConfigError(f"listen {entry.name}: client_identity", e.reason) from e
        client_auth = ClientAuth(_steward(steward_ca, f"listen {entry.name}: client_auth"), ids)
    return ServerContext(identity, client_auth=client_auth)


def client_context_for(
    entry: ConnectEntry,
    *,
    config_dir: Path,
    identity: Identity,
    steward_ca: Sequence[x509.Certificate] = (),
) -> ClientContext | None:
    """The TLS client policy of a ``connect`` entry; ``None`` for ``prot = "tcp"``.

    ``identity`` is the Keep's: presented if the server asks for a client certificate, and
    named in every log line of the connection (so an unattested Keep says so here too).
    """
    if entry.prot == "tcp":
        return None
    if entry.trust == "steward":
        anchors = _steward(steward_ca, f"connect {entry.name}: trust")
    elif entry.trust == "file":
        if not entry.trust_file:
            raise TLSConfigError(f"connect {entry.name}: trust", 'trust = "file" needs trust_file')
        anchors = TrustAnchors.from_pem_file(config_dir / entry.trust_file)
    else:
        anchors = TrustAnchors.system_roots()
    peer: ExpectedPeer = HostName(
        entry.host, allow_simulated=entry.allow_simulated, allow_unattested=entry.allow_unattested
    )
    if entry.peer_identity:
        try:
            peer = SpiffeIds.of(parse_spiffe_id(text) for text in entry.peer_identity)
        except InvalidSpiffeId as e:
            raise TLSConfigError(f"connect {entry.name}: peer_identity", e.reason) from e
    return ClientContext(anchors, peer, identity=identity)


def open_listen(
    entry: ListenEntry,
    identity: Identity,
    steward_ca: Sequence[x509.Certificate] = (),
    *,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    bound: socket.socket | None = None,
) -> Listener:
    """Bind and listen for a ``listen`` entry; with ``bound`` (from :func:`bind_address`, bound
    before the Keep attested), listen on that socket, which the listener then owns."""
    try:
        server = server_context_for(entry, identity, steward_ca)
    except BaseException:
        if bound is not None:
            bound.close()
        raise
    if bound is not None:
        return Listener.listen_on(bound, prot=entry.prot, server=server, handshake_timeout=handshake_timeout)
    return Listener.bind(
        entry.addr, entry.port, prot=entry.prot, server=server, handshake_timeout=handshake_timeout
    )


def open_connect(
    entry: ConnectEntry,
    *,
    config_dir: Path,
    identity: Identity,
    steward_ca: Sequence[x509.Certificate] = (),
    timeout: float = 10.0,
) -> Stream:
    """Connect for a ``connect`` entry (the TCP connection is made now; TLS proceeds as the guest uses it)."""
    client = client_context_for(entry, config_dir=config_dir, identity=identity, steward_ca=steward_ca)
    return connect(entry.host, entry.port, prot=entry.prot, client=client, timeout=timeout)
