"""Putting a Steward together from ``steward.toml``, and serving it with uvicorn.

``serve`` binds the socket itself (so port 0 works and the bound address is
logged), runs uvicorn (HTTPS when ``tls_cert``/``tls_key`` are set) behind the
connection guard and the refusal rate limit (``[connections]``: connguard.py,
ratelimit.py), and reloads the policy on SIGHUP: a new policy is parsed in full
before it replaces the old one, requests in flight keep the policy they started
with, and a bad file is refused and logged while the old policy stays in force.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import resource
import signal
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from donjon.attestation.verify import TrustRoots
from donjon.hsm import Pkcs11Uri
from donjon.steward.app import create_app
from donjon.steward.ca import CertificateAuthority
from donjon.steward.collateral import (
    CollateralSource,
    DirectoryCollateral,
    LayeredCollateral,
    VendorCollateral,
)
from donjon.steward.config import StewardConfig
from donjon.steward.connguard import ConnectionGuard, lean_tls_buffers
from donjon.steward.errors import ConfigError
from donjon.steward.issuance import PolicyHolder, Steward
from donjon.steward.limits import ConnectionLimits
from donjon.steward.log import LegacyLog
from donjon.steward.logkey import load_log_signer
from donjon.steward.nonce import NonceAuthority
from donjon.steward.ratelimit import RefusalLimiter, RefusalRateLimit
from donjon.steward.secrets.service import SecretService
from donjon.steward.secrets.store import SecretStore
from donjon.steward.sqlite_log import SqliteLog
from donjon.steward.tlsscope import TlsH11Protocol, mtls_context_factory
from donjon.steward.treestore import TreeStore
from donjon.tlog.checkpoint import NoteSigner
from donjon.tls.stream import format_peer

__all__ = [
    "ListenError",
    "build_steward",
    "format_hostport",
    "load_ca",
    "log_signer",
    "open_log",
    "open_secrets",
    "serve",
]

log = logging.getLogger("donjon.steward")

#: The kernel caps it at net.core.somaxconn (4096 on current Linux).
LISTEN_BACKLOG = 4096
#: Open files the Steward keeps for itself beyond its connections (log, database, policy, threads).
_FILE_RESERVE = 256


def log_signer(config: StewardConfig) -> NoteSigner:
    """The log key of ``config``, under the log's origin (:class:`ConfigError` naming the fix)."""
    assert config.log_key is not None and config.log_origin is not None
    return load_log_signer(config.log_key, config.log_origin, base=config.path.resolve().parent)


def open_log(
    config: StewardConfig, *, signer: NoteSigner | None = None, legacy_ok: bool = False
) -> TreeStore[Any]:
    """The configured log; ``signer`` None opens it read-only (``log verify``, ``log show``)."""
    if config.log_backend == "postgres":
        from donjon.steward.postgres_log import PostgresLog

        assert config.log_dsn is not None
        return PostgresLog(config.log_dsn, signer, legacy_ok=legacy_ok)
    assert config.log_path is not None
    return SqliteLog(config.log_path, signer, legacy_ok=legacy_ok)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(str(path), f"cannot read {what}: {e.strerror}") from e


def load_ca(config: StewardConfig) -> CertificateAuthority:
    """The CA: its key from a PEM file, or in the PKCS#11 token ``ca_key`` names (HsmError if the
    token is missing, locked or without that key)."""
    if isinstance(config.ca_key, Pkcs11Uri):
        from donjon.hsm.keys import open_ec_signer

        signer = open_ec_signer(config.ca_key, base=config.path.resolve().parent)
        try:
            return CertificateAuthority.load_external(
                str(config.ca_cert), signer, trust_domain=config.trust_domain, claims_oid=config.claims_oid
            )
        except BaseException:
            signer.close()
            raise
    return CertificateAuthority.load(
        str(config.ca_cert),
        str(config.ca_key),
        trust_domain=config.trust_domain,
        claims_oid=config.claims_oid,
    )


