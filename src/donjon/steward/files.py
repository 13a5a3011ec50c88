"""The Steward's files on disk: explicit modes whatever the umask, secrets never through a symlink.

Creating (``donjon steward init``, ``donjon steward tls-cert``):

- a secret (the CA key, the challenge secret, the HTTPS key, a simulated vendor's keys) is
  opened with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600, then ``fchmod``-ed to 0600 (the
  umask only ever removes bits, and a umask of 000 must not matter either way). ``replace=True``
  (``--force``, a renewed certificate) writes a new file under a fresh temporary name the same way
  and ``rename(2)``-s it over the old one: ``rename`` replaces a planted symlink itself and never
  writes where it points, and a reader sees the old file or the new one, never half of either;
- a public file (certificates, ``steward.toml``, ``policy.toml``) likewise, mode 0644;
- a directory is created (or found) and ``chmod``-ed to its mode (0755, or 0700 for private ones);
  a symlink where a directory should be is refused.

Checking (``donjon steward serve``, as OpenSSH checks its keys before using them): a key or
secret readable by group or others, or a configuration or policy file writable by them, is
:class:`UnsafePermissions` (a :class:`~donjon.steward.errors.ConfigError`, so ``serve`` exits 2)
naming the file and the ``chmod`` that fixes it.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from donjon.steward.errors import ConfigError

__all__ = [
    "PRIVATE_DIR_MODE",
    "PUBLIC_DIR_MODE",
    "PUBLIC_MODE",
    "SECRET_MODE",
    "UnsafePermissions",
    "check_public",
    "check_secret",
    "check_steward_files",
    "make_dir",
    "write_file",
    "write_public",
    "write_secret",
]

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
PUBLIC_DIR_MODE = 0o755
PRIVATE_DIR_MODE = 0o700

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePermissions(ConfigError):
    """A Steward file others may read (a secret) or write (configuration); ``fix`` is the command."""

    def __init__(self, path: str, reason: str, *, mode: int, fix: str) -> None:
        self.mode = mode
        self.fix = fix
        super().__init__(path, f"{reason} (mode {mode:04o}); fix: {fix}")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` (never an existing file, never through a symlink) holding ``data``, ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits from ``mode``; never added any
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def write_file(path: str | os.PathLike[str], data: bytes, *, mode: int, replace: bool = False) -> None:
    """Write ``data`` to a new file ``path`` with exactly ``mode`` (see the module docstring).

    Without ``replace`` an existing ``path`` (a symlink included, dangling or not) is
    :class:`FileExistsError`. With it the new file is written under a temporary name in the
    same directory and renamed over ``path``.
    """
    target = Path(path)
    if not replace:
        _write_new(target, data, mode)
        return
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.new")
    _write_new(temp, data, mode)
    try:
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_secret(path: str | os.PathLike[str], data: bytes, *, replace: bool = False) -> None:
    """A key or secret: mode 0600, whatever the umask."""
    write_file(path, data, mode=SECRET_MODE, replace=replace)


def write_public(path: str | os.PathLike[str], data: bytes | str, *, replace: bool = False) -> None:
    """A certificate or a configuration file: mode 0644, whatever the umask."""
    write_file(path, data.encode() if isinstance(data, str) else data, mode=PUBLIC_MODE, replace=replace)


def make_dir(
    path: str | os.PathLike[str], mode: int = PUBLIC_DIR_MODE, *, chmod_existing: bool = True
) -> None:
    """Create ``path`` (and missing parents) if needed, then give it exactly ``mode``.

    ``chmod_existing=False`` leaves the mode of a directory that was already there (the
    operator's ``--dir``, which may be their working directory). A symlink at ``path`` is refused
    (:class:`NotADirectoryError`): the Steward's folders hold its secrets, and a link could send
    them anywhere. Parents created on the way get 0755.
    """
    target = Path(path)
    if target.is_symlink():
        raise NotADirectoryError(errno.ENOTDIR, "is a symbolic link, not a directory", str(target))
    if not target.parent.exists():
        make_dir(target.parent, PUBLIC_DIR_MODE)
    try:
        os.mkdir(target, mode)
    except FileExistsError:
        if not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(target)) from None
        if not chmod_existing:
            return
    # Opened without following a link, so the mode goes to this directory and nowhere else.
    try:
        fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError as e:
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(target)) from e
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None  # a missing file is reported by whatever reads it, with its own message
    except OSError as e:
        raise ConfigError(str(path), f"cannot check its permissions: {e.strerror or e}") from e


def check_secret(path: Path) -> None:
    """Refuse a key or secret that group or others may read (or write)."""
    mode = _mode(path)
    if mode is not None and mode & 0o077:
        what = "readable" if mode & 0o044 else "writable"
        raise UnsafePermissions(
            str(path), f"a key or secret {what} by others", mode=mode, fix=f"chmod 600 {path}"
        )


def check_public(path: Path) -> None:
    """Refuse a configuration or policy file that group or others may write."""
    mode = _mode(path)
    if mode is not None and mode & 0o022:
        raise UnsafePermissions(
            str(path), "a configuration file writable by others", mode=mode, fix=f"chmod go-w {path}"
        )


def check_steward_files(*, secrets: Iterable[Path], configuration: Iterable[Path]) -> None:
    """Check every secret and configuration file, in order; the first unsafe one raises."""
    for path in secrets:
        check_secret(path)
    for path in configuration:
        check_public(path)
