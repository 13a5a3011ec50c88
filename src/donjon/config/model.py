"""The parsed workload config: immutable values with every default filled in.

The shapes follow DESIGN.md "Workload config" (Enarx's ``Enarx.toml`` keys) plus
Donjon's additions, documented in docs/run.md: ``kind = "dir"`` entries,
``client_auth``/``client_identity`` on ``listen``, ``trust``/``trust_file``/``peer_identity``/
``allow_simulated``/``allow_unattested`` on ``connect``, the top-level ``backends`` allow-list
``steward_ca`` and the ``[limits]`` table
(``donjon.config.limits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from donjon.config.limits import Limits

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_FILES",
    "DEFAULT_SECRETS_DIR",
    "RESERVED_ENV",
    "ConnectEntry",
    "DirEntry",
    "FileEntry",
    "Limits",
    "ListenEntry",
    "Protocol",
    "SecretEntry",
    "StdioEntry",
    "WorkloadConfig",
    "default_port",
]

Protocol = Literal["tls", "tcp"]
StdioKind = Literal["null", "stdin", "stdout", "stderr"]

#: Set by Donjon from ``files``; a config or ``--env`` cannot override them.
RESERVED_ENV: tuple[str, ...] = ("FD_COUNT", "FD_NAMES")

#: Every backend name a ``backends`` allow-list may hold (DESIGN.md "Parts", TEE backends).
BACKEND_NAMES: tuple[str, ...] = (
    "nil",
    "sim-snp",
    "sim-tdx",
    "snp",
    "tdx",
    "sgx",
    "cca",
    "azure-snp",
    "azure-tdx",
)


def default_port(prot: Protocol) -> int:
    """Enarx's default ports: 443 for TLS, 80 for plain TCP."""
    return 443 if prot == "tls" else 80


@dataclass(frozen=True)
class StdioEntry:
    """``null``, ``stdin``, ``stdout`` or ``stderr``; ``name`` defaults to the kind."""

    kind: StdioKind
    name: str


@dataclass(frozen=True)
class ListenEntry:
    """A listening socket (Enarx ``listen``), plus Donjon's TLS client authentication.

    ``client_auth`` is ``"none"`` or ``"steward"`` (require a peer certificate issued by
    the same Steward); ``client_identity`` optionally pins the peer's SPIFFE ID.
    """

    name: str
    addr: str
    port: int
    prot: Protocol
    client_auth: Literal["none", "steward"] = "none"
    client_identity: str | None = None
    kind: Literal["listen"] = "listen"


@dataclass(frozen=True)
class ConnectEntry:
    """An outgoing connection (Enarx ``connect``), plus Donjon's trust anchors.

    ``trust`` is ``None`` for plain TCP, else ``"system"`` (the system roots, the default),
    ``"steward"`` (the Steward's CA) or ``"file"`` (the PEM file ``trust_file``, relative to
    the config file). ``peer_identity``, when not empty, holds the SPIFFE IDs one of which the
    server's certificate must carry (a peer Keep); the server is then verified by SPIFFE ID
    instead of by ``host`` name. Sorted and without duplicates, so its spelling is no part of
    its meaning. ``allow_simulated`` / ``allow_unattested`` (host-name verification only) accept
    a server whose certificate a Steward marked ``/sim/`` / ``/unattested/``; by default such a
    server is refused, since the host name alone cannot tell it from the real one.
    """

    name: str
    host: str
    port: int
    prot: Protocol
    trust: Literal["system", "steward", "file"] | None = "system"
    trust_file: str | None = None
    peer_identity: tuple[str, ...] = ()
    allow_simulated: bool = False
    allow_unattested: bool = False
    kind: Literal["connect"] = "connect"


@dataclass(frozen=True)
class DirEntry:
    """A pre-opened directory (Donjon addition).

    ``path`` is the host path exactly as written (relative to the config file's directory;
    the runtime resolves it), ``guest_path`` what the guest sees, read-only unless ``writable``.
    """

    name: str
    path: str
    guest_path: str
    writable: bool = False
    kind: Literal["dir"] = "dir"


