"""What a secret may be called and how large it may be (docs/secrets.md "Limits")."""

from __future__ import annotations

import re

from donjon.steward.secrets.errors import BadSecretName, SecretTooLarge

__all__ = ["MAX_NAME", "MAX_SECRET_BYTES", "MAX_VERSIONS", "check_name", "check_size"]

#: A secret is a password, a token, a key or a certificate bundle: 1 MiB is plenty, and it bounds
#: what one release request makes the Steward decrypt and send.
MAX_SECRET_BYTES = 1 << 20
MAX_NAME = 128
#: Versions kept per secret until pruned: rotation keeps old ones, but not without bound.
MAX_VERSIONS = 100
# A secret's name is also a file name in the guest's secrets directory and a URL path segment:
# no '/', no NUL, no name made only of dots ('.' and '..' would name directories).
_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


def check_name(name: str) -> str:
    """``name`` if it is a valid secret name, else :class:`BadSecretName`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = name if isinstance(name, str) else repr(name)
        raise BadSecretName(shown[:200], f"must be 1 to {MAX_NAME} characters of A-Z a-z 0-9 . _ -")
    if name.strip(".") == "":
        raise BadSecretName(name, "a name made only of dots would name a directory")
    return name


def check_size(size: int) -> None:
    if size > MAX_SECRET_BYTES:
        raise SecretTooLarge(size, MAX_SECRET_BYTES)
