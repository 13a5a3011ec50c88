"""The workload's sockets: ``listen`` and ``connect`` entries opened before the guest starts.

Every socket is opened by the runtime, not by the guest: a port that cannot be bound or a peer
that cannot be reached stops the run before the guest runs (:class:`SocketUnavailable`), as in
Enarx. ``donjon run`` opens the ``listen`` ports even earlier, before the Keep attests
(:func:`bind_listeners`): a port clash then fails in milliseconds and costs no certificate.
Connections that arrive meanwhile wait in the kernel's queue; nothing is accepted, so no TLS
byte is sent, before the Keep has its identity (a refused Keep closes them unanswered).
``connect`` entries are connected after attestation (their peers, often other Keeps, get that
long to come up, and a TLS client needs the identity anyway).

TLS entries get the Keep's :class:`~donjon.tls.Identity` — the single place the
certificate and key come from. Without one (no attestation yet) it is a fresh self-signed
identity, and every TLS log line says the Keep is UNATTESTED; an attested identity is passed in
by the caller and nothing here changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.config.model import ConnectEntry, ListenEntry, WorkloadConfig
from donjon.runtime.errors import SocketUnavailable

if TYPE_CHECKING:
    import socket

    from cryptography import x509

    from donjon.tls import Identity, Listener, Stream

__all__ = ["BoundListeners", "OpenSockets", "bind_listeners", "has_sockets", "open_sockets"]


def has_sockets(config: WorkloadConfig) -> bool:
    return any(isinstance(entry, ListenEntry | ConnectEntry) for entry in config.files)


class OpenSockets:
    """The opened sockets by ``files`` index; :meth:`close` releases whatever the guest did not get."""

    def __init__(self) -> None:
        self.by_index: dict[int, Listener | Stream] = {}

    def close(self) -> None:
        """Close every socket (idempotent: the guest's host may already have closed them)."""
        for obj in self.by_index.values():
            with contextlib.suppress(Exception):
                obj.close()

    def addresses(self) -> list[str]:
        """``name: prot addr`` for every listening socket, in ``files`` order (for the CLI's log)."""
        from donjon.tls import Listener

        return [f"{obj.prot} {obj.address}" for obj in self.by_index.values() if isinstance(obj, Listener)]


class BoundListeners:
    """The listening socket of each ``listen`` entry, opened before the Keep attested, by index.

    :func:`open_sockets` takes each one over; :meth:`close` releases whatever it did not take
    (idempotent), so the caller closes it in a ``finally`` whatever happened in between.
    """

    def __init__(self) -> None:
        self.by_index: dict[int, socket.socket] = {}

    def take(self, index: int) -> socket.socket | None:
        return self.by_index.pop(index, None)

    def close(self) -> None:
        for sock in self.by_index.values():
            sock.close()
        self.by_index.clear()


def bind_listeners(config: WorkloadConfig) -> BoundListeners:
    """Bind (and listen on) the address of every ``listen`` entry of ``config``; nothing accepts.

    Raises :class:`SocketUnavailable` naming the entry and the address (``[::]:443``), after
    closing what was bound. Needs no identity: a Keep calls it before it attests.
    """
    bound = BoundListeners()
    if not any(isinstance(entry, ListenEntry) for entry in config.files):
        return bound
    from donjon.tls import TLSConfigError
    from donjon.tls.sockets import DEFAULT_BACKLOG, bind_address

    try:
        for index, entry in enumerate(config.files):
            if isinstance(entry, ListenEntry):
                try:
                    bound.by_index[index] = bind_address(entry.addr, entry.port, backlog=DEFAULT_BACKLOG)
                except TLSConfigError as e:
                    raise SocketUnavailable(f'files[{index}] ("{entry.name}")', str(e)) from e
    except BaseException:
        bound.close()
        raise
    return bound


def open_sockets(
    config: WorkloadConfig,
    base_dir: Path,
    *,
    identity: Identity | None = None,
    steward_ca: Sequence[x509.Certificate] = (),
    bound: BoundListeners | None = None,
) -> OpenSockets:
    """Bind every ``listen`` entry and connect every ``connect`` entry of ``config``.

    ``identity`` is the Keep's TLS identity; ``None`` makes a self-signed, unattested one (only
    if some entry speaks TLS). ``steward_ca`` is the Steward's CA (``client_auth``/``trust =
    "steward"`` need it). ``bound`` holds ``listen`` sockets bound earlier (:func:`bind_listeners`);
    they are taken over, and the others bound here. Raises :class:`SocketUnavailable`, after
    closing what was opened.
    """
    from donjon.tls import StreamError, TLSConfigError, self_signed
    from donjon.tls.endpoints import open_connect, open_listen
    from donjon.tls.identity import Identity as IdentityClass

    opened = OpenSockets()
    try:
        for index, entry in enumerate(config.files):
            if not isinstance(entry, ListenEntry | ConnectEntry):
                continue
            if identity is None:  # no attestation: a fresh in-memory self-signed identity
                identity = IdentityClass(self_signed())
            what = f'files[{index}] ("{entry.name}")'
            try:
                if isinstance(entry, ListenEntry):
                    early = bound.take(index) if bound is not None else None
                    opened.by_index[index] = open_listen(entry, identity, steward_ca, bound=early)
                else:
                    opened.by_index[index] = open_connect(
                        entry, config_dir=base_dir, identity=identity, steward_ca=steward_ca
                    )
            except TLSConfigError as e:
                raise SocketUnavailable(what, str(e)) from e
            except StreamError as e:
                raise SocketUnavailable(what, e.reason) from e
    except BaseException:
        opened.close()
        raise
    return opened
