"""PKCS#11 URIs (RFC 7512): which module, token and object a key lives in, and where its PIN is.

``pkcs11:token=Steward;object=ca?pin-source=file:/etc/donjon/pin&module-path=/usr/lib/x.so``

Parsing is pure and strict: every attribute Donjon does not use is refused by name rather than
silently ignored (a URI that names a slot or a library version and gets another token would be
worse than an error), an attribute given twice is refused (RFC 7512 section 2.3: "An attribute
name MUST NOT appear more than once"), and so are ``pin-value`` together with ``pin-source``
(which one would apply?). Values are percent-decoded (RFC 3986 section 2.1); labels are UTF-8
(PKCS#11 v2.40 ``CK_UTF8CHAR``), ``id`` is bytes.

A URI may carry its PIN (``pin-value``): :meth:`Pkcs11Uri.redacted` is the form for messages
and logs, and :class:`~donjon.hsm.errors.BadUri` never quotes a PIN.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from donjon.hsm.errors import BadUri

__all__ = ["MAX_URI", "OBJECT_TYPES", "Pkcs11Uri", "parse_uri"]

#: A URI in a config file is a few hundred characters; anything this long is not one.
MAX_URI = 4096
#: RFC 7512 section 2.3 ``pk11-type``.
OBJECT_TYPES = ("public", "private", "cert", "secret-key", "data")

_SCHEME = "pkcs11:"
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
# RFC 7512 section 2.3: pk11-res-avail, and what each component adds to it.
_RES_AVAIL = ":[]@!$'()*+,="
_PATH_CHARS = frozenset(_UNRESERVED + _RES_AVAIL + "&%")
_QUERY_CHARS = frozenset(_UNRESERVED + _RES_AVAIL + "/?|%")
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")

# Path attributes Donjon uses (PKCS#11 field sizes: CK_TOKEN_INFO label/manufacturerID 32 bytes,
# model/serialNumber 16 bytes).
_TOKEN_LIMITS = {"token": 32, "manufacturer": 32, "model": 16, "serial": 16}
_PATH_USED = (*_TOKEN_LIMITS, "object", "type", "id")
_QUERY_USED = ("pin-source", "pin-value", "module-path")
# Defined by RFC 7512 but not used by Donjon: refused by name, with what to use instead.
_NOT_USED = {
    "library-manufacturer": "name the module with module-path",
    "library-description": "name the module with module-path",
    "library-version": "name the module with module-path",
    "slot-description": "name the token with token= (its label) or serial=",
    "slot-manufacturer": "name the token with token= (its label) or serial=",
    "slot-id": "slot numbers change between runs; name the token with token= or serial=",
    "module-name": "give the module's file with module-path",
}


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed ``pkcs11:`` URI; ``None`` for an attribute the URI does not give."""

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    object: str | None = None
    type: str | None = None
    id: bytes | None = None
    pin_source: str | None = None
    pin_value: str | None = None
    module_path: str | None = None

    def __str__(self) -> str:
        return self._text(redact=False)

    def redacted(self) -> str:
        """The URI with any ``pin-value`` replaced by ``***``: for messages, logs and files."""
        return self._text(redact=True)

    def with_object(self, label: str, *, type: str | None = None) -> Pkcs11Uri:
        """The same token, module and PIN, naming another object (no ``id``)."""
        from dataclasses import replace

        return replace(self, object=label, id=None, type=type)

    def _text(self, *, redact: bool) -> str:
        path: list[str] = []
        for name in _PATH_USED:
            value = getattr(self, name)
            if value is None:
                continue
            raw = value if isinstance(value, bytes) else value.encode()
            # The id is opaque bytes: every byte encoded, as RFC 7512 section 2.3 recommends.
            text = "".join(f"%{b:02X}" for b in raw) if name == "id" else quote(raw, safe="")
            path.append(f"{name}={text}")
        query: list[str] = []
        for name in _QUERY_USED:
            value = getattr(self, name.replace("-", "_"))
            if value is None:
                continue
            text = "***" if redact and name == "pin-value" else quote(value, safe="/:")
            query.append(f"{name}={text}")
        return _SCHEME + ";".join(path) + ("?" + "&".join(query) if query else "")


