"""The Steward's HTTP face: a Starlette ASGI application over :class:`Steward`.

Endpoints (docs/steward.md):

- ``GET /healthz`` — ``{"status": "ok"}``;
- ``GET /metrics`` — Prometheus text exposition;
- ``GET /challenge`` — ``{"nonce": <base64url>, "expires": <RFC 3339>}``;
- ``GET /ca`` — the Steward CA certificate (PEM);
- ``POST /attest`` — native Donjon CSR (DER, ``Content-Type: application/pkcs10``) ->
  ``application/pem-certificate-chain`` (issued certificate, then the CA);
- ``POST /`` — Enarx Keep CSR (DER, ``application/pkcs10``) -> DER ``SEQUENCE OF
  Certificate``, issuer first (Enarx's answer);
- ``GET /log/checkpoint`` — the latest signed checkpoint (C2SP signed note, text);
- ``GET /log/key`` — the log's verifier key (a convenience: witnesses pin it out of band);
- ``GET /log/proof/inclusion?serial=HEX`` — the entry logging that certificate, its index,
  audit path and the checkpoint it leads to;
- ``GET /log/proof/consistency?from=N[&to=M]`` — the proof that the tree of N entries is a
  prefix of the tree of M (default: the latest checkpoint's size), and that checkpoint;
- ``GET /secrets/NAME`` — mutual TLS only: the secret's newest version
  (``application/octet-stream``, headers ``Donjon-Secret-Version`` and ``Donjon-Secret-Created``)
  to a client certificate the policy's ``[[secret]]`` rules admit (docs/secrets.md).

Every refusal is a 4xx JSON body ``{"error": "refused", "check": ..., "reason": ...}``;
5xx only for the Steward's own faults — ``server.error`` (500: the log cannot be
written, a bug) and ``server.timeout`` (503) — never for anything a client sends.
Bodies are limited in size and every request in time. Every ``POST`` to ``/attest``
or ``/`` ends in exactly one accounted outcome (docs/steward.md "Outcomes"): a log
entry, or a count in ``donjon_steward_rejected_total`` and a sampled JSON log line.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import time
import traceback
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from donjon.stderrlog import CurrentStderrHandler
from donjon.steward.errors import Refused
from donjon.steward.issuance import Outcome, Prepared, Steward
from donjon.steward.log import LogCorrupt
from donjon.steward.sampling import LogSampler
from donjon.steward.secrets.service import SecretService
from donjon.steward.tlsscope import client_certificate
from donjon.tlog.checkpoint import Checkpoint, NoteError, open_checkpoint

__all__ = ["JsonFormatter", "create_app", "setup_logging"]

log = logging.getLogger("donjon.steward")

PKCS10 = "application/pkcs10"

#: Threads waiting for log commits: enough for a full group-commit batch.
LOG_THREADS = 64
#: JSON log lines per second for each reason of refusals that have no log entry (a sample).
LOG_LINES_PER_SECOND = 10


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message, and any ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, default=str, sort_keys=True)


def setup_logging(level: int = logging.INFO) -> None:
    handler = CurrentStderrHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("donjon")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _refusal(e: Refused) -> JSONResponse:
    body = e.as_dict()
    if e.status >= 500:
        body["error"] = {"server.error": "internal", "server.token": "unavailable"}.get(e.check, "timeout")
    return JSONResponse(body, status_code=e.status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError as e:
            raise Refused("request.content_length", "Content-Length is not a number", status=400) from e
        if size > limit:
            raise Refused("request.size", f"request body of {size} bytes exceeds {limit}", status=413)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise Refused("request.size", f"request body exceeds {limit} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _content_type(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != PKCS10:
        raise Refused(
            "request.content_type", f"expected Content-Type {PKCS10}, got {ctype or 'none'}", status=415
        )


#: Longest query string a log endpoint reads (a serial is at most 40 hex digits).
MAX_QUERY = 256
_SERIAL = re.compile(r"[0-9a-f]{1,40}")
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")


def _query(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, each at most once and all of them named in ``allowed``."""
    raw = request.scope.get("query_string", b"")
    if len(raw) > MAX_QUERY:
        raise Refused("log.query", f"query string longer than {MAX_QUERY} bytes", status=400)
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise Refused("log.query", f"unknown parameter {key[:32]!r}", status=400)
        if key in out:
            raise Refused("log.query", f"parameter {key!r} given twice", status=400)
        out[key] = value
    return out


