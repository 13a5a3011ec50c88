"""TLS contexts for a Keep's sockets: TLS 1.3 only, identity from :class:`Identity`.

Wire policy, for every socket with ``prot = "tls"``:

* TLS 1.3 and nothing else (minimum and maximum version both 1.3).
* Key exchange groups: OpenSSL's defaults, untouched. The OpenSSL that ``cryptography``
  bundles (3.5 and later) lists the hybrid post-quantum group ``X25519MLKEM768`` first and
  falls back to classical groups (X25519, P-256...) for peers that lack it. pyOpenSSL has no
  call to set groups; :meth:`OpenSSL.SSL.Connection.get_group_name` reports the one negotiated.
* No session resumption on the server (no tickets, no cache): every connection performs a full
  handshake and so presents, and checks, the current certificates.
* Peer verification (a client always; a server when client authentication is configured):
  the peer's chain must reach one of the configured :class:`TrustAnchors` (OpenSSL builds and
  checks the chain, including validity dates and the EKU for its role), then its leaf must
  name the expected peer — a host name (RFC 6125, :mod:`donjon.tls.hostname`) or one of a set of
  SPIFFE IDs (:mod:`donjon.tls.spiffe`). A peer named by SPIFFE ID (a client's
  :class:`SpiffeIds`, a server's :class:`ClientAuth`) is held to the relying party's rules,
  :func:`donjon.peer.check_identity` (docs/keep.md "What a relying party checks"): an
  X.509-SVID, one of the named IDs if any are named, the EKU for its role, and an identity the
  Steward marked simulated (``/sim/``) or issued without evidence (``/unattested/``) only when
  the configuration names that exact ID. A peer named by host name is refused too when its
  certificate carries such a marked SPIFFE ID, unless the entry allows it (``allow_simulated``,
  ``allow_unattested``): a host name cannot tell a non-TEE host from the real one, the marker
  can (issue 9, finding 3). Both checks run inside the handshake's verify
  callback, so a mismatch aborts the handshake itself: no application byte is ever
  exchanged with the wrong peer. (The alert sent is ``internal_error``, not ``bad_certificate``:
  pyOpenSSL's callback cannot set the X.509 error code; our log line carries the real reason.)
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from OpenSSL import SSL, crypto

from donjon.tls.anchors import FOREIGN_ISSUER_ERRORS, TrustAnchors
from donjon.tls.errors import InvalidSpiffeId, PeerIdentityMismatch, TLSConfigError
from donjon.tls.hostname import check_host_name, normalise_host
from donjon.tls.identity import Credentials, Identity
from donjon.tls.spiffe import (
    SIMULATED_PREFIX,
    UNATTESTED_PREFIX,
    SpiffeId,
    parse_spiffe_id,
    spiffe_id_of,
)

__all__ = [
    "MAX_VERIFY_DEPTH",
    "ClientAuth",
    "ClientContext",
    "ExpectedPeer",
    "HandshakeNotes",
    "HostName",
    "ServerContext",
    "SpiffeIds",
]

#: Leaf, Steward CA, perhaps one or two intermediates above it.
MAX_VERIFY_DEPTH = 4

# OpenSSL's X509_V_ERR_* codes (include/openssl/x509_vfy.h) worth a readable reason in a log line.
_X509_ERRORS = {
    2: "unable to get issuer certificate",
    4: "unable to decrypt certificate signature",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate not among the trust anchors",
    19: "self-signed certificate in chain not among the trust anchors",
    20: "unable to get local issuer certificate (chain does not reach a trust anchor)",
    21: "unable to verify the first certificate",
    22: "certificate chain too long",
    23: "certificate revoked",
    24: "invalid CA certificate",
    25: "path length constraint exceeded",
    26: "unsuitable certificate purpose (extended key usage)",
    27: "certificate not trusted",
    28: "certificate rejected",
}


def _foreign_reason(errnum: int, anchors: TrustAnchors) -> str | None:
    """'not issued by the CA in FILE' when another CA issued the peer's chain; else ``None``."""
    if anchors.system or errnum not in FOREIGN_ISSUER_ERRORS:
        return None
    where = (
        "the Steward CA this Keep pins" if anchors.source == "Steward CA" else f"the CA in {anchors.source}"
    )
    return f"not issued by {where} ({_X509_ERRORS[errnum]})"


@dataclass(frozen=True)
class HostName:
    """Expect the peer's certificate to name this host (DNS name or IP address).

    A certificate whose SPIFFE ID a Steward marked as issued on simulated evidence (``/sim/``)
    or without evidence (``/unattested/``) is refused unless ``allow_simulated`` /
    ``allow_unattested`` says otherwise.
    """

    name: str
    allow_simulated: bool = False
    allow_unattested: bool = False

    def __post_init__(self) -> None:
        normalise_host(self.name)  # raises TLSConfigError on a malformed name