def build_steward(config: StewardConfig, **overrides: Any) -> Steward:
    """A :class:`Steward` from a validated configuration (``overrides`` for tests: clock, verifier...)."""
    ca = load_ca(config)
    secret = _read(config.challenge_secret, "the challenge secret")
    try:
        roots = TrustRoots.from_bytes(
            *(_read(p, "a root certificate") for p in config.root_files),
            extra_trusted=[_read(p, "a simulated root") for p in config.simulated_roots],
        )
    except Exception as e:  # the library's MalformedEvidence for a bad root file
        raise ConfigError(str(config.path), f"bad root certificate file: {e}") from e
    policy = PolicyHolder(str(config.policy))
    collateral: CollateralSource = DirectoryCollateral(
        config.collateral_dir or config.path.parent / "collateral"
    )
    if config.fetch_collateral:
        collateral = LayeredCollateral(
            collateral, _vendor_collateral(config), clock=overrides.get("clock", _utcnow)
        )
    try:
        store = open_log(config, signer=log_signer(config))
    except LegacyLog as e:
        raise ConfigError(str(config.path), str(e)) from e
    kwargs: dict[str, Any] = {
        "ca": ca,
        "policy": policy,
        "nonces": NonceAuthority(secret, lifetime=config.nonce_lifetime),
        "roots": roots,
        "collateral": collateral,
        "log": store,
        "require_collateral": config.require_collateral,
    }
    kwargs.update(overrides)
    return Steward(**kwargs)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _vendor_collateral(config: StewardConfig) -> VendorCollateral:
    """KDS and PCS clients over one cache (donjon.collateral), as steward.toml says."""
    from donjon.collateral import CollateralCache, CollateralStore, HttpFetcher, KdsClient, PcsClient
    from donjon.collateral.kds import DEFAULT_KDS_URL
    from donjon.collateral.pcs import DEFAULT_PCS_URL, DEFAULT_ROOT_CRL_URL

    assert config.collateral_cache is not None
    try:
        cache = CollateralCache(config.collateral_cache)
    except OSError as e:
        raise ConfigError(str(config.collateral_cache), f"cannot use the collateral cache: {e}") from e
    fetcher = None if config.collateral_offline else HttpFetcher()
    store = CollateralStore(cache, fetcher, offline=config.collateral_offline)
    kds = KdsClient(store, base_url=config.kds_url or DEFAULT_KDS_URL)
    pcs = PcsClient(
        store,
        base_url=config.pcs_url or DEFAULT_PCS_URL,
        root_crl_url=config.intel_root_crl_url or DEFAULT_ROOT_CRL_URL,
    )
    return VendorCollateral(kds, pcs, fetcher=fetcher)


def open_secrets(config: StewardConfig, steward: Steward) -> SecretService:
    """The release side of the secret store (docs/secrets.md).

    No KEK file yet: no secrets (releases are ``secret.not_found`` until the first ``secret put``
    creates it; the store is opened then). A KEK
    that cannot be read, or that does not unwrap the store's keys, is a :class:`KekError`: the
    Steward must not start (nothing is served).
    """
    from donjon.steward.secrets.kek import kek_location, open_kek
    from donjon.steward.secrets.store import open_store

    location = kek_location(config)

    def opener() -> SecretStore | None:
        if config.secrets_kek.startswith("pkcs11:") or location.exists() or location.is_symlink():
            return open_store(
                config.log_backend, path=config.log_path, dsn=config.log_dsn, kek=open_kek(config)
            )
        return None

    return SecretService(
        store=opener(),
        opener=opener,
        policy=steward.policy,
        ca_cert=steward.ca.cert,
        trust_domain=steward.ca.trust_domain,
        log=steward.log,
        metrics=steward.metrics,
    )


def reload_policy(steward: Steward) -> bool:
    """Reload the policy file; on error keep the old one. Returns whether the new one is in force."""
    try:
        new = steward.policy.reload()
    except ConfigError as e:
        steward.metrics.policy_reload("refused")
        log.error(
            "policy reload refused; the previous policy stays in force",
            extra={
                "fields": {
                    "event": "policy_reload",
                    "result": "refused",
                    "error": str(e),
                    "policy_digest": steward.policy.current.digest,
                }
            },
        )
        return False
    steward.metrics.policy_reload("ok")
    log.info(
        "policy reloaded",
        extra={"fields": {"event": "policy_reload", "result": "ok", "policy_digest": new.digest}},
    )
    return True


class ListenError(OSError):
    """The Steward cannot listen on its address (in use, not an address of this host...)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot listen on {address}: {reason}")
        self.address = address
        self.reason = reason


def format_hostport(host: str, port: int) -> str:
    """``127.0.0.1:9443``, ``[::1]:9443``: one way to write an address in logs, errors and URLs."""
    return format_peer((host, port))


def _listen(config: StewardConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.listen else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.listen, config.port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        where = format_hostport(config.listen, config.port)
        reason = (e.strerror or str(e)).lower()
        raise ListenError(where, reason) from e
    sock.set_inheritable(True)
    return sock


def _file_limit(limits: ConnectionLimits) -> ConnectionLimits:
    """Raise the soft limit on open files to hold ``max_connections``; shrink it if it cannot.

    Running out of descriptors is worse than refusing: asyncio then stops accepting *anyone*
    for a second at a time. So the Steward keeps ``_FILE_RESERVE`` descriptors for itself (the
    log, the database, the policy, threads) and caps connections below what is left.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = limits.max_connections + _FILE_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft - _FILE_RESERVE < limits.max_connections:
        fitting = max(16, soft - _FILE_RESERVE)
        log.warning(
            "max_connections lowered to fit the open-file limit",
            extra={
                "fields": {
                    "event": "config_warning",
                    "max_connections": fitting,
                    "configured": limits.max_connections,
                    "nofile": soft,
                }
            },
        )
        limits = dataclasses.replace(limits, max_connections=fitting)
    return limits