FileEntry = StdioEntry | ListenEntry | ConnectEntry | DirEntry

#: Where the guest sees its secrets unless ``secrets_dir`` says otherwise (docs/secrets.md).
DEFAULT_SECRETS_DIR = "/run/secrets"


@dataclass(frozen=True)
class SecretEntry:
    """``[[secrets]]`` (Donjon): a secret the Keep fetches from its Steward after attesting.

    The guest reads it as the file ``<secrets_dir>/<name>``; ``env`` also puts it in that
    environment variable (only when asked: environments leak into crash reports and child
    processes). Without ``optional`` a refusal stops the Keep before the guest starts.
    """

    name: str
    optional: bool = False
    env: str | None = None


#: With no config, or a config without ``[[files]]``: stdin, stdout, stderr (DESIGN.md).
DEFAULT_FILES: tuple[FileEntry, ...] = (
    StdioEntry("stdin", "stdin"),
    StdioEntry("stdout", "stdout"),
    StdioEntry("stderr", "stderr"),
)


@dataclass(frozen=True)
class WorkloadConfig:
    """A whole workload config; ``WorkloadConfig()`` is the config used when there is none.

    ``env`` keeps the user's order; ``backends`` is ``None`` when every backend is accepted.
    """

    steward: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[FileEntry, ...] = DEFAULT_FILES
    backends: tuple[str, ...] | None = None
    #: **Donjon**: the PEM file of the Steward's CA that the Keep pins, as written (relative to
    #: the config file's directory). Where the pin is read from, not what the workload is: it is
    #: not part of the workload digest (see docs/run.md "steward_ca").
    steward_ca: str | None = None
    #: Whether the guest gets ``FD_COUNT``/``FD_NAMES`` (Enarx's environment, DESIGN.md): always
    #: from a config file; ``False`` for a quick run without one (``donjon run app.wasm``), whose
    #: guest gets exactly the ``--env`` variables, as under wasmtime. Part of the workload digest
    #: when ``False`` (the guest sees another environment).
    fd_env: bool = True
    #: **Donjon**: the guest's resource bounds (``[limits]``), part of the workload digest.
    limits: Limits = field(default_factory=Limits)
    #: **Donjon**: the secrets to fetch after attesting (docs/secrets.md), and where the guest sees
    #: them: a read-only in-memory directory, pre-opened at :attr:`secrets_fd`.
    secrets: tuple[SecretEntry, ...] = ()
    secrets_dir: str = DEFAULT_SECRETS_DIR

    @property
    def secrets_fd(self) -> int | None:
        """The guest fd of the secrets directory: right after the leading stdio and ``dir`` entries.

        wasi-libc finds pre-opened directories by asking fd 3, 4, ... until the first fd that is
        not one (``__wasilibc_populate_preopens``), so the directory must come before any socket;
        the entries after it move up by one. ``None`` without secrets.
        """
        if not self.secrets:
            return None
        index = 0
        while index < len(self.files) and isinstance(self.files[index], StdioEntry | DirEntry):
            index += 1
        return index

    @property
    def fd_names(self) -> tuple[str, ...]:
        names = [entry.name for entry in self.files]
        at = self.secrets_fd
        if at is not None:
            names.insert(at, self.secrets_dir)
        return tuple(names)

    def guest_env(self) -> tuple[tuple[str, str], ...]:
        """The guest's whole environment: ``FD_COUNT``, ``FD_NAMES`` (unless ``fd_env`` is off),
        then the user's ``env``."""
        if not self.fd_env:
            return self.env
        names = self.fd_names
        return (("FD_COUNT", str(len(names))), ("FD_NAMES", ":".join(names)), *self.env)

    def guest_args(self) -> tuple[str, ...]:
        """argv: ``main.wasm`` (as in Enarx), then ``args``."""
        return ("main.wasm", *self.args)
