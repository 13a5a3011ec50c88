"""Donjon's TLS layer: the Keep's identity, TLS 1.3 contexts, and non-blocking socket streams.

See ``docs/tls.md`` for what a Keep speaks on the wire.
"""

from donjon.tls.anchors import TrustAnchors
from donjon.tls.context import ClientAuth, ClientContext, HandshakeNotes, HostName, ServerContext, SpiffeIds
from donjon.tls.errors import (
    BrokenPipe,
    ConnectionReset,
    HandshakeFailed,
    InvalidSpiffeId,
    PeerIdentityMismatch,
    StreamClosed,
    StreamError,
    TLSConfigError,
    TLSError,
    WouldBlock,
)
from donjon.tls.identity import UNATTESTED, Credentials, Identity, self_signed
from donjon.tls.sockets import Listener, Prot, connect
from donjon.tls.spiffe import SpiffeId, check_spiffe_id, parse_spiffe_id, spiffe_id_of
from donjon.tls.stream import Stream, TCPStream, TLSInfo, TLSStream

__all__ = [
    "UNATTESTED",
    "BrokenPipe",
    "ClientAuth",
    "ClientContext",
    "ConnectionReset",
    "Credentials",
    "HandshakeFailed",
    "HandshakeNotes",
    "HostName",
    "Identity",
    "InvalidSpiffeId",
    "Listener",
    "PeerIdentityMismatch",
    "Prot",
    "ServerContext",
    "SpiffeId",
    "SpiffeIds",
    "Stream",
    "StreamClosed",
    "StreamError",
    "TCPStream",
    "TLSConfigError",
    "TLSError",
    "TLSInfo",
    "TLSStream",
    "TrustAnchors",
    "WouldBlock",
    "check_spiffe_id",
    "connect",
    "parse_spiffe_id",
    "self_signed",
    "spiffe_id_of",
]