def _size_param(value: str, name: str) -> int:
    if not _SIZE.fullmatch(value):
        raise Refused("log.range", f"{name} must be a decimal tree size", status=400)
    return int(value)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def create_app(
    steward: Steward,
    *,
    max_request_bytes: int = 256 * 1024,
    request_timeout: float = 10.0,
    workers: int = 2,
    log_lines_per_second: int = LOG_LINES_PER_SECOND,
    secrets: SecretService | None = None,
) -> Starlette:
    """The ASGI application for one Steward.

    The checks and the signature are CPU-bound Python: ``workers`` threads run them
    (more would only contend for the GIL and stretch tail latency); other requests
    wait their turn. The log append is mostly waiting for the database, so it runs
    on threads of its own: a worker goes on to the next request while the
    certificate it signed waits for its commit (group commit batches those waits).
    """
    # Plain executors: cheaper per call than anyio's worker threads, same semantics
    # (a timed-out call finishes in its thread; its client gets nothing).
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="steward")
    log_pool = ThreadPoolExecutor(max_workers=LOG_THREADS, thread_name_prefix="steward-log")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return Response(steward.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def challenge(request: Request) -> Response:
        nonce, expires = steward.challenge()
        return JSONResponse(
            {"nonce": base64.urlsafe_b64encode(nonce).decode().rstrip("="), "expires": expires.isoformat()},
            headers={"Cache-Control": "no-store"},
        )

    async def ca(request: Request) -> Response:
        return Response(steward.ca.cert_pem, media_type="application/x-pem-file")

    sampler = LogSampler(log_lines_per_second)

    def _submit(prepare: Callable[..., Prepared], body: bytes, deadline: float) -> Future[Outcome]:
        """Checks on ``pool``, then the commit on ``log_pool``: a chain that runs to its end.

        The request may stop waiting for it (its deadline) but the chain is never cut in
        the middle, so each request gets its one accounted outcome from the Steward:
        work that starts after its deadline is refused ``server.timeout`` at once, a
        certificate signed too late is logged as that refusal instead of as issued.
        """
        done: Future[Outcome] = Future()

        def commit(prepared: Prepared) -> None:
            try:
                done.set_result(steward.commit(prepared))
            except BaseException as e:
                done.set_exception(e)

        def prepared(f: Future[Prepared]) -> None:
            error = RuntimeError("the Steward is stopping") if f.cancelled() else f.exception()
            if error is not None:
                done.set_exception(error)
                return
            try:
                log_pool.submit(commit, f.result())
            except RuntimeError as e:  # the pool is shut down: the server is stopping
                done.set_exception(e)

        pool.submit(prepare, body, deadline=deadline).add_done_callback(prepared)
        return done

    def _note(fields: dict[str, Any], e: Refused, started: float) -> None:
        """The JSON log line of a refusal: every logged one; a sample of the others."""
        fields.update(decision="refused", check=e.check, reason=e.reason, status=e.status, logged=e.logged)
        fields["ms"] = round((time.perf_counter() - started) * 1000, 2)
        cause = e.__cause__
        if e.check == "server.error" and cause is not None:
            fields["exception"] = type(cause).__name__
            fields["detail"] = str(cause)[:200]
            frames = traceback.extract_tb(cause.__traceback__)
            if frames:  # where it was raised, for whoever fixes it
                last = frames[-1]
                fields["where"] = f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"
        level = logging.ERROR if e.status >= 500 else logging.INFO
        if not e.logged:
            suppressed = sampler.admit(e.check)
            if suppressed is None:
                return
            if suppressed:
                fields["suppressed"] = suppressed
        log.log(level, "refused", extra={"fields": fields})

    def _fault(fields: dict[str, Any], err: Exception, started: float) -> Response:
        """An exception the Steward did not account for: counted, one JSON line, a JSON 500."""
        steward.metrics.rejected("server.error")
        fault = Refused(
            "server.error", f"internal error ({type(err).__name__}); nothing was issued", status=500
        )
        fault.__cause__ = err
        _note(fields, fault, started)
        return _refusal(fault)

    async def _run(
        request: Request,
        endpoint: str,
        prepare: Callable[..., Prepared],
        render: Callable[[Outcome], Response],
    ) -> Response:
        started = time.perf_counter()
        fields: dict[str, Any] = {
            "event": endpoint,
            "client": request.client.host if request.client else None,
        }
        try:
            _content_type(request)
            try:
                with anyio.fail_after(request_timeout):
                    body = await _read_body(request, max_request_bytes)
            except TimeoutError:
                # The client is too slow to send its body: its fault, a 4xx.
                raise Refused(
                    "request.timeout",
                    f"the request body did not arrive within {request_timeout} s",
                    status=408,
                ) from None
            except ClientDisconnect:
                # Nobody will read the answer; the request is still counted.
                raise Refused(
                    "request.disconnected", "the client left before sending its body", status=400
                ) from None
        except Refused as e:
            # Refused before the Steward saw the body: counted here, never logged.
            steward.metrics.rejected(e.check)
            _note(fields, e, started)
            return _refusal(e)
        except Exception as err:
            return _fault(fields, err, started)
        try:
            # The checks' own deadline: past it, the Steward stops working on the request.
            deadline = time.monotonic() + request_timeout
            waiting = asyncio.wrap_future(_submit(prepare, body, deadline))
            # Retrieve the result even when nobody waits any more (no "never retrieved" noise).
            waiting.add_done_callback(lambda f: f.cancelled() or f.exception())
            with anyio.fail_after(request_timeout):
                # Shielded: giving up the wait must not cancel the chain (its accounting).
                outcome = await asyncio.shield(waiting)
        except Refused as e:
            # Accounted by the Steward (logged or counted) before it was raised.
            _note(fields, e, started)
            return _refusal(e)
        except TimeoutError:
            # The Steward could not finish in time (overload, a slow database): a server fault,
            # 503. The chain goes on and accounts the request: as server.timeout, or as the
            # decision it had already reached. The client received nothing.
            late = Refused("server.timeout", "the Steward did not answer in time", status=503)
            _note(fields, late, started)
            return _refusal(late)
        except Exception as err:
            # A fault outside the Steward's own accounting (the server is stopping...).
            return _fault(fields, err, started)
        fields.update(
            decision="issued",
            serial=outcome.issued.serial,
            spiffe_id=outcome.entry.record.get("spiffe_id"),
            seq=outcome.entry.seq,
            status=200,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
        log.info("issued", extra={"fields": fields})
        return render(outcome)

    async def attest(request: Request) -> Response:
        return await _run(
            request,
            "attest",
            steward.prepare,
            lambda o: Response(o.pem_chain, media_type="application/pem-certificate-chain"),
        )

    async def legacy(request: Request) -> Response:
        return await _run(
            request,
            "legacy",
            steward.prepare_legacy,
            lambda o: Response(o.enarx_chain, media_type="application/pkix-cert"),
        )

    def _latest() -> tuple[bytes, Checkpoint]:
        note = steward.log.checkpoint()
        verifier = steward.log.verifier
        if note is None or verifier is None:
            raise Refused("log.empty", "this Steward has no signed checkpoint yet", status=404)
        try:
            return note, open_checkpoint(note, verifier)
        except NoteError as e:
            raise LogCorrupt(
                None, "checkpoint.signature", f"the latest checkpoint does not verify: {e}"
            ) from e

    def _inclusion(serial: str) -> dict[str, Any]:
        entry = steward.log.find_serial(serial)
        if entry is None:
            raise Refused("log.not_found", f"no certificate with serial {serial} in the log", status=404)
        # Read after the entry: the latest checkpoint covers every committed entry.
        note, checkpoint = _latest()
        if entry.index >= checkpoint.size:  # a row no signed checkpoint covers: not written by a Steward
            raise LogCorrupt(entry.seq, "checkpoint.missing", "the entry is covered by no signed checkpoint")
        proof = steward.log.inclusion_proof(entry.index, checkpoint.size)
        return {
            "serial": serial,
            "index": entry.index,
            "tree_size": checkpoint.size,
            "entry": _b64(entry.data),
            "proof": [_b64(h) for h in proof],
            "checkpoint": note.decode(),
        }

    def _consistency(first: int, second: int | None) -> dict[str, Any]:
        note, checkpoint = _latest()
        to = checkpoint.size if second is None else second
        if not 1 <= first <= to <= checkpoint.size:
            raise Refused(
                "log.range",
                f"need 1 <= from <= to <= {checkpoint.size} (the latest checkpoint's size)",
                status=400,
            )
        proof = steward.log.consistency_proof(first, to)
        return {"from": first, "to": to, "proof": [_b64(h) for h in proof], "checkpoint": note.decode()}

    async def _log_call(request: Request, call: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        with anyio.fail_after(request_timeout):
            return await loop.run_in_executor(log_pool, call)

    def _log_error(endpoint: str, e: Exception) -> Response:
        if isinstance(e, Refused):
            return _refusal(e)  # a bad query, not an issuance refusal: not in refused_total
        if isinstance(e, TimeoutError):
            steward.metrics.refused("server.timeout")
            return JSONResponse(
                {
                    "error": "timeout",
                    "check": "server.timeout",
                    "reason": "the Steward did not answer in time",
                },
                status_code=503,
            )
        # The stored log does not verify: a server fault, loud in the Steward's own log.
        check = e.check if isinstance(e, LogCorrupt) else "log"
        log.error("log corrupt", extra={"fields": {"event": endpoint, "check": check, "error": str(e)}})
        return JSONResponse(
            {"error": "log", "check": "log.corrupt", "reason": "the stored log does not verify"},
            status_code=500,
        )

    async def log_checkpoint(request: Request) -> Response:
        try:
            _query(request, frozenset())
            note, _ = await _log_call(request, _latest)
        except (Refused, LogCorrupt, TimeoutError) as e:
            return _log_error("log_checkpoint", e)
        return Response(note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})

    async def log_key(request: Request) -> Response:
        verifier = steward.log.verifier
        if verifier is None:
            return _refusal(Refused("log.empty", "this Steward has no log key", status=404))
        return Response(verifier.vkey() + "\n", media_type="text/plain; charset=utf-8")

    async def log_inclusion(request: Request) -> Response:
        try:
            params = _query(request, frozenset({"serial"}))
            serial = params.get("serial", "").lower()
            if not _SERIAL.fullmatch(serial):
                raise Refused("log.serial", "serial must be 1 to 40 hex digits", status=400)
            doc = await _log_call(request, lambda: _inclusion(serial))
        except (Refused, LogCorrupt, TimeoutError) as e:
            return _log_error("log_inclusion", e)
        return JSONResponse(doc, headers={"Cache-Control": "no-store"})

    async def log_consistency(request: Request) -> Response:
        try:
            params = _query(request, frozenset({"from", "to"}))
            if "from" not in params:
                raise Refused("log.range", "from is required", status=400)
            first = _size_param(params["from"], "from")
            second = _size_param(params["to"], "to") if "to" in params else None
            doc = await _log_call(request, lambda: _consistency(first, second))
        except (Refused, LogCorrupt, TimeoutError) as e:
            return _log_error("log_consistency", e)
        return JSONResponse(doc, headers={"Cache-Control": "no-store"})

    async def secret(request: Request) -> Response:
        name = request.path_params["name"]
        fields: dict[str, Any] = {
            "event": "secret",
            "secret": name[:200],
            "client": request.client.host if request.client else None,
        }
        if secrets is None:
            return _refusal(Refused("secret.not_found", "this Steward serves no secrets", status=404))
        der = client_certificate(request.scope)
        loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(request_timeout):
                # The log append waits for the database: on the log threads, as issuance's commit.
                released = await loop.run_in_executor(log_pool, secrets.release, name, der)
        except Refused as e:
            fields.update(decision="refused", check=e.check, reason=e.reason, status=e.status)
            log.info("secret refused", extra={"fields": fields})
            return _refusal(e)
        except TimeoutError:
            steward.metrics.refused("server.timeout")
            return JSONResponse(
                {
                    "error": "timeout",
                    "check": "server.timeout",
                    "reason": "the Steward did not answer in time",
                },
                status_code=503,
            )
        except Exception:
            fields.update(decision="error", status=500)
            log.exception("internal error", extra={"fields": fields})
            return JSONResponse(
                {"error": "internal", "check": "server", "reason": "internal error; nothing was released"},
                status_code=500,
            )
        value = released.value
        fields.update(
            decision="released",
            version=value.version,
            serial=released.entry.record.get("certificate_serial"),
            spiffe_id=released.entry.record.get("spiffe_id"),
            seq=released.entry.seq,
        )
        log.info("secret released", extra={"fields": fields})
        return Response(
            value.value,
            media_type="application/octet-stream",
            headers={
                "Cache-Control": "no-store",
                "Donjon-Secret-Version": str(value.version),
                "Donjon-Secret-Created": value.created,
            },
        )

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/challenge", challenge, methods=["GET"]),
        Route("/ca", ca, methods=["GET"]),
        Route("/attest", attest, methods=["POST"]),
        Route("/", legacy, methods=["POST"]),
        Route("/log/checkpoint", log_checkpoint, methods=["GET"]),
        Route("/log/key", log_key, methods=["GET"]),
        Route("/log/proof/inclusion", log_inclusion, methods=["GET"]),
        Route("/log/proof/consistency", log_consistency, methods=["GET"]),
        Route("/secrets/{name}", secret, methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        steward.metrics.rejected("request.path")
        return JSONResponse(
            {"error": "not_found", "check": "request.path", "reason": "no such endpoint"}, 404
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        steward.metrics.rejected("request.method")
        return JSONResponse(
            {"error": "method", "check": "request.method", "reason": "method not allowed"}, 405
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        pool.shutdown(wait=False, cancel_futures=True)
        log_pool.shutdown(wait=False, cancel_futures=True)

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed}, lifespan=lifespan)
