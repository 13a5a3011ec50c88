"""path_* stays inside the pre-opened directory: hostile paths never reach the host outside it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from donjon.wasi import GuestSpec, PreopenDir, Stdio, abi

P = 1024  # where the harness puts path strings in guest memory
OUT = 64  # where results (fds, filestats) are written


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """tmp/outside/secret (must stay unreachable) and tmp/root (the guest's "/")."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "file").write_text("inside")
    (root / "dir").mkdir()
    os.symlink("../outside/secret", root / "escape_rel")
    os.symlink(str(outside / "secret"), root / "escape_abs")
    os.symlink(str(outside), root / "escape_dir")
    os.symlink("dir/../../outside", root / "escape_nested")
    os.symlink("loop_b", root / "loop_a")
    os.symlink("loop_a", root / "loop_b")
    os.symlink("dir", root / "inner_link")
    return root


@pytest.fixture
def guest(make_guest: Any, sandbox: Path) -> Any:
    files = [Stdio("stdin"), Stdio("stdout"), Stdio("stderr"), PreopenDir(sandbox, "/", writable=True)]
    return make_guest(GuestSpec(args=["t"], env=[], files=files))


def _open(
    guest: Any, path: str, *, follow: bool = True, oflags: int = 0, rights: int = abi.RIGHT_FD_READ
) -> int:
    ptr, n = guest.path(P, path)
    dirflags = abi.LOOKUPFLAGS_SYMLINK_FOLLOW if follow else 0
    return int(guest.call("path_open", 3, dirflags, ptr, n, oflags, rights, 0, 0, OUT))


ESCAPES = [
    "../outside/secret",
    "/etc/passwd",
    "/",
    "dir/../../outside/secret",
    "dir/../..",
    "escape_rel",
    "escape_abs",
    "escape_dir/secret",
    "escape_nested/secret",
    "inner_link/../../outside/secret",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_escaping_path_open_is_refused(guest: Any, path: str) -> None:
    assert _open(guest, path) in (abi.EPERM, abi.ENOTCAPABLE)


@pytest.mark.parametrize("path", ESCAPES)
def test_escaping_path_filestat_is_refused(guest: Any, path: str) -> None:
    ptr, n = guest.path(P, path)
    errno = guest.call("path_filestat_get", 3, abi.LOOKUPFLAGS_SYMLINK_FOLLOW, ptr, n, OUT)
    assert errno in (abi.EPERM, abi.ENOTCAPABLE)


@pytest.mark.parametrize("path", ["../outside/new", "dir/../../outside/new", "escape_dir/new", "/tmp/new"])
def test_escaping_create_directory_touches_nothing(guest: Any, sandbox: Path, path: str) -> None:
    ptr, n = guest.path(P, path)
    assert guest.call("path_create_directory", 3, ptr, n) in (abi.EPERM, abi.ENOTCAPABLE)
    assert not (sandbox.parent / "outside" / "new").exists()


@pytest.mark.parametrize("path", ["../outside/secret", "escape_dir/secret", "escape_nested/secret"])
def test_escaping_unlink_touches_nothing(guest: Any, sandbox: Path, path: str) -> None:
    ptr, n = guest.path(P, path)
    assert guest.call("path_unlink_file", 3, ptr, n) in (abi.EPERM, abi.ENOTCAPABLE)
    assert (sandbox.parent / "outside" / "secret").read_text() == "host secret"


def test_rename_out_of_the_sandbox_is_refused(guest: Any, sandbox: Path) -> None:
    src, sn = guest.path(P, "file")
    dst, dn = guest.path(P + 256, "../outside/stolen")
    assert guest.call("path_rename", 3, src, sn, 3, dst, dn) in (abi.EPERM, abi.ENOTCAPABLE)
    assert (sandbox / "file").exists()
    assert not (sandbox.parent / "outside" / "stolen").exists()


def test_symlink_with_absolute_target_is_refused(guest: Any, sandbox: Path) -> None:
    target, tn = guest.path(P, "/etc/passwd")
    link, ln = guest.path(P + 256, "newlink")
    assert guest.call("path_symlink", target, tn, 3, link, ln) in (abi.EPERM, abi.ENOTCAPABLE)
    assert not os.path.lexists(sandbox / "newlink")


def test_symlink_to_parent_cannot_be_followed(guest: Any, sandbox: Path) -> None:
    # Creating a symlink whose target climbs out is harmless (it is just text); following it is refused.
    target, tn = guest.path(P, "../outside")
    link, ln = guest.path(P + 256, "up")
    assert guest.call("path_symlink", target, tn, 3, link, ln) == 0
    assert _open(guest, "up/secret") in (abi.EPERM, abi.ENOTCAPABLE)


def test_symlink_loop_is_eloop(guest: Any) -> None:
    assert _open(guest, "loop_a") == abi.ELOOP
    assert _open(guest, "loop_a/x") == abi.ELOOP


def test_path_through_a_file_is_enotdir(guest: Any) -> None:
    assert _open(guest, "file/x") == abi.ENOTDIR
    assert _open(guest, "file/") == abi.ENOTDIR


def test_nofollow_final_symlink_is_eloop(guest: Any) -> None:
    assert _open(guest, "escape_abs", follow=False) == abi.ELOOP


def test_paths_inside_still_work(guest: Any) -> None:
    for path in ["file", "dir/../file", "./file", "inner_link/../file", "dir/./../dir/../file"]:
        assert _open(guest, path) == 0, path
        fd = guest.u32(OUT)
        assert fd > 3
        assert guest.call("fd_close", fd) == 0


def test_nul_in_path_is_refused(guest: Any) -> None:
    assert _open(guest, "file\0") in (abi.EILSEQ, abi.EINVAL, abi.ENOENT)


def test_invalid_utf8_path_is_eilseq(guest: Any) -> None:
    guest.write(P, b"\xff\xfe")
    assert guest.call("path_open", 3, 0, P, 2, 0, abi.RIGHT_FD_READ, 0, 0, OUT) == abi.EILSEQ


def test_path_ops_need_a_directory_fd(guest: Any) -> None:
    assert _open(guest, "file") == 0
    file_fd = guest.u32(OUT)
    ptr, n = guest.path(P, "x")
    assert guest.call("path_open", file_fd, 0, ptr, n, 0, 0, 0, 0, OUT) == abi.ENOTDIR
    assert guest.call("path_open", 99, 0, ptr, n, 0, 0, 0, 0, OUT) == abi.EBADF
