"""What the guest is given: the value types of the public contract (see notes/wasi-api.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from .memfs import MemoryEntry


@dataclass(frozen=True)
class Stdio:
    """A stdio-like fd: the host's stdin/stdout/stderr (from ``GuestSpec.stdio_fds``) or a null device."""

    kind: Literal["stdin", "stdout", "stderr", "null"]


@dataclass(frozen=True)
class PreopenDir:
    """A pre-opened directory, reported by ``fd_prestat_get``.

    ``host_path`` is absolute and already resolved by the caller; ``guest_path`` is the name the guest
    sees (e.g. ``"/"``). Read-only unless ``writable``: no write, create, unlink or rename rights.
    """

    host_path: Path
    guest_path: str
    writable: bool = False


@dataclass(frozen=True)
class MemoryDir:
    """A read-only pre-opened directory held in the host's memory (:mod:`donjon.wasi.memfs`).

    ``listing`` returns its files (name -> :class:`~donjon.wasi.memfs.MemoryEntry`) whenever the
    guest lists or opens one, so the host may change them while the guest runs. Nothing of it is
    ever a host file.
    """

    guest_path: str
    listing: Callable[[], Mapping[str, MemoryEntry]]


class HostStream(Protocol):
    """A non-blocking connected socket as the host drives it (``donjon.tls.stream.Stream``).

    Operations that would wait raise an exception with ``errno == EAGAIN``; every failure is an
    exception carrying the POSIX ``errno`` the guest should see (``donjon.tls.StreamError``).
    """

    peer: str

    def fileno(self) -> int: ...

    @property
    def deadline(self) -> float | None: ...

    def recv(self, n: int, *, peek: bool = False) -> bytes: ...

    def send(self, data: bytes | bytearray | memoryview) -> int: ...

    def shutdown(self, how: int) -> None: ...

    def close(self) -> None: ...

    def pending(self) -> int: ...

    @property
    def output_pending(self) -> bool: ...

    def progress(self) -> None: ...

    def readable(self) -> bool: ...

    def writable(self) -> bool: ...

    def poll_events(self, read: bool, write: bool) -> int: ...


class HostListener(Protocol):
    """A non-blocking listening socket (``donjon.tls.Listener``): ``accept`` gives a ``HostStream``."""

    def fileno(self) -> int: ...

    def accept(self) -> HostStream: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ListenSocket:
    """A listening socket the caller has already bound (``donjon.tls.Listener`` or anything shaped like it).

    The guest sees an fd of filetype ``SOCKET_STREAM`` on which ``sock_accept`` returns one new fd per
    connection. The host owns the listener from then on and closes it with the guest's fds.
    """

    listener: HostListener


@dataclass(frozen=True)
class ConnectedSocket:
    """An already-connected stream (``donjon.tls.TCPStream`` / ``TLSStream``, the ``Stream`` protocol).

    The guest sees an fd of filetype ``SOCKET_STREAM`` for ``sock_recv``/``sock_send``/``fd_read``/
    ``fd_write``. The host owns the stream from then on.
    """

    stream: HostStream


GuestFile = Stdio | PreopenDir | MemoryDir | ListenSocket | ConnectedSocket


@dataclass(frozen=True)
class GuestSpec:
    """Everything the guest gets; nothing else of the host is visible to it."""

    args: Sequence[str]  # argv including argv[0]
    env: Sequence[tuple[str, str]]  # the guest's WHOLE environment (nothing inherited)
    files: Sequence[GuestFile]  # entry i is fd i
    stdio_fds: tuple[int, int, int] = (0, 1, 2)  # host fds backing stdin/stdout/stderr
