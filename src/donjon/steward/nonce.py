"""Stateless challenges: any replica that shares the secret can check a nonce.

DESIGN.md "Freshness": ``nonce = timestamp || random || HMAC(secret, timestamp ||
random)``. Here the timestamp is 8 bytes, big-endian Unix seconds; the random
part is 16 bytes; the MAC is HMAC-SHA-256 (32 bytes): 56 bytes in all. A nonce
is valid from its timestamp (minus a small clock skew allowance) for
``lifetime`` seconds. Nothing is stored, so a nonce can be used more than once
within its lifetime; each use still needs evidence made for it, under the key
that signs the CSR (the binding), so a replay only re-issues to the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct

from donjon.steward.errors import Refused

__all__ = ["NONCE_SIZE", "SECRET_SIZE", "NonceAuthority"]

_TS = 8
_RANDOM = 16
_MAC = 32
NONCE_SIZE = _TS + _RANDOM + _MAC
SECRET_SIZE = 32
#: Clocks of replicas may differ by this much.
CLOCK_SKEW = 30


class NonceAuthority:
    """Makes and checks nonces with one secret; time is always passed in (Unix seconds)."""

    def __init__(self, secret: bytes, *, lifetime: int = 300) -> None:
        if len(secret) < 16:
            raise ValueError("the challenge secret must be at least 16 bytes")
        if lifetime <= 0:
            raise ValueError("nonce lifetime must be positive")
        self._secret = bytes(secret)
        self.lifetime = lifetime

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, b"donjon-nonce-v1\x00" + body, hashlib.sha256).digest()

    def issue(self, now: float) -> bytes:
        body = struct.pack(">Q", int(now)) + secrets.token_bytes(_RANDOM)
        return body + self._mac(body)

    def check(self, nonce: bytes | None, now: float) -> int:
        """Return the nonce's timestamp, or raise :class:`Refused` (``nonce.*``)."""
        if nonce is None:
            raise Refused("nonce.missing", "the CSR carries no Steward nonce", status=400)
        if len(nonce) != NONCE_SIZE:
            raise Refused(
                "nonce.malformed", f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}", status=400
            )
        body, mac = nonce[: _TS + _RANDOM], nonce[_TS + _RANDOM :]
        if not hmac.compare_digest(mac, self._mac(body)):
            raise Refused("nonce.forged", "the nonce was not issued by this Steward (bad MAC)")
        (stamp,) = struct.unpack(">Q", body[:_TS])
        if stamp > now + CLOCK_SKEW:
            raise Refused("nonce.future", f"nonce timestamp {stamp} is in the future (now {int(now)})")
        if now > stamp + self.lifetime:
            raise Refused("nonce.expired", f"nonce expired {int(now - stamp - self.lifetime)} s ago")
        return int(stamp)