def _redact(text: str) -> str:
    return re.sub(r"(pin-value=)[^&#]*", r"\1***", text, flags=re.IGNORECASE)


def _decode(uri: str, name: str, value: str, allowed: frozenset[str]) -> bytes:
    bad = sorted({c for c in value if c not in allowed})
    if bad:
        raise BadUri(uri, f"{name}: {''.join(bad)!r} must be percent-encoded here")
    if _PCT.search(value):
        raise BadUri(uri, f"{name}: '%' not followed by two hexadecimal digits")
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "%":
            out.append(int(value[i + 1 : i + 3], 16))
            i += 3
        else:
            out += value[i].encode()
            i += 1
    return bytes(out)


def _text(uri: str, name: str, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadUri(uri, f"{name}: not UTF-8 once percent-decoded") from e
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise BadUri(uri, f"{name}: holds a control character")
    return text


def _pairs(uri: str, part: str, sep: str, what: str) -> list[tuple[str, str]]:
    if not part:
        return []
    pairs: list[tuple[str, str]] = []
    for item in part.split(sep):
        name, eq, value = item.partition("=")
        if not item or not eq or not name:
            raise BadUri(uri, f"{what}: {item!r} is not name=value")
        pairs.append((name, value))
    return pairs


def parse_uri(text: str) -> Pkcs11Uri:
    """Parse a ``pkcs11:`` URI; :class:`BadUri` (which never quotes a PIN) if it is not one we use."""
    shown = _redact(text[:200]) + ("..." if len(text) > 200 else "")
    if len(text) > MAX_URI:
        raise BadUri(shown, f"longer than {MAX_URI} characters")
    # RFC 3986 section 3.1: the scheme is case-insensitive.
    if text[: len(_SCHEME)].lower() != _SCHEME:
        raise BadUri(shown, "does not start with pkcs11:")
    rest = text[len(_SCHEME) :]
    if "#" in rest:
        raise BadUri(shown, "a PKCS#11 URI has no fragment ('#' must be percent-encoded as %23)")
    path, _, query = rest.partition("?")
    fields: dict[str, object] = {}
    seen: set[str] = set()
    for component, pairs, used, allowed in (
        ("path", _pairs(shown, path, ";", "path attribute"), _PATH_USED, _PATH_CHARS),
        ("query", _pairs(shown, query, "&", "query attribute"), _QUERY_USED, _QUERY_CHARS),
    ):
        for name, value in pairs:
            if name in seen:
                raise BadUri(shown, f"{name} is given more than once (RFC 7512 section 2.3)")
            seen.add(name)
            if name in _NOT_USED:
                raise BadUri(shown, f"{name} is not supported by Donjon: {_NOT_USED[name]}")
            if name not in used:
                other = "query" if component == "path" else "path"
                if name in (_QUERY_USED if component == "path" else _PATH_USED):
                    raise BadUri(shown, f"{name} belongs in the {other} component")
                hint = " (vendor attributes are not supported)" if name.startswith("x-") else ""
                raise BadUri(shown, f"unknown {component} attribute {name!r}{hint}")
            raw = _decode(shown, name, value, allowed)
            if name == "id":
                if not raw:
                    raise BadUri(shown, "id is empty")
                fields["id"] = raw
                continue
            decoded = _text(shown, name, raw)
            if not decoded:
                raise BadUri(shown, f"{name} is empty")
            limit = _TOKEN_LIMITS.get(name)
            if limit is not None and len(raw) > limit:
                raise BadUri(shown, f"{name} is {len(raw)} bytes; PKCS#11 allows at most {limit}")
            if name == "type" and decoded not in OBJECT_TYPES:
                raise BadUri(shown, f"type must be one of {', '.join(OBJECT_TYPES)}")
            fields[name.replace("-", "_")] = decoded
    if "pin_value" in fields and "pin_source" in fields:
        raise BadUri(shown, "give pin-value or pin-source, not both")
    module = fields.get("module_path")
    if isinstance(module, str) and not module.startswith("/"):
        raise BadUri(shown, "module-path must be an absolute path to the module's shared library")
    return Pkcs11Uri(**fields)  # type: ignore[arg-type]
