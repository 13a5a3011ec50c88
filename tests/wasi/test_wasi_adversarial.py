"""A hostile guest against the WASI host: each test is one attack and the sandbox property it must not break.

Every call crosses the real wasm -> host boundary (the ``make_guest`` harness in conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from donjon.wasi import GuestSpec, PreopenDir, Stdio, abi

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