@dataclass(frozen=True)
class SpiffeIds:
    """Expect the peer's certificate to carry one of these SPIFFE IDs."""

    ids: frozenset[SpiffeId]

    def __post_init__(self) -> None:
        if not self.ids:
            raise TLSConfigError("peer identity", "an empty set of SPIFFE IDs admits nobody")

    @classmethod
    def of(cls, ids: Iterable[SpiffeId]) -> SpiffeIds:
        return cls(frozenset(ids))


ExpectedPeer = HostName | SpiffeIds
Role = Literal["server", "client"]


@dataclass(frozen=True)
class ClientAuth:
    """Client authentication on a listening socket.

    A client must present a certificate chaining to ``anchors`` (explicit certificates,
    normally the Steward CA) that is an X.509-SVID and, when ``spiffe_ids`` is not empty,
    carries one of them. A simulated or unattested identity passes only if named there.
    """

    anchors: TrustAnchors
    spiffe_ids: frozenset[SpiffeId] = frozenset()

    def __post_init__(self) -> None:
        if self.anchors.system:
            raise TLSConfigError("client authentication", "system roots cannot authenticate workloads")


@dataclass
class HandshakeNotes:
    """What the verify callback learned about one connection's peer (mutable, per connection)."""

    failure: str | None = None
    peer_spiffe_id: SpiffeId | None = None
    peer_subject: str | None = field(default=None)


def _check_workload(leaf: x509.Certificate, ids: frozenset[SpiffeId], role: Role) -> SpiffeId:
    """The relying party's identity rules on a leaf whose chain OpenSSL has verified."""
    # Here, not at the top: donjon.peer imports donjon.tls.spiffe (an import cycle otherwise).
    from donjon.peer import PeerExpectation, PeerRefused, check_identity

    try:
        return check_identity(leaf, PeerExpectation(spiffe_ids=ids, role=role)).spiffe_id
    except PeerRefused as e:
        raise PeerIdentityMismatch(f"{e.check}: {e.reason}", expected=e.expected, got=e.got) from e


def _check_not_marked(leaf: x509.Certificate, expected: HostName) -> None:
    """Refuse a host-named peer whose certificate a Steward marked ``/sim/`` or ``/unattested/``."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        try:
            spiffe = parse_spiffe_id(uri)
        except InvalidSpiffeId:
            continue  # not a SPIFFE ID, so no marker of a Steward's
        if spiffe.path.startswith(SIMULATED_PREFIX) and not expected.allow_simulated:
            raise PeerIdentityMismatch(
                f"the certificate names {expected.name}, but its SPIFFE ID {spiffe} says it was issued "
                "on SIMULATED evidence, not a TEE (allow_simulated = true on the connect entry accepts it)"
            )
        if spiffe.path.startswith(UNATTESTED_PREFIX) and not expected.allow_unattested:
            raise PeerIdentityMismatch(
                f"the certificate names {expected.name}, but its SPIFFE ID {spiffe} says it was issued "
                "WITHOUT attestation (allow_unattested = true on the connect entry accepts it)"
            )


def _check_peer(expected: ExpectedPeer | ClientAuth | None, cert: crypto.X509, notes: HandshakeNotes) -> None:
    leaf = cert.to_cryptography()
    notes.peer_subject = leaf.subject.rfc4514_string() or None
    if isinstance(expected, HostName):
        check_host_name(leaf, expected.name)
        _check_not_marked(leaf, expected)
        return
    if isinstance(expected, SpiffeIds):  # a client checking a peer Keep, the server
        notes.peer_spiffe_id = _check_workload(leaf, expected.ids, "server")
        return
    if isinstance(expected, ClientAuth):  # a server checking its client
        notes.peer_spiffe_id = _check_workload(leaf, expected.spiffe_ids, "client")
        return
    try:  # pragma: no cover - every context names whom it expects; record the ID for the log
        notes.peer_spiffe_id = spiffe_id_of(leaf)
    except PeerIdentityMismatch:  # pragma: no cover
        notes.peer_spiffe_id = None


def _verify_callback(
    expected: ExpectedPeer | ClientAuth | None, anchors: TrustAnchors
) -> Callable[[SSL.Connection, crypto.X509, int, int, int], bool]:
    def callback(conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
        notes = conn.get_app_data()
        if not isinstance(notes, HandshakeNotes):  # pragma: no cover - every connection gets notes
            return False
        if not ok:
            if notes.failure is None:
                reason = _foreign_reason(errnum, anchors) or _X509_ERRORS.get(
                    errnum, f"X.509 verification error {errnum}"
                )
                notes.failure = f"peer certificate at depth {depth}: {reason}"
            return False
        if depth != 0:
            return True
        try:
            _check_peer(expected, cert, notes)
        except (PeerIdentityMismatch, TLSConfigError) as e:
            if notes.failure is None:
                notes.failure = f"peer certificate: {e}"
            return False
        except Exception as e:
            # The certificate is the peer's: whatever it makes a parser raise is a refusal, not
            # a crash. (An exception escaping this callback would also be re-raised by pyOpenSSL
            # on whichever connection of this context next reports an error.)
            if notes.failure is None:
                notes.failure = f"peer certificate unreadable: {type(e).__name__}: {e}"[:300]
            return False
        return True

    return callback


def _tls13_only(context: SSL.Context) -> None:
    context.set_min_proto_version(SSL.TLS1_3_VERSION)
    context.set_max_proto_version(SSL.TLS1_3_VERSION)
    context.set_verify_depth(MAX_VERIFY_DEPTH)


def _present(context: SSL.Context, credentials: Credentials) -> None:
    context.use_certificate(credentials.leaf)
    for cert in credentials.chain[1:]:
        context.add_extra_chain_cert(cert)
    context.use_privatekey(credentials.key)
    context.check_privatekey()


class _Cached:
    """An ``SSL.Context`` rebuilt whenever the identity's generation moves on."""

    def __init__(self, identity: Identity | None) -> None:
        self._identity = identity
        self._lock = threading.Lock()
        self._built: tuple[int, Credentials | None, SSL.Context] | None = None

    def get(
        self, build: Callable[[Credentials | None], SSL.Context]
    ) -> tuple[Credentials | None, SSL.Context]:
        if self._identity is None:
            generation, credentials = -1, None
        else:
            generation, credentials = self._identity.current()
        with self._lock:
            if self._built is None or self._built[0] != generation:
                self._built = (generation, credentials, build(credentials))
            return self._built[1], self._built[2]


