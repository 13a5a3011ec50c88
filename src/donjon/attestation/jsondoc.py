"""JSON documents from outside (vendor collateral, Azure evidence, HCL runtime claims): objects
with a member twice are refused.

RFC 8259 section 4 says only that names "SHOULD be unique", and parsers differ on a repeated
one (Python's ``json`` keeps the last, others the first): two readers of the same signed bytes
could then see different values. Refusing such a document makes every reader agree.
"""

from __future__ import annotations

from typing import Any

__all__ = ["no_duplicate_members"]


def no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads(..., object_pairs_hook=no_duplicate_members)``: ``ValueError`` naming a
    member that appears twice in one object."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = value
    return out
