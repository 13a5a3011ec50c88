"""The registry's auth challenges and the Docker token flow's answers: parsing only, no I/O.

A registry that wants credentials answers 401 with ``WWW-Authenticate`` (RFC 9110 11.6.1):
``Basic realm="..."`` (send HTTP Basic) or ``Bearer realm="https://auth/token",service="reg",
scope="repository:app:pull"`` (distribution's "Token Authentication Specification",
docs/spec/auth/token.md: GET the realm with ``service`` and ``scope``, HTTP Basic to the token
service, and present the answer's token as ``Authorization: Bearer``). The token is opaque to the
client; its lifetime is the answer's ``expires_in`` (60 s when absent, the spec's minimum).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from donjon.oci.errors import RegistryError

__all__ = [
    "MAX_TOKEN_ANSWER",
    "Challenge",
    "TokenAnswer",
    "parse_challenge",
    "parse_token_answer",
    "scope",
]

#: A token answer is a JWT or two in JSON: 64 KiB is generous; more is refused while reading.
MAX_TOKEN_ANSWER = 64 * 1024
_DEFAULT_EXPIRES_IN = 60  # token.md: "a token should never be returned with less than 60 seconds"
_MAX_EXPIRES_IN = 3600  # a longer promise is not believed: the token is asked for again after an hour
# RFC 9110 11.2: auth-param = token BWS "=" BWS ( token / quoted-string ), quoted-pair = "\" char.
_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic", "bearer", or what the registry sent
    params: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> str:
        """RFC 6750 3.1 ``error``: ``invalid_token``, ``insufficient_scope``, or empty."""
        return self.params.get("error", "")


@dataclass(frozen=True)
class TokenAnswer:
    token: str = field(repr=False)
    expires_in: int


def scope(repository: str, actions: str) -> str:
    """token.md's resource scope: ``repository:NAME:pull`` or ``repository:NAME:pull,push``."""
    return f"repository:{repository}:{actions}"


def parse_challenge(header: str) -> Challenge:
    """The first challenge of a ``WWW-Authenticate`` value (registries send one)."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest[:4096]):
        name, quoted, bare = match.groups()
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params.setdefault(name.lower(), value)
    return Challenge(scheme.lower(), params)


def parse_token_answer(registry: str, body: bytes) -> TokenAnswer:
    """``{"token": ..., "expires_in": ...}`` (or OAuth 2's ``access_token``), checked."""
    if len(body) > MAX_TOKEN_ANSWER:
        raise RegistryError(registry, f"token service: answer over {MAX_TOKEN_ANSWER} bytes")
    try:
        doc: Any = json.loads(body)
    except ValueError as e:
        raise RegistryError(registry, "token service: the answer is not JSON") from e
    if not isinstance(doc, dict):
        raise RegistryError(registry, "token service: the answer is not a JSON object")
    token = doc.get("token") or doc.get("access_token")
    # A token goes into a header line: printable ASCII only (RFC 6750 2.1 b64token and more).
    if not isinstance(token, str) or not token or not re.fullmatch(r"[\x21-\x7e]{1,32768}", token):
        raise RegistryError(registry, "token service: no usable token in the answer")
    expires_in = doc.get("expires_in", _DEFAULT_EXPIRES_IN)
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        expires_in = _DEFAULT_EXPIRES_IN
    return TokenAnswer(token, min(expires_in, _MAX_EXPIRES_IN))
