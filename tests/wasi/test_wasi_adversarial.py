"""A hostile guest against the WASI host: each test is one attack and the sandbox property it must not break.

Every call crosses the real wasm -> host boundary (the ``make_guest`` harness in conftest.py).
"""

from __future__ import annotations

import os
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon.wasi import GuestSpec, PreopenDir, Stdio, abi, paths

STDIO = [Stdio("stdin"), Stdio("stdout"), Stdio("stderr")]
FILE_RIGHTS = abi.RIGHTS_REGULAR_FILE
DIR_RIGHTS = abi.RIGHTS_DIRECTORY


def _guest(make_guest: Any, *preopens: PreopenDir) -> Any:
    return make_guest(GuestSpec(args=["guest"], env=[], files=[*STDIO, *preopens]))


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_dropped_right_is_not_regained_by_reopening_the_directory(make_guest: Any, tmp_path: Path) -> None:
    guest = _guest(make_guest, PreopenDir(tmp_path, "/", writable=True))
    assert guest.call("fd_fdstat_get", 3, 0) == 0
    base, inheriting = guest.u64(8), guest.u64(16)
    dropped = ~abi.RIGHT_PATH_CREATE_DIRECTORY
    assert guest.call("fd_fdstat_set_rights", 3, base & dropped, inheriting & dropped) == 0
    p, n = guest.path(1024, ".")
    assert guest.call("path_open", 3, 0, p, n, abi.OFLAGS_DIRECTORY, DIR_RIGHTS, DIR_RIGHTS, 0, 0) == 0
    reopened = guest.u32(0)
    assert guest.call("fd_fdstat_get", reopened, 0) == 0
    assert guest.u64(8) & abi.RIGHT_PATH_CREATE_DIRECTORY == 0
    assert guest.u64(16) & abi.RIGHT_PATH_CREATE_DIRECTORY == 0
    p, n = guest.path(1024, "made")
    assert guest.call("path_create_directory", reopened, p, n) == abi.ENOTCAPABLE
    assert not (tmp_path / "made").exists()


def test_dropped_write_right_is_not_regained_on_a_file(make_guest: Any, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("keep")
    guest = _guest(make_guest, PreopenDir(tmp_path, "/", writable=True))
    assert guest.call("fd_fdstat_get", 3, 0) == 0
    base, inheriting = guest.u64(8), guest.u64(16)
    assert guest.call("fd_fdstat_set_rights", 3, base, inheriting & ~abi.RIGHT_FD_WRITE) == 0
    p, n = guest.path(1024, "f")
    assert guest.call("path_open", 3, 0, p, n, 0, FILE_RIGHTS, FILE_RIGHTS, 0, 0) == 0
    fd = guest.u32(0)
    guest.write(16, (64).to_bytes(4, "little") + (3).to_bytes(4, "little"))
    guest.write(64, b"xyz")
    assert guest.call("fd_write", fd, 16, 1, 8) == abi.ENOTCAPABLE
    assert (tmp_path / "f").read_text() == "keep"


def _nested(root: Path, name: str, depth: int) -> None:
    """``root/name/name/...`` ``depth`` levels deep (built fd by fd: the host path exceeds PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _remove_nested(root: Path, name: str) -> None:
    """Remove what ``_nested`` built, iteratively (shutil.rmtree, and so pytest's cleanup, recurses)."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while True:
            try:
                fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fds[-1]))
            except FileNotFoundError:
                break
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir(name, dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)