class ServerContext:
    """Wraps accepted sockets as TLS 1.3 servers presenting the Keep's current identity."""

    def __init__(self, identity: Identity, *, client_auth: ClientAuth | None = None) -> None:
        self.identity = identity
        self.client_auth = client_auth
        self._cache = _Cached(identity)
        self._build(identity.credentials)  # fail now, not on the first connection

    def _build(self, credentials: Credentials | None) -> SSL.Context:
        if credentials is None:  # pragma: no cover - a server always has an identity
            raise TLSConfigError("server identity", "a TLS server needs credentials")
        context = SSL.Context(SSL.TLS_METHOD)
        _tls13_only(context)
        context.set_options(SSL.OP_NO_TICKET)
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        try:
            _present(context, credentials)
        except SSL.Error as e:
            raise TLSConfigError("server identity", f"OpenSSL refused the certificate or key: {e}") from e
        if self.client_auth is not None:
            self.client_auth.anchors.install(context)
            for cert in self.client_auth.anchors.certificates:
                context.add_client_ca(cert)
            context.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                _verify_callback(self.client_auth, self.client_auth.anchors),
            )
        return context

    def wrap(self, sock: socket.socket) -> tuple[SSL.Connection, Credentials, HandshakeNotes]:
        """A server-side connection over the accepted ``sock``; no I/O happens yet."""
        credentials, context = self._cache.get(self._build)
        if credentials is None:  # pragma: no cover - the constructor checked
            raise TLSConfigError("server identity", "a TLS server needs credentials")
        conn = SSL.Connection(context, sock)
        conn.set_accept_state()
        notes = HandshakeNotes()
        conn.set_app_data(notes)
        return conn, credentials, notes


class ClientContext:
    """Wraps connected sockets as TLS 1.3 clients that verify the peer.

    ``peer`` is a :class:`HostName` (checked against the certificate's DNS or IP SANs and sent
    as SNI) or :class:`SpiffeIds` (for a peer Keep). With ``identity``, the client presents it
    when the server asks for a certificate (mutual TLS between Keeps).
    """

    def __init__(
        self, anchors: TrustAnchors, peer: ExpectedPeer, *, identity: Identity | None = None
    ) -> None:
        self.anchors = anchors
        self.peer = peer
        self.identity = identity
        self._cache = _Cached(identity)
        self._build(identity.credentials if identity is not None else None)

    def _build(self, credentials: Credentials | None) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        _tls13_only(context)
        if credentials is not None:
            try:
                _present(context, credentials)
            except SSL.Error as e:
                raise TLSConfigError("client identity", f"OpenSSL refused the certificate or key: {e}") from e
        self.anchors.install(context)
        context.set_verify(SSL.VERIFY_PEER, _verify_callback(self.peer, self.anchors))
        return context

    def wrap(self, sock: socket.socket) -> tuple[SSL.Connection, Credentials | None, HandshakeNotes]:
        """A client-side connection over the connected ``sock``; no I/O happens yet."""
        credentials, context = self._cache.get(self._build)
        conn = SSL.Connection(context, sock)
        conn.set_connect_state()
        if isinstance(self.peer, HostName):
            target = normalise_host(self.peer.name)
            if isinstance(target, str):  # RFC 6066 section 3: no SNI for address literals
                conn.set_tlsext_host_name(target.encode("ascii"))
        notes = HandshakeNotes()
        conn.set_app_data(notes)
        return conn, credentials, notes
