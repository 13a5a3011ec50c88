"""``steward.toml``: where the Steward's CA, secret, policy, log, roots and collateral are.

Relative paths are relative to the directory holding ``steward.toml``. Every key
is documented in docs/steward.md; ``donjon steward init`` writes a commented one.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from donjon.hsm import BadUri, Pkcs11Uri, is_pkcs11_uri, parse_uri
from donjon.oids import require_certificate_safe
from donjon.steward.errors import ConfigError
from donjon.steward.limits import ConnectionLimits
from donjon.steward.logkey import default_origin
from donjon.steward.policy import parse_duration
from donjon.tlog.checkpoint import NoteError, check_key_name

__all__ = ["StewardConfig", "load_config", "starter_config"]

_KNOWN = {
    "steward": {
        "trust_domain",
        "listen",
        "port",
        "ca_cert",
        "ca_key",
        "challenge_secret",
        "policy",
        "claims_oid",
        "nonce_lifetime",
        "tls_cert",
        "tls_key",
        "max_request_bytes",
        "request_timeout",
        "workers",
        "log_key",
    },
    "log": {"backend", "path", "dsn", "origin"},
    "roots": {"files", "simulated"},
    "secrets": {"kek"},
    "collateral": {"dir", "require", "fetch", "cache", "offline", "kds_url", "pcs_url", "intel_root_crl_url"},
    "connections": {
        "header_timeout",
        "body_timeout",
        "max_connections",
        "max_per_address",
        "refusal_burst",
        "refusal_rate",
        "rate_table_size",
    },
}
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]{1,255}$")


def is_trust_domain(name: str) -> bool:
    """True for a trust domain ``steward.toml`` accepts: lowercase ``[a-z0-9._-]``, 1..255 characters."""
    return _TRUST_DOMAIN.fullmatch(name) is not None


_KINDS = ("snp-report", "tdx-quote", "sgx-quote", "cca-token")


@dataclass(frozen=True)
class StewardConfig:
    path: Path
    trust_domain: str
    listen: str
    port: int
    ca_cert: Path
    #: A PEM file, or the key in a PKCS#11 token (docs/steward.md "Keys in an HSM").
    ca_key: Path | Pkcs11Uri
    challenge_secret: Path
    policy: Path
    claims_oid: str | None
    nonce_lifetime: int
    tls_cert: Path | None
    tls_key: Path | None
    max_request_bytes: int
    request_timeout: float
    workers: int
    log_backend: str
    log_path: Path | None
    log_dsn: str | None
    root_files: tuple[Path, ...]
    simulated_roots: tuple[Path, ...]
    collateral_dir: Path | None
    require_collateral: frozenset[str]
    fetch_collateral: bool = False
    collateral_cache: Path | None = None
    collateral_offline: bool = False
    kds_url: str | None = None
    pcs_url: str | None = None
    intel_root_crl_url: str | None = None
    #: The Ed25519 key that signs the log's checkpoints (docs/steward.md "The transparency log").
    log_key: Path | Pkcs11Uri | None = None
    #: The log's name: first line of its checkpoints and the log key's name.
    log_origin: str | None = None
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    #: ``[secrets] kek`` as written: a file relative to ``steward.toml`` (mode 0600) holding the
    #: key-encryption key of the secret store (docs/secrets.md); read through
    #: :func:`donjon.steward.secrets.kek.open_kek`, the seam for other kinds (``pkcs11:`` URIs).
    secrets_kek: str = "kek.key"


def _line(text: str, key: str) -> int | None:
    for i, raw in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*{re.escape(key)}\s*=", raw):
            return i
    return None


def load_config(path: str | Path) -> StewardConfig:
    """Read and validate ``steward.toml``; :class:`ConfigError` names the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), f"cannot read the configuration: {e}") from e
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), f"not valid TOML: {e}", line=getattr(e, "lineno", None)) from e
    base = p.resolve().parent

    def err(reason: str, key: str | None = None) -> ConfigError:
        return ConfigError(str(p), reason, line=_line(text, key) if key else None)

    for section, value in doc.items():
        if section not in _KNOWN or not isinstance(value, dict):
            raise err(f"unknown section or key {section!r}", section)
        for key in value:
            if key not in _KNOWN[section]:
                raise err(f"unknown key {key!r} in [{section}]", key)
    st: dict[str, Any] = doc.get("steward", {})
    lg: dict[str, Any] = doc.get("log", {})
    rt: dict[str, Any] = doc.get("roots", {})
    co: dict[str, Any] = doc.get("collateral", {})
    se: dict[str, Any] = doc.get("secrets", {})

    def string(table: dict[str, Any], key: str, default: str | None = None) -> str | None:
        value = table.get(key, default)
        if value is not None and not isinstance(value, str):
            raise err(f"{key} must be a string", key)
        return value or None

    def path_of(table: dict[str, Any], key: str, default: str | None = None) -> Path | None:
        value = string(table, key, default)
        return None if value is None else (base / value)

    def required(table: dict[str, Any], key: str, default: str) -> Path:
        found = path_of(table, key, default)
        assert found is not None
        return found

    def key_of(table: dict[str, Any], key: str, default: str) -> Path | Pkcs11Uri:
        """A key setting: a file name, or a ``pkcs11:`` URI (RFC 7512) naming a key in a token."""
        value = string(table, key, default) or default
        if not is_pkcs11_uri(value):
            return base / value
        try:
            return parse_uri(value)
        except BadUri as e:
            raise err(f"{key}: {e.reason}", key) from e

    def paths(table: dict[str, Any], key: str) -> tuple[Path, ...]:
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise err(f"{key} must be a list of file names", key)
        return tuple(base / v for v in value)

    trust_domain = string(st, "trust_domain")
    if trust_domain is None or not is_trust_domain(trust_domain):
        raise err(
            "trust_domain is required: a lowercase SPIFFE trust domain such as example.org", "trust_domain"
        )
    claims_oid = string(st, "claims_oid")
    if claims_oid is not None:
        try:
            require_certificate_safe(claims_oid)
        except ValueError as e:
            raise err(f"claims_oid: {e}", "claims_oid") from e
    port = st.get("port", 8443)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise err("port must be an integer 0..65535", "port")
    max_bytes = st.get("max_request_bytes", 256 * 1024)
    if not isinstance(max_bytes, int) or not 1024 <= max_bytes <= 16 * 1024 * 1024:
        raise err("max_request_bytes must be between 1024 and 16777216", "max_request_bytes")
    workers = st.get("workers", 2)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise err("workers must be an integer 1..64", "workers")
    try:
        nonce_lifetime = parse_duration(string(st, "nonce_lifetime", "5m") or "5m")
        timeout = parse_duration(string(st, "request_timeout", "10s") or "10s")
    except ValueError as e:
        raise err(str(e)) from e
    if not 10 <= nonce_lifetime <= 3600:
        raise err("nonce_lifetime must be between 10s and 1h", "nonce_lifetime")
    backend = string(lg, "backend", "sqlite")
    if backend not in ("sqlite", "postgres"):
        raise err('log backend must be "sqlite" or "postgres"', "backend")
    dsn = string(lg, "dsn")
    if backend == "postgres" and not dsn:
        raise err("the postgres log backend needs dsn", "dsn")
    tls_cert, tls_key = path_of(st, "tls_cert"), path_of(st, "tls_key")
    if (tls_cert is None) != (tls_key is None):
        raise err("tls_cert and tls_key go together", "tls_cert")
    for flag in ("fetch", "offline"):
        if not isinstance(co.get(flag, False), bool):
            raise err(f"{flag} must be true or false", flag)
    connections = _connection_limits(doc.get("connections", {}), err)
    require = co.get("require", list(_KINDS[:3]))
    if not isinstance(require, list) or not all(k in _KINDS for k in require):
        raise err(f"collateral require must list kinds from {list(_KINDS)}", "require")
    origin = string(lg, "origin") or default_origin(trust_domain)
    try:
        check_key_name(origin)
    except NoteError as e:
        raise err(f"log origin: {e.reason}", "origin") from e
    kek = string(se, "kek", "kek.key")
    if kek is None:
        raise err("kek must name the key-encryption key file", "kek")
    return StewardConfig(
        path=p,
        trust_domain=trust_domain,
        listen=string(st, "listen", "127.0.0.1") or "127.0.0.1",
        port=port,
        ca_cert=required(st, "ca_cert", "ca.pem"),
        ca_key=key_of(st, "ca_key", "ca-key.pem"),
        challenge_secret=required(st, "challenge_secret", "challenge.secret"),
        policy=required(st, "policy", "policy.toml"),
        claims_oid=claims_oid,
        nonce_lifetime=nonce_lifetime,
        tls_cert=tls_cert,
        tls_key=tls_key,
        max_request_bytes=max_bytes,
        request_timeout=float(timeout),
        workers=workers,
        log_backend=backend,
        log_path=path_of(lg, "path", "log.db") if backend == "sqlite" else None,
        log_dsn=dsn,
        root_files=paths(rt, "files"),
        simulated_roots=paths(rt, "simulated"),
        collateral_dir=path_of(co, "dir", "collateral"),
        require_collateral=frozenset(require),
        fetch_collateral=co.get("fetch", False),
        collateral_cache=path_of(co, "cache", "collateral-cache"),
        collateral_offline=co.get("offline", False),
        kds_url=string(co, "kds_url"),
        pcs_url=string(co, "pcs_url"),
        intel_root_crl_url=string(co, "intel_root_crl_url"),
        log_key=key_of(st, "log_key", "log-key.pem"),
        log_origin=origin,
        connections=connections,
        secrets_kek=kek,
    )


