"""Fetching a Steward's checkpoint and proofs over HTTP(S), with bounded answers.

Every answer is read with a size limit and a deadline; an answer that is not what
the endpoint documents is :class:`~donjon.audit.verify.AuditRefused` (the log
misbehaves); no answer at all is :class:`LogUnreachable`.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx

from donjon.audit.verify import AuditRefused
from donjon.tlog.checkpoint import MAX_NOTE_BYTES
from donjon.tlog.entry import MAX_ENTRY_BYTES

__all__ = ["LogClient", "LogUnreachable"]

#: An inclusion answer holds one entry (base64) and a few dozen hashes.
MAX_ANSWER = MAX_ENTRY_BYTES * 2 + MAX_NOTE_BYTES


class LogUnreachable(Exception):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url}: {reason}")


class LogClient:
    """``url``: the Steward's base URL; ``ca_file``: PEM trust anchors for HTTPS (None: system roots)."""

    def __init__(self, url: str, *, ca_file: str | None = None, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the Steward URL must start with http:// or https://")
        self.url = url.rstrip("/")
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.Client(verify=verify, timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, str], limit: int) -> tuple[int, bytes]:
        url = self.url + path
        try:
            with self._client.stream("GET", url, params=params) as r:
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise AuditRefused("answer.size", f"{path} answered more than {limit} bytes")
                return r.status_code, bytes(body)
        except httpx.HTTPError as e:
            raise LogUnreachable(url, f"{type(e).__name__}: {e}") from e

    def _json(self, path: str, params: dict[str, str], limit: int) -> dict[str, Any]:
        status, body = self._get(path, params, limit)
        try:
            doc = json.loads(body)
        except ValueError as e:
            if status >= 500:
                raise LogUnreachable(self.url + path, f"HTTP {status}") from e
            raise AuditRefused("answer.format", f"{path} did not answer JSON (HTTP {status})") from e
        if not isinstance(doc, dict):
            raise AuditRefused("answer.format", f"{path} did not answer a JSON object")
        if status != 200:
            check = doc.get("check", "?")
            reason = doc.get("reason", "")
            if status >= 500:
                raise LogUnreachable(self.url + path, f"HTTP {status} {str(check)[:64]}: {str(reason)[:200]}")
            raise AuditRefused(f"answer.{str(check)[:64]}", f"HTTP {status}: {str(reason)[:200]}")
        return doc

    def checkpoint(self) -> bytes:
        status, body = self._get("/log/checkpoint", {}, MAX_NOTE_BYTES)
        if status >= 500:
            raise LogUnreachable(self.url + "/log/checkpoint", f"HTTP {status}")
        if status != 200:
            raise AuditRefused("answer.checkpoint", f"/log/checkpoint answered HTTP {status}")
        return body

    def consistency(self, first: int, second: int) -> dict[str, Any]:
        return self._json(
            "/log/proof/consistency", {"from": str(first), "to": str(second)}, MAX_NOTE_BYTES * 2
        )

    def inclusion(self, serial: str) -> dict[str, Any]:
        return self._json("/log/proof/inclusion", {"serial": serial}, MAX_ANSWER)
