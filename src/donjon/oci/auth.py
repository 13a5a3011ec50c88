"""Registry credentials, found where users already keep them. Reads files; never logs a secret.

Order (the first that names the registry wins):

1. the command line (``--registry-user`` with the password from ``$DONJON_REGISTRY_PASSWORD``
   or ``--registry-password-file``: a password on a command line is visible in ``ps``);
2. ``$REGISTRY_AUTH_FILE`` (Podman/skopeo's variable; the same JSON as Docker's);
3. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.

The JSON is Docker's: ``{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`` (or
``"username"``/``"password"`` fields). Credential helpers (``credsStore``, ``credHelpers``) are
external programs and are not run. Credentials never enter the workload digest, a log line or an
error message: :class:`Credentials`' ``repr`` hides the password.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from donjon.oci.errors import AuthFailed

__all__ = ["PASSWORD_ENV", "Credentials", "find_credentials"]

#: Where ``--registry-user``'s password comes from unless ``--registry-password-file`` is given.
PASSWORD_ENV = "DONJON_REGISTRY_PASSWORD"
_MAX_AUTH_FILE = 1 << 20


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def find_credentials(
    registry: str,
    *,
    username: str | None = None,
    password_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials | None:
    """The credentials for ``registry`` (``HOST[:PORT]``), or ``None`` to go anonymous."""
    env = os.environ if environ is None else environ
    if username is not None:
        if password_file is not None:
            password = _read(Path(password_file), registry).decode("utf-8", "replace").rstrip("\r\n")
        else:
            password = env.get(PASSWORD_ENV, "")
            if not password:
                raise AuthFailed(
                    registry, f"--registry-user needs ${PASSWORD_ENV} or --registry-password-file"
                )
        return Credentials(username, password)
    candidates: list[Path] = []
    if env.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(env["REGISTRY_AUTH_FILE"]))
    if env.get("DOCKER_CONFIG"):
        candidates.append(Path(env["DOCKER_CONFIG"]) / "config.json")
    elif env.get("HOME"):
        candidates.append(Path(env["HOME"]) / ".docker" / "config.json")
    for path in candidates:
        if path.is_file():
            found = _from_auth_file(_read(path, registry), registry, path)
            if found is not None:
                return found
    return None


def _read(path: Path, registry: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            data = stream.read(_MAX_AUTH_FILE + 1)
    except OSError as e:
        raise AuthFailed(registry, f"cannot read credentials file {path}: {e.strerror or e}") from e
    if len(data) > _MAX_AUTH_FILE:
        raise AuthFailed(registry, f"credentials file {path} is over {_MAX_AUTH_FILE} bytes")
    return data


def _from_auth_file(data: bytes, registry: str, path: Path) -> Credentials | None:
    try:
        doc = json.loads(data)
    except ValueError:
        # The file's content is a secret: name the file, not what is in it.
        raise AuthFailed(registry, f"credentials file {path} is not JSON") from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    for key, entry in auths.items():
        host = key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
        if host != registry or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise AuthFailed(
                    registry, f"credentials file {path}: entry for {host} is not base64"
                ) from None
            if sep:
                return Credentials(user, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None