def _connection_limits(table: dict[str, Any], err: Any) -> ConnectionLimits:
    """``[connections]``: each value checked against a range that keeps the Steward serving."""
    default = ConnectionLimits()

    def seconds(key: str, low: int, high: int) -> float:
        value = table.get(key)
        if value is None:
            return float(getattr(default, key))
        try:
            parsed = parse_duration(value) if isinstance(value, str) else None
        except ValueError as e:
            raise err(f"{key}: {e}", key) from e
        if parsed is None or not low <= parsed <= high:
            raise err(f'{key} must be a duration from {low}s to {high}s, such as "5s"', key)
        return float(parsed)

    def integer(key: str, low: int, high: int) -> int:
        value = table.get(key, getattr(default, key))
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise err(f"{key} must be an integer {low}..{high}", key)
        return value

    rate = table.get("refusal_rate", default.refusal_rate)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0.01 <= rate <= 1000:
        raise err("refusal_rate must be a number of refusals per second, 0.01..1000", "refusal_rate")
    return ConnectionLimits(
        header_timeout=seconds("header_timeout", 1, 60),
        body_timeout=seconds("body_timeout", 1, 300),
        max_connections=integer("max_connections", 16, 1_000_000),
        max_per_address=integer("max_per_address", 1, 1_000_000),
        refusal_burst=integer("refusal_burst", 1, 100_000),
        refusal_rate=float(rate),
        rate_table_size=integer("rate_table_size", 16, 10_000_000),
    )


