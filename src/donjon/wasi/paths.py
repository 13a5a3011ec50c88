"""Path resolution confined to a directory fd (openat-style), for the ``path_*`` functions.

A guest path is resolved one component at a time, each directory opened with ``O_NOFOLLOW`` relative
to the previous one, so nothing the guest names — ``..`` past the starting directory, an absolute path,
a symlink whose target is absolute or climbs out — ever reaches a host directory outside it. Symlinks
inside the tree are expanded here (their target spliced into the remaining path), at most
``MAX_SYMLINKS`` times (then ``ELOOP``, as Linux's limit of 40).

The result is a directory fd plus one final component (never containing ``/``), which the caller
passes to a ``*at`` system call that does not follow symlinks (``O_NOFOLLOW``, ``unlinkat``,
``fstatat(AT_SYMLINK_NOFOLLOW)``...), so even a symlink swapped in after resolution cannot lead out.
Escapes are ``EPERM``, the errno wasmtime gives (its cap-std "path escapes the directory" error); the
wasi-testsuite accepts ``EPERM`` or ``ENOTCAPABLE``.
"""

from __future__ import annotations

import contextlib
import errno
import os

from . import abi
from .errno_map import wasi_error
from .errors import Errno

MAX_SYMLINKS = 40
MAX_PATH = 4096  # bytes; longer guest paths are ENAMETOOLONG before any host call
# Directories held open at once while walking (one host fd each, for ".."). A path without symlinks
# cannot go deeper than this ("a/" repeated fills MAX_PATH); symlinks could splice in up to
# MAX_SYMLINKS more paths, i.e. ~80000 host fds for one call, so deeper walks are ENAMETOOLONG.
MAX_DEPTH = MAX_PATH // 2

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Resolved:
    """A resolved path: ``name`` inside the host directory ``dir_fd``. Close it (or use ``with``)."""

    __slots__ = ("_owned", "dir_fd", "must_be_dir", "name")

    def __init__(self, dir_fd: int, name: str, must_be_dir: bool, owned: bool) -> None:
        self.dir_fd = dir_fd
        self.name = name
        self.must_be_dir = must_be_dir
        self._owned = owned

    def close(self) -> None:
        if self._owned:
            self._owned = False
            os.close(self.dir_fd)

    def __enter__(self) -> Resolved:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(path: str) -> tuple[list[str], bool]:
    """Components of a relative guest path and whether it ended with a slash."""
    if not path:
        raise Errno(abi.ENOENT)
    if "\x00" in path:
        raise Errno(abi.EILSEQ)
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise Errno(abi.ENAMETOOLONG)
    if path.startswith("/"):
        raise Errno(abi.EPERM)  # absolute paths name the host's root: never reachable
    trailing = path.endswith("/")
    return [c for c in path.split("/") if c and c != "."], trailing


def _readlink(name: str, dir_fd: int) -> str | None:
    """The target of ``name`` if it is a symlink, else None."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def resolve(base_fd: int, path: str, *, follow: bool) -> Resolved:
    """Resolve ``path`` below ``base_fd`` (borrowed, never closed).

    ``follow``: expand a symlink in the final component too (``LOOKUPFLAGS_SYMLINK_FOLLOW``). A trailing
    slash also forces that, as in POSIX, and marks the result ``must_be_dir``.
    Raises ``Errno`` (EPERM for escapes, ELOOP, ENOENT, ENOTDIR...).
    """
    components, must_be_dir = _split(path)
    # Kept reversed, so the next component is components[-1]: taking it and splicing a symlink's
    # target in front of the rest are then O(1) per component, not a shift of the whole list.
    components.reverse()
    # stack[0] is the base (borrowed); the rest are O_PATH fds we opened, closed on the way out.
    stack: list[int] = [base_fd]
    links = 0
    try:
        while True:
            if not components:
                # The path named the current directory itself ("dir/..", ".").
                return _finish(stack, ".", True)
            comp = components.pop()
            last = not components
            if comp == "..":
                if len(stack) == 1:
                    raise Errno(abi.EPERM)
                os.close(stack.pop())
                continue
            if last and not (follow or must_be_dir):
                return _finish(stack, comp, must_be_dir)
            target = _readlink(comp, stack[-1])
            if target is not None:
                links += 1
                if links > MAX_SYMLINKS:
                    raise Errno(abi.ELOOP)
                if target.startswith("/"):
                    raise Errno(abi.EPERM)
                if not target:
                    raise Errno(abi.ENOENT)
                if target.endswith("/") and last:
                    must_be_dir = True
                components.extend(reversed([c for c in target.split("/") if c and c != "."]))
                continue
            if last:
                return _finish(stack, comp, must_be_dir)
            if len(stack) > MAX_DEPTH:  # stack[0] is the base: MAX_DEPTH fds of ours are open
                raise Errno(abi.ENAMETOOLONG)
            try:
                fd = os.open(comp, _DIR_FLAGS, dir_fd=stack[-1])
            except OSError as e:
                if e.errno == errno.ELOOP:  # swapped for a symlink since readlink: retry
                    components.append(comp)
                    links += 1
                    if links > MAX_SYMLINKS:
                        raise Errno(abi.ELOOP) from None
                    continue
                raise
            stack.append(fd)
    except OSError as e:
        _close_all(stack)
        raise wasi_error(e) from None
    except BaseException:
        _close_all(stack)
        raise


def _finish(stack: list[int], name: str, must_be_dir: bool) -> Resolved:
    top = stack[-1]
    owned = len(stack) > 1  # stack[0] is the caller's base fd, borrowed
    if owned:
        stack.pop()
    _close_all(stack)
    return Resolved(top, name, must_be_dir, owned)


def _close_all(stack: list[int]) -> None:
    # stack[0] is borrowed.
    for fd in stack[1:]:
        with contextlib.suppress(OSError):
            os.close(fd)
    del stack[1:]
