"""The in-memory read-only directory (donjon.wasi.memfs), through the host's WASI functions' logic."""

from __future__ import annotations

import pytest

from donjon.wasi import abi
from donjon.wasi.errors import Errno
from donjon.wasi.memfs import MemoryDirectoryFile, MemoryEntry

NS = 1_700_000_000_000_000_000


def _dir(state: dict[str, MemoryEntry]) -> MemoryDirectoryFile:
    return MemoryDirectoryFile(lambda: state, preopen_name="/run/secrets")


def _read_all(f: object) -> bytes:
    buf = bytearray(64)
    n = f.read([memoryview(buf)])  # type: ignore[attr-defined]
    return bytes(buf[:n])


def test_a_file_reads_its_bytes_and_an_open_file_keeps_them_when_the_value_changes() -> None:
    state = {"db-password": MemoryEntry(b"one", NS)}
    d = _dir(state)
    first = d.open_path("db-password", 0, abi.RIGHTS_ALL, 0)
    state["db-password"] = MemoryEntry(b"two!", NS + 1)
    assert _read_all(first) == b"one"
    again = d.open_path("./db-password", 0, abi.RIGHTS_ALL, 0)
    assert _read_all(again) == b"two!"
    assert d.stat_path("db-password")[4] == 4 and d.stat_path("db-password")[6] == NS + 1


@pytest.mark.parametrize(
    ("path", "oflags", "fdflags", "errno"),
    [
        ("db-password", abi.OFLAGS_TRUNC, 0, abi.EPERM),
        ("new", abi.OFLAGS_CREAT, 0, abi.EPERM),
        ("db-password", 0, abi.FDFLAGS_APPEND, abi.EPERM),
        ("../etc/passwd", 0, 0, abi.EPERM),
        ("/etc/passwd", 0, 0, abi.EPERM),
        ("missing", 0, 0, abi.ENOENT),
        ("db-password/x", 0, 0, abi.ENOTDIR),
        ("db-password", abi.OFLAGS_DIRECTORY, 0, abi.ENOTDIR),
    ],
)
def test_the_directory_is_read_only_flat_and_closed_upwards(
    path: str, oflags: int, fdflags: int, errno: int
) -> None:
    d = _dir({"db-password": MemoryEntry(b"x", NS)})
    with pytest.raises(Errno) as e:
        d.open_path(path, oflags, abi.RIGHTS_ALL, fdflags)
    assert e.value.code == errno


def test_files_carry_no_right_to_write_and_the_listing_names_each_secret() -> None:
    d = _dir({"b": MemoryEntry(b"1", NS), "a": MemoryEntry(b"2", NS)})
    f = d.open_path("a", 0, abi.RIGHTS_ALL, 0)
    assert f.rights_base & abi.RIGHTS_WRITING == 0 and d.rights_base & abi.RIGHTS_WRITING == 0
    assert [name for _, _, name in d.readdir(fresh=True)] == [b".", b"..", b"a", b"b"]
    with pytest.raises(Errno):
        f.write([memoryview(b"x")])
    assert "2" not in repr(MemoryEntry(b"2", NS))
