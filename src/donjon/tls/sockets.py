"""Sockets a workload declares: ``listen`` and ``connect`` entries, for TCP and TLS alike.

:class:`Listener` is a non-blocking listening socket whose :meth:`Listener.accept` returns a
:class:`~donjon.tls.stream.Stream` (a :class:`TLSStream` for ``prot = "tls"``, a
:class:`TCPStream` for ``"tcp"``); :func:`connect` opens an outgoing one. The WASI host puts
these objects in its fd table and needs nothing else from this package.
"""

from __future__ import annotations

import errno
import select
import socket
from typing import Literal

from donjon.tls.context import ClientContext, ServerContext
from donjon.tls.errors import StreamClosed, StreamError, TLSConfigError, WouldBlock
from donjon.tls.stream import DEFAULT_HANDSHAKE_TIMEOUT, Stream, TCPStream, TLSStream, format_peer

__all__ = ["DEFAULT_BACKLOG", "Listener", "Prot", "bind_address", "connect"]

#: Pending connections the kernel queues for a listening socket.
DEFAULT_BACKLOG = 128

Prot = Literal["tcp", "tls"]


class Listener:
    """A non-blocking listening socket that accepts :class:`Stream` objects."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        prot: Prot,
        server: ServerContext | None = None,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        if prot == "tls" and server is None:
            raise TLSConfigError("listen", 'prot = "tls" needs a server context')
        if prot == "tcp" and server is not None:
            raise TLSConfigError("listen", 'prot = "tcp" takes no server context')
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self.prot = prot
        self.server = server
        self.handshake_timeout = handshake_timeout
        self.address = format_peer(sock.getsockname())
        self._closed = False

    @classmethod
    def bind(
        cls,
        addr: str,
        port: int,
        *,
        prot: Prot,
        server: ServerContext | None = None,
        backlog: int = DEFAULT_BACKLOG,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> Listener:
        """Listen on ``addr``:``port`` (``"::"`` listens on IPv6 and IPv4 where the OS allows)."""
        return cls.listen_on(
            bind_address(addr, port),
            prot=prot,
            server=server,
            backlog=backlog,
            handshake_timeout=handshake_timeout,
        )

    @classmethod
    def listen_on(
        cls,
        sock: socket.socket,
        *,
        prot: Prot,
        server: ServerContext | None = None,
        backlog: int = DEFAULT_BACKLOG,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> Listener:
        """Listen on ``sock``, bound (or already listening) by :func:`bind_address`; the listener
        owns it from here (it is closed on failure too)."""
        try:
            sock.listen(backlog)
            return cls(sock, prot=prot, server=server, handshake_timeout=handshake_timeout)
        except OSError as e:
            where = format_peer(sock.getsockname()) if sock.fileno() >= 0 else "socket"
            sock.close()
            raise TLSConfigError(f"listen {where}", e.strerror or str(e)) from e
        except BaseException:
            sock.close()
            raise

    def __repr__(self) -> str:
        return f"<Listener {self.prot} {self.address}{' closed' if self._closed else ''}>"

    def fileno(self) -> int:
        return self._fd

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    @property
    def closed(self) -> bool:
        return self._closed

    def accept(self) -> Stream:
        """The next pending connection as a stream; ``WouldBlock`` when there is none.

        A TLS stream starts its handshake here without waiting; the rest happens as the
        guest uses the stream, so a silent client holds up nobody.
        """
        if self._closed:
            raise StreamClosed("listener is closed", peer=self.address)
        try:
            sock, address = self._sock.accept()
        except BlockingIOError as e:
            raise WouldBlock("no pending connection", peer=self.address) from e
        except OSError as e:
            # ECONNABORTED: the client gave up while queued; like Linux, report it to the caller.
            raise StreamError(e.strerror or str(e), peer=self.address, errno=e.errno or errno.EIO) from e
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = format_peer(address)
            if self.server is None:
                return TCPStream(sock, peer=peer)
            stream = TLSStream.server(sock, self.server, peer=peer, handshake_timeout=self.handshake_timeout)
        except BaseException:
            sock.close()
            raise
        stream.progress()
        return stream

    def readable(self) -> bool:
        """Would :meth:`accept` return without ``WouldBlock``?"""
        if self._closed:
            return True
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def bind_address(addr: str, port: int, *, backlog: int | None = None) -> socket.socket:
    """A TCP socket bound to ``addr``:``port``, listening if ``backlog`` is given; wrap it with
    :meth:`Listener.listen_on`.

    A Keep does this before it attests, so that a port already in use fails at once instead of
    after a certificate was issued. It listens at once too: on Linux two sockets with
    ``SO_REUSEADDR`` may both *bind* a port nobody listens on yet, so only listening claims it.
    The kernel then queues connections until the guest accepts them (no TLS byte is sent before
    that). ``"::"`` binds IPv6 and IPv4 where the OS allows. Errors name the address as
    ``[::]:443``.
    """
    where = format_peer((addr, port))
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise TLSConfigError(f"listen {where}", f"cannot resolve: {e.strerror}") from e
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        if backlog is not None:
            sock.listen(backlog)
    except OSError as e:
        sock.close()
        raise TLSConfigError(f"listen {where}", e.strerror or str(e)) from e
    return sock


def connect(
    host: str,
    port: int,
    *,
    prot: Prot,
    client: ClientContext | None = None,
    timeout: float = 10.0,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
) -> Stream:
    """Open a ``connect`` entry: TCP connect (waits at most ``timeout``), then a non-blocking stream.

    The TCP connection is made before the guest starts, as Enarx does; the TLS handshake,
    like a server's, proceeds as the guest uses the stream.
    """
    if prot == "tls" and client is None:
        raise TLSConfigError("connect", 'prot = "tls" needs a client context')
    if prot == "tcp" and client is not None:
        raise TLSConfigError("connect", 'prot = "tcp" takes no client context')
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise StreamError(
            f"cannot connect to {format_peer((host, port))}: {e.strerror or e}",
            errno=e.errno or errno.ECONNREFUSED,
        ) from e
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        address = format_peer(sock.getpeername())
        peer = address if address.startswith((host, f"[{host}]")) else f"{host} ({address})"
        if client is None:
            return TCPStream(sock, peer=peer)
        stream = TLSStream.client(sock, client, peer=peer, handshake_timeout=handshake_timeout)
    except BaseException:
        sock.close()
        raise
    stream.progress()
    return stream