def starter_config(trust_domain: str, *, https: bool = True, simulated_roots: Sequence[str] = ()) -> str:
    """The commented ``steward.toml`` that ``init`` writes: HTTPS with ``tls.pem``/``tls-key.pem``
    (or, ``https=False``, plain HTTP and the TLS lines commented out), trusting ``simulated_roots``."""
    if https:
        tls = """\
# HTTPS with a certificate issued by this Steward's CA, for the names Keeps use to reach it.
# Renew it (or change its names) with: donjon steward tls-cert --config steward.toml --host ...
tls_cert = "tls.pem"
tls_key = "tls-key.pem"               # secret (mode 0600)"""
    else:
        tls = """\
# UNSAFE: without tls_cert and tls_key the Steward speaks plain HTTP; Keeps refuse it unless
# told --steward-insecure-http. Only behind a TLS proxy on the same machine.
# tls_cert = "tls.pem"
# tls_key = "tls-key.pem\""""
    simulated = "[" + ", ".join(f'"{r}"' for r in simulated_roots) + "]"
    return f"""\
# Donjon Steward configuration. Relative paths are relative to this file.
# Every key is described in docs/steward.md.

[steward]
# SPIFFE trust domain: issued identities are spiffe://{trust_domain}/<path from the policy>.
trust_domain = "{trust_domain}"
listen = "127.0.0.1"
port = 8443
ca_cert = "ca.pem"
ca_key = "ca-key.pem"                 # secret (mode 0600)
challenge_secret = "challenge.secret" # secret (mode 0600); share it between replicas
log_key = "log-key.pem"               # secret (mode 0600): signs the log's checkpoints; share it
                                      # between replicas. Witnesses pin log-key.pub.
policy = "policy.toml"                # reloaded on SIGHUP
# Claims (TEE, measurement, workload digest) are always in the standard TCG DICE
# extension of issued certificates. Optionally also as JSON under this OID (your IANA
# PEN arc; every arc must be below 2^31).
# claims_oid = "1.3.6.1.4.1.<your PEN>.1"
nonce_lifetime = "5m"
{tls}
max_request_bytes = 262144
request_timeout = "10s"
# Threads running the checks (CPU-bound Python: more than a few only adds GIL contention).
workers = 2

[log]
backend = "sqlite"        # or "postgres" (several replicas share one log)
path = "log.db"
# dsn = "postgresql://steward@db.example.org/steward"
# The log's name, first line of every signed checkpoint (default: <trust_domain>/donjon-steward-log).
# origin = "example.org/donjon-steward-log"

[secrets]
# The key-encryption key of the secret store (docs/secrets.md): a 32-byte key, mode 0600,
# created by 'donjon steward secret put' when missing. Secrets in the log database are
# encrypted under data keys this key wraps; keep it apart from the database's backups.
kek = "kek.key"                       # secret (mode 0600)

[roots]
# Vendor root and intermediate certificates (PEM/DER). The library only accepts
# the ones whose fingerprints it pins (AMD ARK/ASK, Intel SGX Root CA).
files = []
# Simulated vendor roots (sim-snp, sim-tdx) to trust explicitly. Evidence under
# them is marked simulated, and the policy must also set allow_simulated.
simulated = {simulated}

[collateral]
# The Steward's own collateral: <dir>/<kind>/ holds CRLs, TCB info, QE identity
# (kinds: snp-report, tdx-quote, sgx-quote).
dir = "collateral"
# Evidence kinds refused when no current collateral is held.
require = ["snp-report", "tdx-quote", "sgx-quote"]
# Also fetch collateral from AMD KDS / Intel PCS (per product line / FMSPC), through an
# on-disk cache; the directory above is consulted first. offline = true: cache only.
fetch = false
cache = "collateral-cache"
offline = false
# kds_url = "https://kdsintf.amd.com"
# pcs_url = "https://api.trustedservices.intel.com"

[connections]
# Deadlines from accept: the TLS handshake and the request head (and, after a response, the
# next head) within header_timeout; the body within body_timeout of the head.
header_timeout = "5s"
body_timeout = "10s"
# Open connections in all, and per client address (IPv6: per /64).
max_connections = 4096
max_per_address = 64
# An address whose requests keep being refused (4xx) gets 429 with Retry-After: a bucket of
# refusal_burst, refilled at refusal_rate a second; rate_table_size addresses remembered.
refusal_burst = 20
refusal_rate = 1.0
rate_table_size = 16384
"""
