"""Renewal: attest again before the certificate expires, and swap the identity in place.

Schedule (DESIGN.md "Certificates the Steward issues": short-lived, renewed by attesting
again): at ``fraction`` (default 2/3) of the way from receipt to ``notAfter``, the
:class:`Renewer` thread runs a full attestation — a new key, a new nonce, new evidence —
and calls :meth:`donjon.tls.Identity.replace`. TLS contexts pick the new credentials up
for new connections; connections already open keep the certificate they started with
(the TLS layer's design), so nothing is dropped.

Failures (Steward unreachable or refusing, backend errors) are retried with exponential
backoff (``retry_initial`` doubling up to ``retry_max``), never waiting past the expiry.

**At expiry without renewal the Keep stops serving new TLS connections.** The holder is
a :class:`KeepIdentity`: once ``notAfter`` has passed, :meth:`KeepIdentity.current`
raises :class:`~donjon.keep.errors.IdentityExpired` (a ``TLSConfigError``), so
``ServerContext.wrap`` — and with it ``Listener.accept`` — refuses every new connection
(the accepted TCP socket is closed before any TLS byte), and an outgoing ``connect``
that would present the identity fails likewise. Connections already established carry on
until they close. Renewal keeps trying after expiry; when it succeeds the Keep serves again.
``on_expired`` is called once per lapse (for the runtime's log line or to stop for good).
This is enforced by the holder on every connection, not by the thread, so a stuck
renewal cannot keep an expired certificate in use.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from donjon.keep.attest import AttestedIdentity
from donjon.keep.errors import IdentityExpired
from donjon.tls.identity import Credentials, Identity

__all__ = ["KeepIdentity", "Renewer"]

log = logging.getLogger("donjon.keep")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeepIdentity(Identity):
    """An :class:`~donjon.tls.Identity` that refuses to hand out expired credentials."""

    def __init__(self, credentials: Credentials, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        super().__init__(credentials)

    def current(self) -> tuple[int, Credentials]:
        generation, credentials = super().current()
        not_after = credentials.leaf.not_valid_after_utc
        if self._clock() > not_after:
            raise IdentityExpired(not_after.isoformat())
        return generation, credentials

    @property
    def expired(self) -> bool:
        try:
            self.current()
        except IdentityExpired:
            return True
        return False


class Renewer:
    """A daemon thread that renews ``holder``'s identity by calling ``attest`` (see the module docstring).

    ``attest`` is normally :meth:`donjon.keep.Attestor.attest` (with its own bounded retries
    for an unreachable Steward); ``current`` is the identity ``holder`` holds now.
    """

    def __init__(
        self,
        holder: Identity,
        attest: Callable[[], AttestedIdentity],
        current: AttestedIdentity,
        *,
        fraction: float = 2 / 3,
        retry_initial: float = 1.0,
        retry_max: float = 60.0,
        clock: Callable[[], datetime] = _utcnow,
        on_renewed: Callable[[AttestedIdentity], None] | None = None,
        on_expired: Callable[[AttestedIdentity], None] | None = None,
    ) -> None:
        if not 0 < fraction < 1:
            raise ValueError("fraction must be in (0, 1)")
        if retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError("retry_initial > 0 and retry_max >= retry_initial")
        self.holder = holder
        self._attest = attest
        self.current = current
        self.fraction = fraction
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._clock = clock
        self._on_renewed = on_renewed
        self._on_expired = on_expired
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Successful renewals, failed attempts, and the last failure (for logs and tests).
        self.renewals = 0
        self.failures = 0
        self.last_error: BaseException | None = None

    def start(self) -> Renewer:
        if self._thread is not None:
            raise RuntimeError("the renewer is already started")
        self._thread = threading.Thread(target=self._run, name="donjon-renew", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread (an attestation in flight finishes first; its result is dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Renewer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _seconds_until(self, when: datetime) -> float:
        return (when - self._clock()).total_seconds()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._stop.wait(max(0.0, self._seconds_until(self.current.renew_at(self.fraction)))):
                return
            renewed = self._renew_once()
            if renewed is None:
                return
            self.holder.replace(renewed.credentials())
            previous, self.current = self.current, renewed
            self.renewals += 1
            log.info(
                "identity renewed: %s (was serial %s)",
                renewed.description(),
                previous.serial,
                extra={
                    "fields": {"event": "renewed", "previous_serial": previous.serial, **renewed.summary()}
                },
            )
            if self._on_renewed is not None:
                self._on_renewed(renewed)

    def _renew_once(self) -> AttestedIdentity | None:
        """Attest until it works (backoff), or ``None`` when stopped."""
        delay = self.retry_initial
        lapsed = False
        while not self._stop.is_set():
            try:
                result = self._attest()
            except Exception as e:  # the thread must survive any failure and try again
                self.failures += 1
                self.last_error = e
                until_expiry = self._seconds_until(self.current.not_after)
                log.error(
                    "renewal failed (%s: %s); certificate expires in %.0f s",
                    type(e).__name__,
                    e,
                    until_expiry,
                    extra={"fields": {"event": "renew_failed", "error": str(e), "expires_in": until_expiry}},
                )
                wait = delay if until_expiry <= 0 else min(delay, until_expiry + 0.01)
                delay = min(delay * 2, self.retry_max)
                if self._stop.wait(wait):
                    return None
                if not lapsed and self._seconds_until(self.current.not_after) <= 0:
                    lapsed = True
                    log.critical(
                        "the Keep's certificate expired without renewal: new TLS connections are refused "
                        "until a renewal succeeds",
                        extra={"fields": {"event": "identity_expired", "serial": self.current.serial}},
                    )
                    if self._on_expired is not None:
                        self._on_expired(self.current)
                continue
            if self._stop.is_set():
                return None
            return result
        return None
