"""The workload's sockets: ``listen`` and ``connect`` entries opened before the guest starts.

Every socket is opened by the runtime, not by the guest: a port that cannot be bound or a peer
that cannot be reached stops the run before the guest runs (:class:`SocketUnavailable`), as in
Enarx. TLS entries get the Keep's :class:`~donjon.tls.Identity` — the single place the
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
    from cryptography import x509

    from donjon.tls import Identity, Listener, Stream

__all__ = ["OpenSockets", "has_sockets", "open_sockets"]


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


def open_sockets(
    config: WorkloadConfig,
    base_dir: Path,
    *,
    identity: Identity | None = None,
    steward_ca: Sequence[x509.Certificate] = (),
) -> OpenSockets:
    """Bind every ``listen`` entry and connect every ``connect`` entry of ``config``.

    ``identity`` is the Keep's TLS identity; ``None`` makes a self-signed, unattested one (only
    if some entry speaks TLS). ``steward_ca`` is the Steward's CA (``client_auth``/``trust =
    "steward"`` need it). Raises :class:`SocketUnavailable`, after closing what was opened.
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
                    opened.by_index[index] = open_listen(entry, identity, steward_ca)
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
