"""Exceptions of ``donjon.tls``: one root, one subclass per cause.

Two families. Configuration errors (:class:`TLSConfigError`, :class:`InvalidSpiffeId`,
:class:`PeerIdentityMismatch`) carry what was wrong. Stream errors (:class:`StreamError`
and below) are what a socket operation on a guest's fd can end in; each carries the
POSIX ``errno`` a WASI layer reports to the guest (``EAGAIN``, ``ECONNRESET``, ``EPIPE``...),
so the mapping lives here, once, and not in the WASI host. Foreign errors (``OpenSSL.SSL.Error``,
``OSError``) are wrapped ``from e`` at the stream's boundary, never leaked.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "BrokenPipe",
    "ConnectionReset",
    "HandshakeFailed",
    "InvalidSpiffeId",
    "PeerIdentityMismatch",
    "StreamClosed",
    "StreamError",
    "TLSConfigError",
    "TLSError",
    "WouldBlock",
]


class TLSError(Exception):
    """Root of every error ``donjon.tls`` raises."""


class TLSConfigError(TLSError):
    """A TLS setting cannot be used: unreadable trust anchors, a key that does not match, ..."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


class InvalidSpiffeId(TLSError):
    """A string is not a SPIFFE ID as the SPIFFE-ID specification (section 2) defines one."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"not a SPIFFE ID ({reason}): {value[:200]!r}")


class PeerIdentityMismatch(TLSError):
    """The peer's certificate chains to a trust anchor but names someone else."""

    def __init__(self, reason: str, *, expected: object = None, got: object = None) -> None:
        self.reason = reason
        self.expected = expected
        self.got = got
        text = reason
        if expected is not None or got is not None:
            text += f" (expected {expected}, got {got})"
        super().__init__(text)


class StreamError(TLSError):
    """A socket operation failed; ``errno`` is the POSIX error a guest should see."""

    errno: int = _errno.EIO

    def __init__(self, reason: str, *, peer: str = "", errno: int | None = None) -> None:
        self.reason = reason
        self.peer = peer
        if errno is not None:
            self.errno = errno
        super().__init__(f"{peer}: {reason}" if peer else reason)


class WouldBlock(StreamError):
    """Nothing can be done without waiting: poll the socket (see ``wants_read``/``wants_write``)."""

    errno = _errno.EAGAIN


class ConnectionReset(StreamError):
    """The connection is gone: reset by the peer, closed without TLS ``close_notify``, or a TLS alert."""

    errno = _errno.ECONNRESET


class HandshakeFailed(ConnectionReset):
    """The TLS handshake failed (bad certificate, wrong protocol, timeout); the connection is closed."""


class BrokenPipe(StreamError):
    """Writing is impossible: our side shut down writing, or the peer stopped reading for good."""

    errno = _errno.EPIPE


class StreamClosed(StreamError):
    """The stream was closed by its owner; using it again is a bug in the caller."""

    errno = _errno.EBADF
