"""Releasing secrets: the checks of :mod:`.release`, the store, and a log entry for every answer.

Every release and every refusal is appended to the Steward's transparency log before the
answer leaves: ``{"path": "secret", "decision": "released" | "refused", "secret", "version",
"certificate_serial", "spiffe_id", "workload_digest", "tee", "simulated", "unattested",
"package" (digest, signer, name: when the certificate names a signed package), "rule" and
"matched" (released: which ``[[secret]]`` rule, and the fields it named), "check", "reason",
"policy_digest"}`` — never the value. The certificate serial goes under ``certificate_serial``,
not ``serial``: ``serial`` is the look-up column of the entry that *issued* a certificate.
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from donjon.steward.errors import Refused
from donjon.steward.issuance import PolicyHolder
from donjon.steward.log import LogEntry, LogStore
from donjon.steward.metrics import Metrics
from donjon.steward.secrets.errors import BadSecretName, KekError, SecretNotFound
from donjon.steward.secrets.names import check_name
from donjon.steward.secrets.release import client_identity, decide_release
from donjon.steward.secrets.store import SecretStore, SecretValue

__all__ = ["Released", "SecretService"]


@dataclass(frozen=True)
class Released:
    value: SecretValue
    entry: LogEntry


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SecretService:
    """The release decision for one Steward.

    ``store`` None: no KEK yet; ``opener`` (if given) is tried again at each release that passes
    the checks, so a Steward started before the first ``secret put`` serves the secret once it
    exists. A KEK that appears but does not unwrap the store is refused (``secret.store``, 503).
    """

    def __init__(
        self,
        *,
        store: SecretStore | None,
        opener: Callable[[], SecretStore | None] | None = None,
        policy: PolicyHolder,
        ca_cert: x509.Certificate,
        trust_domain: str,
        log: LogStore,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self._opener = opener
        self._open_lock = threading.Lock()
        self.policy = policy
        self.ca_cert = ca_cert
        self.trust_domain = trust_domain
        self.log = log
        self.metrics = metrics
        self.clock = clock

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def _store(self) -> SecretStore:
        with self._open_lock:
            if self.store is None and self._opener is not None:
                try:
                    self.store = self._opener()
                except KekError as e:
                    raise Refused(
                        "secret.store", f"the secret store cannot be opened: {e}", status=503
                    ) from e
            if self.store is None:
                raise Refused("secret.not_found", "this Steward stores no secrets (no KEK)", status=404)
            return self.store

    def release(self, name: str, client_der: bytes | None) -> Released:
        """The newest version of ``name`` for the client presenting ``client_der``, or :class:`Refused`
        (logged before it is raised)."""
        started = _time.perf_counter()
        policy = self.policy.current
        record: dict[str, Any] = {"path": "secret", "secret": name[:200], "policy_digest": policy.digest}
        try:
            try:
                check_name(name)
            except BadSecretName as e:
                raise Refused("secret.name", e.reason, status=400) from e
            now = self.clock()
            client = client_identity(client_der, self.ca_cert, self.trust_domain, now)
            record.update(client.record())
            rule = decide_release(policy, name, client)
            store = self._store()
            try:
                value = store.get(name)
            except SecretNotFound as e:
                raise Refused("secret.not_found", f"no secret {name} is stored", status=404) from e
            record.update(
                decision="released",
                version=value.version,
                # Which [[secret]] rule (its position; policy_digest names the policy) and the
                # fields it named, every one of which matched.
                rule=rule.label,
                matched=list(rule.fields),
            )
        except Refused as e:
            record.update(decision="refused", check=e.check, reason=e.reason)
            self.log.append(record, self.clock().isoformat())
            if self.metrics is not None:
                self.metrics.refused(e.check)
                self.metrics.observe("secret", _time.perf_counter() - started)
            raise
        entry = self.log.append(record, self.clock().isoformat())
        if self.metrics is not None:
            # Refusals count in refused_total{check}; releases in the "secret" latency histogram.
            self.metrics.observe("secret", _time.perf_counter() - started)
        return Released(value, entry)
