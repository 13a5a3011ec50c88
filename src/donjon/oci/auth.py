"""Registry credentials, found where users already keep them. Reads files; never logs a secret.

Order (the first that names the registry wins):

1. the command line (``--registry-user`` with the password from ``$DONJON_REGISTRY_PASSWORD``
   or ``--registry-password-file``: a password on a command line is visible in ``ps``);
2. ``$REGISTRY_AUTH_FILE`` (Podman/skopeo's variable; the same JSON as Docker's);
3. ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``.

The JSON is Docker's: ``{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}`` (or
``"username"``/``"password"`` fields). In a file, as Docker does, a credential helper named for
the registry (``"credHelpers": {"HOST": "NAME"}``) comes first, then the default store
(``"credsStore": "NAME"``), then ``auths``: the helper is the program ``docker-credential-NAME``
on ``PATH``, run as ``docker-credential-NAME get`` with the registry on stdin, answering
``{"Username": ..., "Secret": ...}`` (docker/docker-credential-helpers' protocol); "not found"
(exit 1) falls through to ``auths``. A helper gets :data:`HELPER_TIMEOUT` seconds and a few KiB of
output. Credentials never enter the workload digest, a log line or an error message:
:class:`Credentials`' ``repr`` hides the password, and a helper's output is never echoed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from donjon.oci.errors import AuthFailed

__all__ = ["HELPER_TIMEOUT", "PASSWORD_ENV", "Credentials", "find_credentials"]

#: Where ``--registry-user``'s password comes from unless ``--registry-password-file`` is given.
PASSWORD_ENV = "DONJON_REGISTRY_PASSWORD"
_MAX_AUTH_FILE = 1 << 20
#: Seconds a credential helper may take (a keychain prompt that nobody answers must not hang a Keep).
HELPER_TIMEOUT = 10.0
_MAX_HELPER_OUTPUT = 64 * 1024
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


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
            found = _from_auth_file(_read(path, registry), registry, path, env)
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


def _from_auth_file(data: bytes, registry: str, path: Path, env: Mapping[str, str]) -> Credentials | None:
    try:
        doc = json.loads(data)
    except ValueError:
        # The file's content is a secret: name the file, not what is in it.
        raise AuthFailed(registry, f"credentials file {path} is not JSON") from None
    if isinstance(doc, dict):
        helpers = doc.get("credHelpers")
        helper = helpers.get(registry) if isinstance(helpers, dict) else None
        for name in (helper, doc.get("credsStore")):
            if isinstance(name, str) and name:
                found = _from_helper(name, registry, path, env)
                if found is not None:
                    return found
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


def _from_helper(name: str, registry: str, path: Path, env: Mapping[str, str]) -> Credentials | None:
    """Ask ``docker-credential-NAME`` for ``registry``'s credentials; ``None`` when it has none."""
    if not _HELPER_NAME.fullmatch(name):
        raise AuthFailed(registry, f"credentials file {path}: credential helper name {name!r} is not valid")
    program = f"docker-credential-{name}"
    try:
        returncode, stdout, stderr = _run_helper([program, "get"], registry.encode(), dict(env))
    except FileNotFoundError:
        raise AuthFailed(registry, f"credential helper {program} (named in {path}) is not on PATH") from None
    except TimeoutError:
        raise AuthFailed(
            registry, f"credential helper {program} gave no answer in {HELPER_TIMEOUT:.0f} s"
        ) from None
    except OSError as e:
        raise AuthFailed(registry, f"credential helper {program}: {e.strerror or e}") from None
    if returncode != 0 and len(stdout) <= _MAX_HELPER_OUTPUT:  # (stopped for saying too much)
        # The helpers answer "credentials not found in native keychain" (exit 1) for an unknown host.
        if b"not found" in stdout[:1024].lower() + stderr[:1024].lower():
            return None
        raise AuthFailed(registry, f"credential helper {program} failed (exit {returncode})")
    try:
        if len(stdout) > _MAX_HELPER_OUTPUT:
            raise ValueError("too long")
        answer = json.loads(stdout)
        username, secret = answer["Username"], answer["Secret"]
        if not isinstance(username, str) or not isinstance(secret, str):
            raise ValueError("not strings")
    except (ValueError, KeyError, TypeError):
        # Its output may hold a secret: say what is wrong, never what it said.
        raise AuthFailed(
            registry, f"credential helper {program} answered something that is not credentials"
        ) from None
    if username == "<token>":
        raise AuthFailed(
            registry,
            f"credential helper {program} holds an identity token (a docker login via OAuth); "
            "Donjon signs in with a user name and password or token only",
        )
    return Credentials(username, secret)


def _run_helper(argv: list[str], data: bytes, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run ``argv`` with ``data`` on stdin: its exit status, stdout and stderr, each read up to
    :data:`_MAX_HELPER_OUTPUT` + 1 bytes (more is not read: the helper is stopped), all within
    :data:`HELPER_TIMEOUT` (else :class:`TimeoutError`). ``subprocess.run`` would hold all it
    printed in memory before any check."""
    import selectors
    import subprocess  # only a config naming a helper pays for it
    import time

    deadline = time.monotonic() + HELPER_TIMEOUT
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    stdout, stderr = process.stdout.fileno(), process.stderr.fileno()
    out = {stdout: bytearray(), stderr: bytearray()}
    try:
        try:
            process.stdin.write(data)  # a host name: far less than a pipe's buffer
            process.stdin.close()
        except BrokenPipeError:
            pass  # it did not read its stdin; its answer says what it thinks of that
        with selectors.DefaultSelector() as selector:
            for fd in out:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map() and all(len(b) <= _MAX_HELPER_OUTPUT for b in out.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(argv[0])
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    out[key.fd] += chunk
                    if not chunk:
                        selector.unregister(key.fd)
            if selector.get_map():
                process.kill()  # it said more than any answer: refused without reading the rest
        try:
            returncode = process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            raise TimeoutError(argv[0]) from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    return returncode, bytes(out[stdout]), bytes(out[stderr])
