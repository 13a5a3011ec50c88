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
  a symlink where a directory should be is refused;
- a whole folder of them (``init``) is built in a :class:`StagedFolder` and moved into place at
  the end: a failure half-way leaves no partial folder for a second ``init`` to refuse, or for
  ``serve`` to half-use.

Checking (``donjon steward serve``, as OpenSSH checks its keys before using them): a key or
secret readable by group or others, a configuration or policy file writable by them, or either
owned by another user than the one serving (root aside) is :class:`UnsafePermissions` (a
:class:`~donjon.steward.errors.ConfigError`, so ``serve`` exits 2) naming the file and the
``chmod`` or ``chown`` that fixes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from donjon.steward.errors import ConfigError

__all__ = [
    "PRIVATE_DIR_MODE",
    "PUBLIC_DIR_MODE",
    "PUBLIC_MODE",
    "SECRET_MODE",
    "StagedFolder",
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


class StagedFolder:
    """A folder's files written under a temporary folder, then moved into place all at once.

    Write below :attr:`path`, then call :meth:`commit`; leaving the ``with`` block without it (an
    exception, Ctrl-C) removes what was written and leaves ``target`` as it was.

    - ``target`` missing: :attr:`path` is a sibling ``.<name>.<random>.new`` (on the same file
      system, so ``rename(2)`` can move it), mode 0700 while it is filled; :meth:`commit` gives
      it ``mode`` and renames it to ``target``, which appears whole or not at all. Parent folders
      created for it are removed again if nothing is committed.
    - ``target`` exists (``--force``, or the operator's folder holding other files): the stage is
      a hidden folder inside it (the same file system even when ``target`` is a mount point);
      :meth:`commit` first checks every folder on the way (a symlink or a file where a folder
      goes is refused before anything moves), then renames each staged file over its place,
      the file it replaces moved aside first. If a rename fails, everything done is undone in
      reverse, so the folder is as it was. Files of ``target`` that were not staged stay, and an
      existing ``target`` keeps its mode. Between two renames a reader may see some new files
      with some old ones: each file is whole, the set is complete only after :meth:`commit`.

    ``rename`` replaces a symlink itself and never writes where it points, so a link planted in
    ``target`` is moved aside and deleted, its target untouched.
    """

    def __init__(self, target: str | os.PathLike[str], mode: int = PUBLIC_DIR_MODE) -> None:
        self.target = Path(target)
        self.mode = mode
        self._committed = False
        self._created_parents: list[Path] = []
        if self.target.is_symlink():
            raise NotADirectoryError(errno.ENOTDIR, "is a symbolic link, not a directory", str(self.target))
        self._merge = os.path.lexists(self.target)
        if self._merge and not self.target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(self.target))
        tag = secrets.token_hex(6)
        if self._merge:
            self._stage = self.target / f".donjon-staged.{tag}"
            self.path = self._stage / "new"
            os.mkdir(self._stage, PRIVATE_DIR_MODE)
            try:
                os.mkdir(self.path, PRIVATE_DIR_MODE)
            except BaseException:
                self.discard()
                raise
        else:
            missing = [p for p in self.target.absolute().parents if not p.exists()]
            self._stage = self.target.with_name(f".{self.target.name}.{tag}.new")
            self.path = self._stage
            try:
                if missing:
                    self._created_parents = missing  # deepest first: the order to remove them in
                    make_dir(missing[0], PUBLIC_DIR_MODE)
                os.mkdir(self._stage, PRIVATE_DIR_MODE)
            except BaseException:
                self.discard()
                raise

    def __enter__(self) -> StagedFolder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove the stage (after :meth:`commit`, what it moved aside); harmless twice."""
        if os.path.lexists(self._stage):
            shutil.rmtree(self._stage)  # never follows a link inside it
        if not self._committed:
            for parent in self._created_parents:
                try:
                    os.rmdir(parent)
                except OSError:
                    break  # not empty any more: someone else uses it now
            self._created_parents = []

    def commit(self) -> None:
        """Move everything written below :attr:`path` into ``target`` (see the class)."""
        if self._committed:
            raise RuntimeError(f"{self.target}: already committed")
        if self._merge:
            self._merge_into_target()
        else:
            make_dir(self._stage, self.mode)
            try:
                os.rename(self._stage, self.target)  # onto an empty folder made meanwhile, too
            except OSError as e:  # a folder that appeared meanwhile and holds something
                raise OSError(e.errno, e.strerror, str(self.target)) from e
        self._committed = True

    def _entries(self) -> tuple[list[Path], list[Path]]:
        """The staged folders (parents first) and files, relative to :attr:`path`."""
        folders: list[Path] = []
        files: list[Path] = []
        for root, dirnames, filenames in os.walk(self.path):
            rel = Path(root).relative_to(self.path)
            for name in sorted(dirnames):
                (files if (Path(root) / name).is_symlink() else folders).append(rel / name)
            files.extend(rel / name for name in sorted(filenames))
        return folders, files

    def _merge_into_target(self) -> None:
        folders, files = self._entries()
        for rel in folders:  # every check before the first move
            there = self.target / rel
            if there.is_symlink():
                raise NotADirectoryError(errno.ENOTDIR, "is a symbolic link, not a directory", str(there))
            if os.path.lexists(there) and not there.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(there))
        aside = self._stage / "old"
        os.mkdir(aside, PRIVATE_DIR_MODE)
        undo: list[tuple[Path, Path | None]] = []  # (moved to, moved from), or (made folder, None)
        there = self.target
        try:
            for rel in folders:
                there = self.target / rel
                existed = there.exists()
                make_dir(there, stat.S_IMODE(os.lstat(self.path / rel).st_mode))
                if not existed:
                    undo.append((there, None))
                os.makedirs(aside / rel, PRIVATE_DIR_MODE, exist_ok=True)
            for rel in files:
                there = self.target / rel
                if os.path.lexists(there):
                    os.rename(there, aside / rel)
                    undo.append((aside / rel, there))
                os.rename(self.path / rel, there)
                undo.append((there, self.path / rel))
        except BaseException as e:
            for moved, source in reversed(undo):
                with contextlib.suppress(OSError):  # undo all that can be undone
                    if source is None:
                        os.rmdir(moved)
                    else:
                        os.rename(moved, source)
            if isinstance(e, OSError):  # named by the file in the target, not in the stage
                raise OSError(e.errno, e.strerror, str(there)) from e
            raise


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None  # a missing file is reported by whatever reads it, with its own message
    except OSError as e:
        raise ConfigError(str(path), f"cannot check its permissions: {e.strerror or e}") from e


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid with no name (a container's): chown takes the number
        return str(uid)


def _check_owner(path: Path, st: os.stat_result, what: str) -> None:
    """Refuse a file owned by another user than the one running (root aside, as OpenSSH does):
    its owner can change its mode and its content whatever the mode says now."""
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise UnsafePermissions(
            str(path),
            f"{what} owned by another user ({_user(st.st_uid)}), who can change it",
            mode=stat.S_IMODE(st.st_mode),
            fix=f"chown {_user(me)} {path}",
        )


def check_secret(path: Path) -> None:
    """Refuse a key or secret that another user owns, or that group or others may read (or write)."""
    st = _stat(path)
    if st is None:
        return
    _check_owner(path, st, "a key or secret")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        what = "readable" if mode & 0o044 else "writable"
        raise UnsafePermissions(
            str(path), f"a key or secret {what} by others", mode=mode, fix=f"chmod 600 {path}"
        )


def check_public(path: Path) -> None:
    """Refuse a configuration or policy file that another user owns, or that group or others may write."""
    st = _stat(path)
    if st is None:
        return
    _check_owner(path, st, "a configuration file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise UnsafePermissions(
            str(path), "a configuration file writable by others", mode=mode, fix=f"chmod go-w {path}"
        )


def check_steward_files(*, secrets: Iterable[Path], configuration: Iterable[Path]) -> None:
    """Check every secret and configuration file, in order; the first unsafe one raises."""
    for path in secrets:
        check_secret(path)
    for path in configuration:
        check_public(path)
