"""Putting a Steward together from ``steward.toml``, and serving it with uvicorn.

``serve`` binds the socket itself (so port 0 works and the bound address is
logged), runs uvicorn (HTTPS when ``tls_cert``/``tls_key`` are set), and reloads
the policy on SIGHUP: a new policy is parsed in full before it replaces the old
one, requests in flight keep the policy they started with, and a bad file is
refused and logged while the old policy stays in force.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from donjon.attestation.verify import TrustRoots
from donjon.steward.app import create_app
from donjon.steward.ca import CertificateAuthority
from donjon.steward.collateral import (
    CollateralSource,
    DirectoryCollateral,
    LayeredCollateral,
    VendorCollateral,
)
from donjon.steward.config import StewardConfig
from donjon.steward.errors import ConfigError
from donjon.steward.issuance import PolicyHolder, Steward
from donjon.steward.log import LegacyLog
from donjon.steward.logkey import load_log_signer
from donjon.steward.nonce import NonceAuthority
from donjon.steward.secrets.service import SecretService
from donjon.steward.secrets.store import SecretStore
from donjon.steward.sqlite_log import SqliteLog
from donjon.steward.tlsscope import TlsH11Protocol, mtls_context_factory
from donjon.steward.treestore import TreeStore
from donjon.tlog.checkpoint import NoteSigner

__all__ = ["build_steward", "log_signer", "open_log", "open_secrets", "serve"]

log = logging.getLogger("donjon.steward")


def log_signer(config: StewardConfig) -> NoteSigner:
    """The log key of ``config``, under the log's origin (:class:`ConfigError` naming the fix)."""
    assert config.log_key is not None and config.log_origin is not None
    return load_log_signer(config.log_key, config.log_origin)


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


def build_steward(config: StewardConfig, **overrides: Any) -> Steward:
    """A :class:`Steward` from a validated configuration (``overrides`` for tests: clock, verifier...)."""
    ca = CertificateAuthority.load(
        str(config.ca_cert),
        str(config.ca_key),
        trust_domain=config.trust_domain,
        claims_oid=config.claims_oid,
    )
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


def serve(config: StewardConfig, steward: Steward, secrets: SecretService | None = None) -> None:
    """Run until SIGINT/SIGTERM. The bound address is logged as ``{"event": "listening", ...}``.

    Over HTTPS the server asks for an optional client certificate under the Steward's CA (the
    release endpoint's mutual TLS; :mod:`donjon.steward.tlsscope`); ``secrets`` serves releases.
    """
    family = socket.AF_INET6 if ":" in config.listen else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.listen, config.port))
    sock.listen(1024)
    sock.set_inheritable(True)
    host, port = sock.getsockname()[:2]
    app = create_app(
        steward,
        max_request_bytes=config.max_request_bytes,
        request_timeout=config.request_timeout,
        workers=config.workers,
        secrets=secrets,
    )
    tls: dict[str, Any] = {}
    if config.tls_cert:
        tls = {"ssl_context_factory": mtls_context_factory(str(config.ca_cert))}
    uv = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        # h11 whatever else is installed: it bounds the request head (below); measured,
        # httptools was within the noise of this benchmark machine (benchmarks/RESULTS.md).
        # Its protocol class with the ASGI tls extension (the release endpoint's client certificate).
        http=TlsH11Protocol,
        ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
        ssl_keyfile=str(config.tls_key) if config.tls_key else None,
        timeout_keep_alive=5,
        limit_concurrency=1024,
        h11_max_incomplete_event_size=16 * 1024,
        **tls,
    )
    server = uvicorn.Server(uv)

    def on_hup(signum: int, frame: object) -> None:
        threading.Thread(target=reload_policy, args=(steward,), daemon=True).start()

    signal.signal(signal.SIGHUP, on_hup)
    scheme = "https" if config.tls_cert else "http"
    log.info(
        "listening",
        extra={
            "fields": {
                "event": "listening",
                "url": f"{scheme}://{host}:{port}",
                "host": host,
                "port": port,
                "policy_digest": steward.policy.current.digest,
            }
        },
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal under the handler
    # that was installed before it ran. Under SIG_DFL a SIGTERM would then kill the process (exit 143)
    # before the log is closed; a no-op handler lets run() return, so the Steward closes and exits 0
    # ("stopped normally", docs/steward.md "Exit codes").
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        if secrets is not None:
            secrets.close()
        steward.close()
        sock.close()
