"""Parse and validate ``Donjon.toml`` / ``Enarx.toml`` text into a :class:`WorkloadConfig`.

Pure: bytes in, a config (plus warnings) or a :class:`ConfigError` out. The rules are
DESIGN.md "Workload config": Enarx's keys with Enarx's defaults; an unknown key, top-level
or inside a ``[[files]]`` entry, is an error naming the key and its line with a did-you-mean
(Enarx's parser rejects unknown fields too, and a warning let a typo such as ``backend =``
silently drop the backend allow-list). Donjon's additions are documented in docs/run.md.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, cast
from urllib.parse import urlsplit

from donjon.config.errors import (
    ConfigError,
    ConfigSyntaxError,
    ConfigWarning,
    DuplicateName,
    InvalidValue,
    MissingKey,
    UnknownKey,
    type_name,
)
from donjon.config.limits import Limits, parse_limits
from donjon.config.locate import Path, SourceMap, scan
from donjon.config.model import (
    BACKEND_NAMES,
    DEFAULT_FILES,
    DEFAULT_SECRETS_DIR,
    RESERVED_ENV,
    ConnectEntry,
    DirEntry,
    FileEntry,
    ListenEntry,
    Protocol,
    SecretEntry,
    StdioEntry,
    WorkloadConfig,
    default_port,
)

__all__ = [
    "MAX_ARGS",
    "MAX_CONFIG_BYTES",
    "MAX_ENV",
    "MAX_FILES",
    "MAX_PEER_IDENTITIES",
    "MAX_STRING",
    "ParsedConfig",
    "parse_config",
]

#: Limits on untrusted input (STYLE.md 11). A config is a few hundred bytes in practice.
MAX_CONFIG_BYTES = 1 << 20
MAX_FILES = 1024
MAX_ARGS = 4096
MAX_ENV = 4096
MAX_STRING = 64 * 1024
_MAX_NAME = 255
_MAX_HOST = 253
#: A ``connect`` entry names a handful of acceptable peers, not a directory of them.
MAX_PEER_IDENTITIES = 64

TOP_LEVEL_KEYS = (
    "steward",
    "steward_ca",
    "args",
    "env",
    "files",
    "backends",
    "limits",
    "secrets",
    "secrets_dir",
)
_SECRET_KEYS = ("name", "optional", "env")
#: A workload asks for a handful of secrets.
MAX_SECRETS = 64
_SECRET_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")

_FILE_KEYS: dict[str, tuple[str, ...]] = {
    "null": ("kind", "name"),
    "stdin": ("kind", "name"),
    "stdout": ("kind", "name"),
    "stderr": ("kind", "name"),
    "listen": ("kind", "name", "addr", "port", "prot", "client_auth", "client_identity"),
    "connect": (
        "kind",
        "host",
        "name",
        "port",
        "prot",
        "trust",
        "trust_file",
        "peer_identity",
        "allow_simulated",
        "allow_unattested",
    ),
    "dir": ("kind", "name", "path", "guest_path", "writable"),
}

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$|\s*\(at end of document\)$")


@dataclass(frozen=True)
class ParsedConfig:
    """A validated config and the warnings met on the way (unknown top-level keys)."""

    config: WorkloadConfig
    warnings: tuple[ConfigWarning, ...] = ()


def parse_config(source: bytes | str, *, origin: str = "Donjon.toml") -> ParsedConfig:
    """Parse ``source``; ``origin`` (usually the file name) prefixes every message."""
    raw_size = len(source.encode() if isinstance(source, str) else source)
    if raw_size > MAX_CONFIG_BYTES:
        raise ConfigSyntaxError("", f"config is larger than the {MAX_CONFIG_BYTES}-byte limit", origin=origin)
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError as e:
            bad_line = source[: e.start].count(b"\n") + 1
            raise ConfigSyntaxError("", "config is not valid UTF-8", line=bad_line, origin=origin) from e
    else:
        text = source
    import tomllib  # here, not at the top: a run without a config should not pay for it

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        match = _TOML_POSITION.search(message)
        if match and match.group(1):
            line: int | None = int(match.group(1))
        else:  # "at end of document"
            line = text.count("\n") + 1 if match else None
        reason = message[: match.start()] if match else message
        raise ConfigSyntaxError("", f"not valid TOML: {reason}", line=line, origin=origin) from e
    try:
        source_map = scan(text)
    except (ValueError, IndexError):  # pragma: no cover - the scanner only sees valid TOML
        # Line numbers are a courtesy: never let the scanner turn a config error into a crash.
        source_map = SourceMap()
    return _Validator(source_map, origin).config(document)


class _Validator:
    def __init__(self, source_map: SourceMap, origin: str) -> None:
        self.map = source_map
        self.origin = origin
        self.warnings: list[ConfigWarning] = []

    # -- errors ------------------------------------------------------------------------

    def fail(self, kind: type[ConfigError], path: Path, reason: str) -> NoReturn:
        raise kind(_render_path(path), reason, line=self.map.line(path), origin=self.origin)

    def string(self, value: object, path: Path, *, limit: int = MAX_STRING, empty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(InvalidValue, path, f"must be a string, got {type_name(value)}")
        if not value and not empty:
            self.fail(InvalidValue, path, "must not be empty")
        if len(value) > limit:
            self.fail(InvalidValue, path, f"is {len(value)} characters long, more than {limit}")
        if "\x00" in value:
            self.fail(InvalidValue, path, "must not contain a NUL character")
        return value

    def choice(self, value: object, path: Path, choices: tuple[str, ...]) -> str:
        text = self.string(value, path)
        if text not in choices:
            wanted = ", ".join(f'"{c}"' for c in choices)
            self.fail(InvalidValue, path, f"must be one of {wanted}, got {text!r}")
        return text

    # -- the document ------------------------------------------------------------------

    def config(self, document: Mapping[str, Any]) -> ParsedConfig:
        for key in document:
            if key not in TOP_LEVEL_KEYS:
                self.fail(UnknownKey, (key,), "unknown top-level key" + _did_you_mean(key, TOP_LEVEL_KEYS))
        steward = self.steward(document["steward"]) if "steward" in document else None
        args = self.args(document.get("args", []))
        env = self.env(document.get("env", {}))
        files = self.files(document.get("files", []))
        backends = self.backends(document["backends"]) if "backends" in document else None
        steward_ca = self.steward_ca(document["steward_ca"]) if "steward_ca" in document else None
        limits = self.limits(document["limits"]) if "limits" in document else Limits()
        secrets = self.secrets(document.get("secrets", []), env)
        secrets_dir = self.secrets_dir(document.get("secrets_dir", DEFAULT_SECRETS_DIR))
        config = WorkloadConfig(
            steward=steward,
            args=args,
            env=env,
            files=files,
            backends=backends,
            steward_ca=steward_ca,
            limits=limits,
            secrets=secrets,
            secrets_dir=secrets_dir,
        )
        if secrets:
            at = config.secrets_fd
            assert at is not None
            if at < 3:
                self.fail(
                    InvalidValue,
                    ("secrets",),
                    "secrets need files[0..2] to be stdio or dir entries: the guest finds pre-opened "
                    "directories from fd 3 on, before any socket",
                )
            if secrets_dir in (entry.name for entry in files):
                self.fail(
                    DuplicateName, ("secrets_dir",), f"{secrets_dir!r} is also the name of a [[files]] entry"
                )
        return ParsedConfig(config, tuple(self.warnings))

    def secrets(self, value: object, env: tuple[tuple[str, str], ...]) -> tuple[SecretEntry, ...]:
        """``[[secrets]]`` (Donjon, docs/secrets.md): name, optional, env."""
        if not isinstance(value, list):
            self.fail(
                InvalidValue,
                ("secrets",),
                f"must be an array of tables ([[secrets]]), got {type_name(value)}",
            )
        if len(value) > MAX_SECRETS:
            self.fail(InvalidValue, ("secrets",), f"has {len(value)} entries, more than {MAX_SECRETS}")
        out: list[SecretEntry] = []
        taken_env = {key for key, _ in env}
        for index, item in enumerate(value):
            here: Path = ("secrets", index)
            if not isinstance(item, dict):
                self.fail(InvalidValue, here, f"must be a table, got {type_name(item)}")
            for key in item:
                if key not in _SECRET_KEYS:
                    self.fail(UnknownKey, (*here, key), "unknown key" + _did_you_mean(key, _SECRET_KEYS))
            if "name" not in item:
                self.fail(MissingKey, here, 'needs a "name" (the secret\'s name at the Steward)')
            name = self.string(item["name"], (*here, "name"), limit=128)
            if not _SECRET_NAME.fullmatch(name) or not name.strip("."):
                self.fail(
                    InvalidValue,
                    (*here, "name"),
                    "must be 1 to 128 of A-Z a-z 0-9 . _ - (it is a file name in secrets_dir), not only dots",
                )
            if name in (e.name for e in out):
                self.fail(DuplicateName, (*here, "name"), f"secret {name!r} is listed twice")
            optional = item.get("optional", False)
            if not isinstance(optional, bool):
                self.fail(
                    InvalidValue, (*here, "optional"), f"must be true or false, got {type_name(optional)}"
                )
            variable = None
            if "env" in item:
                variable = self.string(item["env"], (*here, "env"), limit=255)
                if "=" in variable or variable in RESERVED_ENV:
                    self.fail(
                        InvalidValue, (*here, "env"), f"{variable!r} cannot be an environment variable here"
                    )
                if variable in taken_env:
                    self.fail(
                        DuplicateName, (*here, "env"), f"{variable} is already set (env or another secret)"
                    )
                taken_env.add(variable)
            out.append(SecretEntry(name, optional, variable))
        return tuple(out)

    def secrets_dir(self, value: object) -> str:
        path = self.string(value, ("secrets_dir",), limit=4096)
        if not path.startswith("/") or ":" in path:
            self.fail(InvalidValue, ("secrets_dir",), "must be an absolute guest path without ':'")
        return path

    def steward(self, value: object) -> str:
        url = self.string(value, ("steward",), limit=2048)
        if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
            self.fail(InvalidValue, ("steward",), "must be a URL without whitespace or control characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError as e:
            self.fail(InvalidValue, ("steward",), f"is not a valid URL: {e}")
        if parts.scheme != "https" or not parts.hostname:
            self.fail(InvalidValue, ("steward",), f"must be an https:// URL with a host, got {url!r}")
        return url

    def steward_ca(self, value: object) -> str:
        """Donjon: the Steward CA's PEM file, relative to the config file (read by the Keep)."""
        return self.string(value, ("steward_ca",), limit=4096)

    def limits(self, value: object) -> Limits:
        """Donjon: the ``[limits]`` table (``donjon.config.limits``)."""
        return parse_limits(value, self.fail)

    def args(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(InvalidValue, ("args",), f"must be a list of strings, got {type_name(value)}")
        if len(value) > MAX_ARGS:
            self.fail(InvalidValue, ("args",), f"has {len(value)} entries, more than {MAX_ARGS}")
        return tuple(self.string(arg, ("args", i), empty=True) for i, arg in enumerate(value))

    def env(self, value: object) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            self.fail(InvalidValue, ("env",), f"must be a table of strings, got {type_name(value)}")
        if len(value) > MAX_ENV:
            self.fail(InvalidValue, ("env",), f"has {len(value)} entries, more than {MAX_ENV}")
        out: list[tuple[str, str]] = []
        for key, item in value.items():
            path: Path = ("env", key)
            self.string(key, path)
            if "=" in key:
                self.fail(InvalidValue, path, "an environment variable name must not contain '='")
            if key in RESERVED_ENV:
                self.fail(
                    InvalidValue, path, f"{key} is set by Donjon from [[files]] and cannot be overridden"
                )
            out.append((key, self.string(item, path, empty=True)))
        return tuple(out)

    def backends(self, value: object) -> tuple[str, ...]:
        path: Path = ("backends",)
        if not isinstance(value, list) or not value:
            self.fail(InvalidValue, path, "must be a non-empty list of backend names")
        names = tuple(self.choice(item, ("backends", i), BACKEND_NAMES) for i, item in enumerate(value))
        for i, name in enumerate(names):
            if name in names[:i]:
                self.fail(InvalidValue, ("backends", i), f"lists {name!r} twice")
        return names

    def files(self, value: object) -> tuple[FileEntry, ...]:
        if not isinstance(value, list):
            self.fail(
                InvalidValue, ("files",), f"must be an array of tables ([[files]]), got {type_name(value)}"
            )
        if not value:
            return DEFAULT_FILES
        if len(value) > MAX_FILES:
            self.fail(InvalidValue, ("files",), f"has {len(value)} entries, more than {MAX_FILES}")
        entries: list[FileEntry] = []
        explicit: dict[str, int] = {}
        for index, item in enumerate(value):
            entry = self.file(index, item)
            if isinstance(item, dict) and "name" in item:
                first = explicit.setdefault(entry.name, index)
                if first != index:
                    self.fail(
                        DuplicateName,
                        ("files", index, "name"),
                        f"{entry.name!r} is already the name of files[{first}]",
                    )
            entries.append(entry)
        return tuple(entries)

    def file(self, index: int, item: object) -> FileEntry:
        here: Path = ("files", index)
        if not isinstance(item, dict):
            self.fail(InvalidValue, here, f"must be a table, got {type_name(item)}")
        if "kind" not in item:
            self.fail(MissingKey, here, 'has no "kind" (one of ' + ", ".join(_FILE_KEYS) + ")")
        kind = self.choice(item["kind"], (*here, "kind"), tuple(_FILE_KEYS))
        allowed = _FILE_KEYS[kind]
        for key in item:
            if key not in allowed:
                self.fail(
                    UnknownKey,
                    (*here, key),
                    f'unknown key for kind "{kind}"' + _did_you_mean(key, allowed),
                )
        if kind in ("null", "stdin", "stdout", "stderr"):
            name = self.name(item, here) if "name" in item else kind
            return StdioEntry(cast("Any", kind), name)
        if kind == "listen":
            return self.listen(item, here)
        if kind == "connect":
            return self.connect(item, here)
        return self.directory(item, here)

    def name(self, item: Mapping[str, object], here: Path) -> str:
        path = (*here, "name")
        name = self.string(item["name"], path, limit=_MAX_NAME)
        if ":" in name:
            self.fail(InvalidValue, path, f"{name!r} contains ':' (FD_NAMES separates names with ':')")
        return name

    def host(self, value: object, path: Path, *, limit: int = _MAX_HOST) -> str:
        host = self.string(value, path, limit=limit)
        if any(ch.isspace() or ord(ch) < 0x20 for ch in host):
            self.fail(InvalidValue, path, "must not contain whitespace or control characters")
        return host

    def port_prot(self, item: Mapping[str, object], here: Path) -> tuple[int, Protocol]:
        prot = (
            cast("Protocol", self.choice(item["prot"], (*here, "prot"), ("tls", "tcp")))
            if "prot" in item
            else "tls"
        )
        if "port" not in item:
            return default_port(prot), prot
        port = item["port"]
        if not isinstance(port, int) or isinstance(port, bool):
            self.fail(InvalidValue, (*here, "port"), f"must be an integer, got {type_name(port)}")
        if not 1 <= port <= 65535:
            self.fail(InvalidValue, (*here, "port"), f"must be between 1 and 65535, got {port}")
        return port, prot

    def listen(self, item: Mapping[str, object], here: Path) -> ListenEntry:
        if "name" not in item:
            self.fail(MissingKey, here, 'a "listen" entry needs a "name"')
        name = self.name(item, here)
        addr = self.host(item["addr"], (*here, "addr")) if "addr" in item else "::"
        port, prot = self.port_prot(item, here)
        client_auth = "none"
        if "client_auth" in item:
            client_auth = self.choice(item["client_auth"], (*here, "client_auth"), ("none", "steward"))
            if prot == "tcp" and client_auth != "none":
                self.fail(InvalidValue, (*here, "client_auth"), 'client authentication needs prot = "tls"')
        identity = None
        if "client_identity" in item:
            path = (*here, "client_identity")
            identity = self.spiffe_id(item["client_identity"], path)
            if client_auth != "steward":
                self.fail(InvalidValue, path, 'needs client_auth = "steward"')
        return ListenEntry(name, addr, port, prot, cast("Any", client_auth), identity)

    def connect(self, item: Mapping[str, object], here: Path) -> ConnectEntry:
        if "host" not in item:
            self.fail(MissingKey, here, 'a "connect" entry needs a "host"')
        host = self.host(item["host"], (*here, "host"))
        name = self.name(item, here) if "name" in item else host
        if "name" not in item and ":" in name:
            self.fail(InvalidValue, (*here, "host"), f"{host!r} contains ':', so the entry needs a \"name\"")
        port, prot = self.port_prot(item, here)
        trust: str | None = "system" if prot == "tls" else None
        if "trust" in item:
            trust = self.choice(item["trust"], (*here, "trust"), ("system", "steward", "file"))
            if prot == "tcp":
                self.fail(InvalidValue, (*here, "trust"), 'trust anchors need prot = "tls"')
        trust_file = None
        if "trust_file" in item:
            trust_file = self.string(item["trust_file"], (*here, "trust_file"), limit=4096)
            if trust != "file":
                self.fail(InvalidValue, (*here, "trust_file"), 'needs trust = "file"')
        elif trust == "file":
            self.fail(MissingKey, (*here, "trust"), 'trust = "file" needs a "trust_file" (a PEM file)')
        peers: tuple[str, ...] = ()
        if "peer_identity" in item:
            peers = self.peer_identity(item["peer_identity"], (*here, "peer_identity"), trust)
        marked = {"allow_simulated": False, "allow_unattested": False}
        for key in ("allow_simulated", "allow_unattested"):
            if key not in item:
                continue
            value = item[key]
            if not isinstance(value, bool):
                self.fail(InvalidValue, (*here, key), f"must be true or false, got {type_name(value)}")
            if prot == "tcp":
                self.fail(InvalidValue, (*here, key), 'needs prot = "tls"')
            if peers:
                # With peer_identity the server is checked by SPIFFE ID: naming a /sim/ or
                # /unattested/ ID there is how such a peer is accepted.
                self.fail(
                    InvalidValue, (*here, key), "is for host-name checks; with peer_identity, name the ID"
                )
            marked[key] = value
        return ConnectEntry(
            name,
            host,
            port,
            prot,
            cast("Any", trust),
            trust_file,
            peers,
            allow_simulated=marked["allow_simulated"],
            allow_unattested=marked["allow_unattested"],
        )

    def spiffe_id(self, value: object, path: Path) -> str:
        """A SPIFFE ID as the SPIFFE-ID specification (section 2) allows it, kept as written."""
        text = self.host(value, path, limit=2048)
        if not text.startswith("spiffe://"):
            self.fail(InvalidValue, path, f"must be a spiffe:// ID, got {text[:200]!r}")
        # Here, not at the top: only a config naming a SPIFFE ID pays for the TLS package.
        from donjon.tls.errors import InvalidSpiffeId
        from donjon.tls.spiffe import parse_spiffe_id

        try:
            parse_spiffe_id(text)
        except InvalidSpiffeId as e:
            self.fail(InvalidValue, path, f"is not a valid SPIFFE ID ({e.reason}): {text[:200]!r}")
        return text

    def peer_identity(self, value: object, path: Path, trust: str | None) -> tuple[str, ...]:
        """Donjon: the SPIFFE ID (a string) or IDs (a list) the server must carry, sorted."""
        if trust is None:
            self.fail(InvalidValue, path, 'a peer identity needs prot = "tls"')
        if trust == "system":
            self.fail(
                InvalidValue,
                path,
                'needs trust = "steward" or "file": system roots do not vouch for SPIFFE IDs',
            )
        if isinstance(value, list):
            if not value:
                self.fail(InvalidValue, path, "must not be an empty list (it would admit nobody)")
            if len(value) > MAX_PEER_IDENTITIES:
                self.fail(InvalidValue, path, f"has {len(value)} entries, more than {MAX_PEER_IDENTITIES}")
            ids = [self.spiffe_id(item, (*path, i)) for i, item in enumerate(value)]
            for i, text in enumerate(ids):
                if text in ids[:i]:
                    self.fail(InvalidValue, (*path, i), f"lists {text!r} twice")
            return tuple(sorted(ids))
        if not isinstance(value, str):
            self.fail(InvalidValue, path, f"must be a SPIFFE ID or a list of them, got {type_name(value)}")
        return (self.spiffe_id(value, path),)

    def directory(self, item: Mapping[str, object], here: Path) -> DirEntry:
        if "path" not in item:
            self.fail(MissingKey, here, 'a "dir" entry needs a "path" (the host directory)')
        path = self.string(item["path"], (*here, "path"), limit=4096)
        guest = (
            self.string(item["guest_path"], (*here, "guest_path"), limit=4096)
            if "guest_path" in item
            else path
        )
        writable = item.get("writable", False)
        if not isinstance(writable, bool):
            self.fail(InvalidValue, (*here, "writable"), f"must be true or false, got {type_name(writable)}")
        if "name" in item:
            name = self.name(item, here)
        elif ":" in guest:
            self.fail(
                InvalidValue, (*here, "guest_path"), f"{guest!r} contains ':', so the entry needs a \"name\""
            )
        else:
            name = guest
        return DirEntry(name, path, guest, writable)


def _did_you_mean(key: str, known: tuple[str, ...]) -> str:
    """``; did you mean "files"? (allowed: ...)``, naming the closest known key if one is close."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f'; did you mean "{close[0]}"?' if close else ""
    return f"{hint} (allowed: {', '.join(known)})"


def _render_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, str) and len(part) > 64:  # a hostile key must not flood the terminal
            part = part[:64] + "..."
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            out += f".{part}" if out else part
        else:
            quoted = '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
            out += f".{quoted}" if out else quoted
    return out