class _Sampled(logging.Filter):
    """At most ``burst`` records per message per ``window`` seconds from the HTTP server's loggers.

    uvicorn logs one line per malformed request; a client sending garbage as fast as it can would
    make the log the bottleneck. The next record let through says how many were suppressed.
    """

    def __init__(self, burst: int = 5, window: float = 10.0) -> None:
        super().__init__()
        self.burst, self.window = burst, window
        self._seen: dict[tuple[str, object], list[float]] = {}  # (logger, msg) -> [start, n, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = record.created
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            if len(self._seen) > 1024:  # messages are templates, so few; bound it anyway
                self._seen.clear()
            dropped = 0 if seen is None else int(seen[2])
            self._seen[key] = [now, 1, 0]
        else:
            seen[1] += 1
            if seen[1] > self.burst:
                seen[2] += 1
                return False
            dropped = 0
        fields: dict[str, object] = {"event": "http_server"}
        if dropped:
            fields["suppressed"] = dropped
        record.fields = fields
        return True


def _server_logs() -> None:
    """uvicorn's and asyncio's own records go out as the Steward's JSON lines (sampled)."""
    handlers = logging.getLogger("donjon").handlers
    sampled = _Sampled()
    for name in ("uvicorn", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers = list(handlers)
        logger.filters = [sampled]
        logger.propagate = False
    # uvicorn.error and uvicorn.access propagate to "uvicorn"; filters only run where a record
    # is first logged, so the child loggers get the filter too.
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).filters = [sampled]


def serve(config: StewardConfig, steward: Steward, secrets: SecretService | None = None) -> int | None:
    """Run until SIGINT/SIGTERM; return the signal that stopped it (None: stopped otherwise).

    Over HTTPS the server asks for an optional client certificate under the Steward's CA (the
    release endpoint's mutual TLS; :mod:`donjon.steward.tlsscope`); ``secrets`` serves releases.

    The bound address is logged as ``{"event": "listening", ...}``, the stop as
    ``{"event": "stopped", ...}`` after the log is closed. Raises :class:`ListenError` when the
    address cannot be bound.
    """
    sock = _listen(config)
    host, port = sock.getsockname()[:2]
    limits = _file_limit(config.connections)
    # One bucket per address for both layers: 4xx answers and connections dropped before their
    # first request both count as refusals of the address.
    limiter = RefusalLimiter(
        burst=limits.refusal_burst, rate=limits.refusal_rate, table_size=limits.rate_table_size
    )
    guard = ConnectionGuard(limits, limiter)
    listener = guard.listener(sock)
    rate_limit = RefusalRateLimit(
        create_app(
            steward,
            max_request_bytes=config.max_request_bytes,
            request_timeout=config.request_timeout,
            workers=config.workers,
            secrets=secrets,
        ),
        limiter,
    )
    steward.metrics.add_collector(guard.metrics_lines)
    steward.metrics.add_collector(rate_limit.metrics_lines)
    if config.tls_cert:
        lean_tls_buffers()
    _server_logs()
    tls: dict[str, Any] = {}
    if config.tls_cert:
        tls = {"ssl_context_factory": mtls_context_factory(str(config.ca_cert))}
    uv = uvicorn.Config(
        rate_limit,
        log_level="warning",
        log_config=None,  # uvicorn's records go to the Steward's JSON handler (_server_logs)
        access_log=False,
        # uvicorn's h11 protocol, guarded (donjon.steward.connguard): it bounds the request head
        # (below); measured, httptools was within the noise of this benchmark (benchmarks/RESULTS.md).
        # Its base puts the ASGI tls extension in the scope (the release endpoint's client certificate).
        http=guard.protocol_class(TlsH11Protocol),
        ws="none",
        # The selector loop calls accept() on the guarded listening socket; uvloop would not.
        loop="asyncio",
        ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        timeout_keep_alive=max(1, int(limits.header_timeout)),
        # No limit_concurrency: at its limit uvicorn answers 503 to everyone; the guard's caps
        # per address and its eviction of the longest-waiting connection replace it.
        limit_concurrency=None,
        backlog=LISTEN_BACKLOG,
        h11_max_incomplete_event_size=16 * 1024,
        **tls,
    )
    server = uvicorn.Server(uv)

    def on_hup(signum: int, frame: object) -> None:
        threading.Thread(target=reload_policy, args=(steward,), daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)
    scheme = "https" if config.tls_cert else "http"
    address = format_hostport(host, port)
    log.info(
        "listening",
        extra={
            "fields": {
                "event": "listening",
                "url": f"{scheme}://{address}",
                "address": address,
                "host": host,
                "port": port,
                "policy_digest": steward.policy.current.digest,
                "max_connections": limits.max_connections,
                "max_per_address": limits.max_per_address,
            }
        },
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal under the handler
    # that was installed before it ran. Under the default handlers SIGINT would then raise
    # KeyboardInterrupt (a traceback) and SIGTERM kill the process (exit 143) before the log is
    # closed; these handlers only record the signal, so run() returns and the Steward closes.
    stopped_by: list[int] = []

    def on_stop(signum: int, frame: object) -> None:
        stopped_by.append(signum)

    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[listener])
    finally:
        if secrets is not None:
            secrets.close()
        steward.close()
        listener.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    how = signal.Signals(stopped_by[0]).name if stopped_by else None
    log.info("stopped", extra={"fields": {"event": "stopped", "signal": how, "address": address}})
    return stopped_by[0] if stopped_by else None