@pytest.fixture
def deep_tree(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    _remove_nested(tmp_path, "a")


def test_symlinks_cannot_make_one_walk_hold_unbounded_host_fds(make_guest: Any, deep_tree: Path) -> None:
    tmp_path = deep_tree
    # A guest can build this itself in a writable pre-open: a deep directory chain and a symlink
    # into it. Each level walked holds a host fd (for ".."), and symlinks splice in up to 40 more
    # paths of 4096 bytes: without a bound, one call could hold tens of thousands of host fds.
    depth = paths.MAX_PATH // 2 + 10  # deeper than any path without symlinks
    _nested(tmp_path, "a", depth)
    os.symlink("/".join(["a"] * 1000), tmp_path / "s")
    guest = _guest(make_guest, PreopenDir(tmp_path, "/", writable=True))
    before = _open_fds()
    p, n = guest.path(1024, "s/" + "/".join(["a"] * (depth - 1000)))
    assert guest.call("path_filestat_get", 3, 0, p, n, 8192) == abi.ENAMETOOLONG
    assert _open_fds() == before
    # As deep as a plain path can go still works.
    p, n = guest.path(1024, "/".join(["a"] * (paths.MAX_PATH // 2)))
    assert n <= 4096
    assert guest.call("path_filestat_get", 3, 0, p, n, 8192) == 0
    assert _open_fds() == before


def test_readdir_listings_do_not_pile_up_per_fd(make_guest: Any, tmp_path: Path) -> None:
    # fd_readdir keeps a listing so that cookies stay stable. Opening one large directory on many
    # fds and starting a listing on each must not keep one copy per fd: host memory would be
    # (fds x entries), e.g. 1024 fds x a read-only pre-open of a million files.
    for i in range(500):
        (tmp_path / f"entry-{i:05d}").touch()
    guest = _guest(make_guest, PreopenDir(tmp_path, "/", writable=False))
    p, n = guest.path(1024, ".")
    fds = []
    for _ in range(100):
        assert guest.call("path_open", 3, 0, p, n, abi.OFLAGS_DIRECTORY, DIR_RIGHTS, DIR_RIGHTS, 0, 0) == 0
        fds.append(guest.u32(0))
    tracemalloc.start()
    try:
        for fd in fds:
            assert guest.call("fd_readdir", fd, 4096, 256, 0, 0) == 0
        held, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A listing of 500 entries is ~70 KB: 100 of them ~7 MB, the 16 kept ones ~1.2 MB.
    assert held < 3 * 1024 * 1024
    # Each fd still lists every entry, cookie by cookie.
    names = []
    cookie = 0
    while True:
        assert guest.call("fd_readdir", fds[0], 4096, 4096, cookie, 0) == 0
        used = guest.u32(0)
        data = guest.read(4096, used)
        pos = 0
        while pos + 24 <= used:
            d_next, _ino, namlen, _type = struct.unpack_from("<QQIB3x", data, pos)
            if pos + 24 + namlen > used:
                break
            names.append(data[pos + 24 : pos + 24 + namlen])
            cookie = d_next
            pos += 24 + namlen
        if used < 4096:
            break
    assert sorted(names) == sorted([b".", b"..", *(f"entry-{i:05d}".encode() for i in range(500))])


def _dirents(guest: Any, fd: int) -> dict[bytes, int]:
    """name -> d_ino of one fd_readdir call (the directory must fit in 4 KiB)."""
    assert guest.call("fd_readdir", fd, 4096, 4096, 0, 0) == 0
    used = guest.u32(0)
    data = guest.read(4096, used)
    out, pos = {}, 0
    while pos + 24 <= used:
        _next, ino, namlen, _type = struct.unpack_from("<QQIB3x", data, pos)
        out[data[pos + 24 : pos + 24 + namlen]] = ino
        pos += 24 + namlen
    return out


def test_readdir_never_reveals_the_preopens_host_parent(make_guest: Any, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    guest = _guest(make_guest, PreopenDir(root, "/", writable=False))
    outside = os.stat(tmp_path).st_ino
    for path in (".", "sub/..", "sub/../."):
        p, n = guest.path(1024, path)
        assert guest.call("path_open", 3, 0, p, n, abi.OFLAGS_DIRECTORY, DIR_RIGHTS, 0, 0, 0) == 0
        entries = _dirents(guest, guest.u32(0))
        assert entries[b".."] == entries[b"."] == os.stat(root).st_ino != outside
    p, n = guest.path(1024, "sub")
    assert guest.call("path_open", 3, 0, p, n, abi.OFLAGS_DIRECTORY, DIR_RIGHTS, 0, 0, 0) == 0
    assert _dirents(guest, guest.u32(0))[b".."] == os.stat(root).st_ino  # a real parent, inside


# ---------------------------------------------------------------------------------------------
# Attacks that the host already withstood (kept as regression tests)
# ---------------------------------------------------------------------------------------------
def test_escaping_symlink_cannot_be_used_to_create_outside(make_guest: Any, tmp_path: Path) -> None:
    inside = tmp_path / "inside"
    inside.mkdir()
    guest = _guest(make_guest, PreopenDir(inside, "/", writable=True))
    t, tn = guest.path(1024, "../outside")
    d, dn = guest.path(2048, "dangling")
    assert guest.call("path_symlink", t, tn, 3, d, dn) == 0  # a relative target may name anything
    for follow in (0, abi.LOOKUPFLAGS_SYMLINK_FOLLOW):
        for oflags in (abi.OFLAGS_CREAT, abi.OFLAGS_CREAT | abi.OFLAGS_EXCL):
            rights = FILE_RIGHTS
            assert guest.call("path_open", 3, follow, d, dn, oflags, rights, rights, 0, 0) != 0
            assert guest.call("path_create_directory", 3, d, dn) != 0
    assert not (tmp_path / "outside").exists()
    t, tn = guest.path(1024, "/etc/passwd")
    assert guest.call("path_symlink", t, tn, 3, d, dn) == abi.EPERM


def test_read_only_files_cannot_be_moved_or_linked_into_a_writable_preopen(
    make_guest: Any, tmp_path: Path
) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "rw").mkdir()
    (tmp_path / "ro" / "secret").write_text("keep")
    guest = _guest(
        make_guest,
        PreopenDir(tmp_path / "rw", "/rw", writable=True),
        PreopenDir(tmp_path / "ro", "/ro", writable=False),
    )
    a, an = guest.path(1024, "secret")
    b, bn = guest.path(2048, "copy")
    assert guest.call("path_rename", 4, a, an, 3, b, bn) in (abi.EPERM, abi.ENOTCAPABLE)
    assert guest.call("path_link", 4, 0, a, an, 3, b, bn) in (abi.EPERM, abi.ENOTCAPABLE)
    # Nor through a symlink in the writable tree: resolution never leaves the pre-open it starts in.
    t, tn = guest.path(1024, "../ro/secret")
    assert guest.call("path_symlink", t, tn, 3, b, bn) == 0
    assert (
        guest.call("path_open", 3, abi.LOOKUPFLAGS_SYMLINK_FOLLOW, b, bn, 0, FILE_RIGHTS, 0, 0, 0)
        == abi.EPERM
    )
    assert os.listdir(tmp_path / "ro") == ["secret"]
    assert (tmp_path / "ro" / "secret").read_text() == "keep"


def test_renumbering_onto_stdio_never_closes_the_hosts_fd(make_guest: Any, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        guest = make_guest(
            GuestSpec(
                args=["guest"],
                env=[],
                files=[*STDIO, PreopenDir(tmp_path, "/", writable=True)],
                stdio_fds=(0, write_end, 2),
            )
        )
        assert guest.call("fd_renumber", 3, 1) == 0  # the pre-open replaces stdout
        assert guest.call("fd_prestat_get", 1, 0) == 0
        assert guest.call("fd_close", 1) == 0
        assert guest.call("fd_prestat_get", 1, 0) == abi.EBADF
        p, n = guest.path(1024, "x")
        assert guest.call("path_open", 1, 0, p, n, abi.OFLAGS_CREAT, FILE_RIGHTS, 0, 0, 0) == abi.EBADF
        os.write(write_end, b"host still owns it")  # not closed behind the host's back
        assert os.read(read_end, 100) == b"host still owns it"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_out_of_range_offsets_and_sizes_are_errnos(make_guest: Any, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("data")
    guest = _guest(make_guest, PreopenDir(tmp_path, "/", writable=True))
    p, n = guest.path(1024, "f")
    assert guest.call("path_open", 3, 0, p, n, 0, FILE_RIGHTS, 0, 0, 0) == 0
    fd = guest.u32(0)
    top = 2**64 - 1
    guest.write(16, (64).to_bytes(4, "little") + (4).to_bytes(4, "little"))
    assert guest.call("fd_pread", fd, 16, 1, 2**63, 8) == abi.EINVAL
    assert guest.call("fd_pwrite", fd, 16, 1, top, 8) == abi.EINVAL
    assert guest.call("fd_filestat_set_size", fd, 2**63) == abi.EINVAL
    assert guest.call("fd_seek", fd, 2**63, abi.WHENCE_SET, 0) == abi.EINVAL  # -2**63 as a signed delta
    assert guest.call("fd_seek", fd, 0, 3, 0) == abi.EINVAL
    assert guest.call("fd_advise", fd, top, top, abi.ADVICE_NORMAL) == abi.EINVAL
    flags = abi.FSTFLAGS_ATIM | abi.FSTFLAGS_MTIM
    assert guest.call("fd_filestat_set_times", fd, top, top, flags) == 0  # 2**64 ns fits a 64-bit time_t
    assert guest.call("fd_readdir", 3, 0, 64, top, 8) == 0 and guest.u32(8) == 0
    assert guest.host.internal_errors == []
    assert (tmp_path / "f").read_text() == "data"
