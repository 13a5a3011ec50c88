"""Donjon's WASI host: bounds checks, sandboxing of env/args/fds, exit codes, traps, poll, sockets."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.wasi import (
    GuestLinkError,
    GuestSpec,
    GuestTrap,
    InvalidGuestSpec,
    PreopenDir,
    PreopenError,
    Stdio,
    WasiError,
    abi,
    run_module,
)
from donjon.wasi.files import OpenFile, StdioFile
from donjon.wasi.host import SIGNATURES

PAGE = 65536
U32 = st.integers(min_value=0, max_value=2**32 - 1)
STDIO = [Stdio("stdin"), Stdio("stdout"), Stdio("stderr")]


def _spec(files: list[Any] | None = None, **kw: Any) -> GuestSpec:
    return GuestSpec(
        args=kw.get("args", ["main.wasm"]),
        env=kw.get("env", []),
        files=files or [],
        stdio_fds=kw.get("stdio_fds", (0, 1, 2)),
    )


# ---------------------------------------------------------------------------------------------
# "A guest pointer outside memory is EFAULT" (never a host exception, never a crash)
# ---------------------------------------------------------------------------------------------
_HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def plain_guest(make_guest: Any) -> Any:
    # One guest for all examples of a property: the calls under test leave no state that matters.
    return make_guest(_spec(args=["prog", "x" * 10]))


@pytest.fixture
def stdout_guest(make_guest: Any, tmp_path: Path) -> Any:
    with open(tmp_path / "out", "wb") as out:
        fd = os.dup(out.fileno())
    guest = make_guest(_spec(STDIO, stdio_fds=(0, fd, 2)))
    yield guest
    os.close(fd)


@_HYP
@given(ptr=U32, length=st.integers(min_value=0, max_value=2 * PAGE))
def test_random_get_outside_memory_is_efault(plain_guest: Any, ptr: int, length: int) -> None:
    errno = plain_guest.call("random_get", ptr, length)
    assert errno == (abi.EFAULT if ptr + length > plain_guest.size() else 0)


@_HYP
@given(iovs=U32, nwritten=U32, buf=U32, buf_len=st.integers(min_value=0, max_value=PAGE))
def test_fd_write_outside_memory_is_efault(
    stdout_guest: Any, iovs: int, nwritten: int, buf: int, buf_len: int
) -> None:
    guest = stdout_guest
    size = guest.size()
    if iovs + 8 <= size:
        guest.write(iovs, buf.to_bytes(4, "little") + buf_len.to_bytes(4, "little"))
    errno = guest.call("fd_write", 1, iovs, 1, nwritten)
    in_range = iovs + 8 <= size and buf + buf_len <= size
    if not in_range:
        assert errno == abi.EFAULT
    elif nwritten + 4 > size:
        assert errno == abi.EFAULT  # the data went out, the count could not be stored
    else:
        assert errno == 0
        assert guest.u32(nwritten) == buf_len


@_HYP
@given(argv=U32, argv_buf=U32)
def test_args_get_outside_memory_is_efault(plain_guest: Any, argv: int, argv_buf: int) -> None:
    size = plain_guest.size()
    errno = plain_guest.call("args_get", argv, argv_buf)
    fits = argv + 8 <= size and argv_buf + len(b"prog\0" + b"x" * 10 + b"\0") <= size
    assert errno == (0 if fits else abi.EFAULT)


@_HYP
@given(ptr=U32, count=st.integers(min_value=0, max_value=64))
def test_poll_oneoff_outside_memory_is_efault(plain_guest: Any, ptr: int, count: int) -> None:
    in_range = ptr + 48 * count <= plain_guest.size()
    if in_range:
        plain_guest.write(ptr, bytes(48 * count))  # zeroed: clock subscriptions that expire at once
    errno = plain_guest.call("poll_oneoff", ptr, ptr, count, ptr)
    if count == 0:
        assert errno == abi.EINVAL
    else:
        assert errno == (0 if in_range else abi.EFAULT)


@_HYP
@given(ptr=U32)
def test_clock_time_get_outside_memory_is_efault(plain_guest: Any, ptr: int) -> None:
    errno = plain_guest.call("clock_time_get", abi.CLOCK_MONOTONIC, 0, ptr)
    assert errno == (abi.EFAULT if ptr + 8 > plain_guest.size() else 0)


def test_pointer_into_grown_memory_is_valid(make_guest: Any) -> None:
    guest = make_guest(_spec())
    assert guest.call("random_get", PAGE + 100, 16) == abi.EFAULT
    assert guest.grow(2) == 1
    assert guest.call("random_get", PAGE + 100, 16) == 0
    assert guest.call("clock_time_get", abi.CLOCK_REALTIME, 0, 3 * PAGE - 8) == 0
    assert guest.u64(3 * PAGE - 8) > 1_600_000_000 * 10**9


def test_iovec_array_too_long_is_einval(make_guest: Any) -> None:
    guest = make_guest(_spec(STDIO))
    assert guest.call("fd_write", 1, 0, 100_000, 0) == abi.EINVAL


# ---------------------------------------------------------------------------------------------
# The guest sees nothing of the host it was not given
# ---------------------------------------------------------------------------------------------
def test_no_inherited_environment(make_guest: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DONJON_HOST_SECRET", "leak")
    guest = make_guest(_spec(args=["only"]))
    assert guest.call("environ_sizes_get", 0, 4) == 0
    assert (guest.u32(0), guest.u32(4)) == (0, 0)
    assert guest.call("args_sizes_get", 0, 4) == 0
    assert (guest.u32(0), guest.u32(4)) == (1, 5)


def test_environment_is_exactly_the_given_one(make_guest: Any) -> None:
    guest = make_guest(_spec(env=[("A", "1"), ("B", "x=y")]))
    assert guest.call("environ_sizes_get", 0, 4) == 0
    assert (guest.u32(0), guest.u32(4)) == (2, len("A=1\0B=x=y\0"))
    assert guest.call("environ_get", 100, 200) == 0
    assert guest.read(200, 10) == b"A=1\0B=x=y\0"
    assert (guest.u32(100), guest.u32(104)) == (200, 204)


def test_no_fds_beyond_the_given_ones(make_guest: Any) -> None:
    guest = make_guest(_spec(STDIO))
    for fd in (3, 4, 100):
        assert guest.call("fd_fdstat_get", fd, 0) == abi.EBADF
        assert guest.call("fd_prestat_get", fd, 0) == abi.EBADF
    assert guest.call("fd_prestat_get", 1, 0) == abi.EBADF  # stdio is not a pre-open


def test_preopen_is_reported_with_its_guest_name(make_guest: Any, tmp_path: Path) -> None:
    guest = make_guest(_spec([*STDIO, PreopenDir(tmp_path, "/data")]))
    assert guest.call("fd_prestat_get", 3, 0) == 0
    assert guest.read(0, 1) == b"\0" and guest.u32(4) == 5
    assert guest.call("fd_prestat_dir_name", 3, 16, 4) == abi.ENAMETOOLONG
    assert guest.call("fd_prestat_dir_name", 3, 16, 5) == 0
    assert guest.read(16, 5) == b"/data"


def test_null_file_reads_eof_and_swallows_writes(make_guest: Any) -> None:
    guest = make_guest(_spec([Stdio("null")]))
    guest.write(0, (16).to_bytes(4, "little") + (5).to_bytes(4, "little"))
    assert guest.call("fd_write", 0, 0, 1, 8) == 0 and guest.u32(8) == 5
    assert guest.call("fd_read", 0, 0, 1, 8) == 0 and guest.u32(8) == 0


# ---------------------------------------------------------------------------------------------
# A read-only pre-open refuses every write
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def ro_guest(make_guest: Any, tmp_path: Path) -> Any:
    root = tmp_path / "ro"
    root.mkdir()
    (root / "file").write_text("original")
    (root / "sub").mkdir()
    return make_guest(_spec([*STDIO, PreopenDir(root, "/", writable=False)]))


REFUSED = (abi.EPERM, abi.ENOTCAPABLE)


def test_read_only_preopen_refuses_create_and_truncate(ro_guest: Any, tmp_path: Path) -> None:
    p, n = ro_guest.path(1024, "new")
    assert ro_guest.call("path_open", 3, 0, p, n, abi.OFLAGS_CREAT, abi.RIGHT_FD_WRITE, 0, 0, 0) in REFUSED
    p, n = ro_guest.path(1024, "file")
    assert ro_guest.call("path_open", 3, 0, p, n, abi.OFLAGS_TRUNC, abi.RIGHT_FD_WRITE, 0, 0, 0) in REFUSED
    assert not (tmp_path / "ro" / "new").exists()
    assert (tmp_path / "ro" / "file").read_text() == "original"


def test_read_only_preopen_file_cannot_be_written(ro_guest: Any, tmp_path: Path) -> None:
    p, n = ro_guest.path(1024, "file")
    rights = abi.RIGHT_FD_READ | abi.RIGHT_FD_WRITE | abi.RIGHT_FD_FILESTAT_SET_SIZE
    assert ro_guest.call("path_open", 3, 0, p, n, 0, rights, 0, 0, 0) == 0
    fd = ro_guest.u32(0)
    ro_guest.write(16, (64).to_bytes(4, "little") + (3).to_bytes(4, "little"))
    ro_guest.write(64, b"xyz")
    assert ro_guest.call("fd_write", fd, 16, 1, 8) in (*REFUSED, abi.EBADF)
    assert ro_guest.call("fd_filestat_set_size", fd, 0) in (*REFUSED, abi.EBADF)
    assert ro_guest.call("fd_read", fd, 16, 1, 8) == 0 and ro_guest.read(64, 3) == b"ori"
    assert (tmp_path / "ro" / "file").read_text() == "original"


@pytest.mark.parametrize("op", ["mkdir", "unlink", "rmdir", "rename", "symlink", "link", "utimes"])
def test_read_only_preopen_refuses_tree_changes(ro_guest: Any, tmp_path: Path, op: str) -> None:
    g = ro_guest
    a, an = g.path(1024, "file")
    b, bn = g.path(2048, "other")
    s, sn = g.path(3072, "sub")
    errno = {
        "mkdir": lambda: g.call("path_create_directory", 3, b, bn),
        "unlink": lambda: g.call("path_unlink_file", 3, a, an),
        "rmdir": lambda: g.call("path_remove_directory", 3, s, sn),
        "rename": lambda: g.call("path_rename", 3, a, an, 3, b, bn),
        "symlink": lambda: g.call("path_symlink", a, an, 3, b, bn),
        "link": lambda: g.call("path_link", 3, 0, a, an, 3, b, bn),
        "utimes": lambda: g.call("path_filestat_set_times", 3, 0, a, an, 0, 0, abi.FSTFLAGS_MTIM_NOW),
    }[op]()
    assert errno in REFUSED
    assert sorted(os.listdir(tmp_path / "ro")) == ["file", "sub"]


def test_read_only_preopen_lacks_writing_rights(ro_guest: Any) -> None:
    assert ro_guest.call("fd_fdstat_get", 3, 0) == 0
    base, inheriting = ro_guest.u64(8), ro_guest.u64(16)
    assert base & abi.RIGHTS_WRITING == 0
    assert inheriting & abi.RIGHTS_WRITING == 0
    assert base & abi.RIGHT_PATH_OPEN


# ---------------------------------------------------------------------------------------------
# rights, renumbering, sockets
# ---------------------------------------------------------------------------------------------
def test_rights_can_only_be_dropped(make_guest: Any, tmp_path: Path) -> None:
    guest = make_guest(_spec([*STDIO, PreopenDir(tmp_path, "/", writable=True)]))
    assert guest.call("fd_fdstat_get", 3, 0) == 0
    base, inheriting = guest.u64(8), guest.u64(16)
    dropped = base & ~abi.RIGHT_PATH_CREATE_DIRECTORY
    assert guest.call("fd_fdstat_set_rights", 3, dropped, inheriting) == 0
    p, n = guest.path(1024, "d")
    assert guest.call("path_create_directory", 3, p, n) == abi.ENOTCAPABLE
    assert guest.call("fd_fdstat_set_rights", 3, base, inheriting) == abi.ENOTCAPABLE


def test_renumber_moves_and_closes(make_guest: Any, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("abc")
    guest = make_guest(_spec([*STDIO, PreopenDir(tmp_path, "/", writable=True)]))
    p, n = guest.path(1024, "f")
    assert guest.call("path_open", 3, 0, p, n, 0, abi.RIGHT_FD_READ, 0, 0, 0) == 0
    fd = guest.u32(0)
    assert guest.call("fd_renumber", fd, 2) == 0
    assert guest.call("fd_fdstat_get", fd, 0) == abi.EBADF
    guest.write(16, (64).to_bytes(4, "little") + (3).to_bytes(4, "little"))
    assert guest.call("fd_read", 2, 16, 1, 8) == 0 and guest.read(64, 3) == b"abc"
    assert guest.call("fd_renumber", 2, 77) == abi.EBADF


def test_sock_functions_on_non_sockets(make_guest: Any) -> None:
    guest = make_guest(_spec(STDIO))
    assert guest.call("sock_shutdown", 1, abi.SDFLAGS_WR) == abi.ENOTSOCK
    assert guest.call("sock_shutdown", 9, abi.SDFLAGS_WR) == abi.EBADF
    assert guest.call("sock_accept", 1, 0, 0) == abi.ENOTSOCK
    assert guest.call("sock_recv", 0, 0, 0, 0, 8, 12) == abi.ENOTSOCK
    assert guest.call("sock_send", 1, 0, 0, 0, 8) == abi.ENOTSOCK
    assert guest.call("sock_send", 9, 0, 0, 0, 8) == abi.EBADF


# ---------------------------------------------------------------------------------------------
# clocks, random, poll
# ---------------------------------------------------------------------------------------------
def test_clocks(make_guest: Any) -> None:
    guest = make_guest(_spec())
    assert guest.call("clock_time_get", abi.CLOCK_MONOTONIC, 0, 0) == 0
    assert guest.call("clock_time_get", abi.CLOCK_MONOTONIC, 0, 8) == 0
    assert guest.u64(8) >= guest.u64(0) > 0
    assert guest.call("clock_res_get", abi.CLOCK_REALTIME, 16) == 0 and guest.u64(16) >= 1
    assert guest.call("clock_time_get", 99, 0, 0) == abi.EINVAL


def test_random_get_fills_from_the_csprng(make_guest: Any) -> None:
    guest = make_guest(_spec())
    assert guest.call("random_get", 0, 4096) == 0
    first = guest.read(0, 4096)
    assert guest.call("random_get", 0, 4096) == 0
    assert first != guest.read(0, 4096) and len(set(first)) > 200


def _clock_sub(userdata: int, timeout_ns: int) -> bytes:
    head = abi.SUBSCRIPTION_HEAD.pack(userdata, abi.EVENTTYPE_CLOCK)
    return head + abi.SUBSCRIPTION_CLOCK.pack(abi.CLOCK_MONOTONIC, timeout_ns, 0, 0) + bytes(6)


def _fd_sub(userdata: int, tag: int, fd: int) -> bytes:
    return abi.SUBSCRIPTION_HEAD.pack(userdata, tag) + abi.SUBSCRIPTION_FD.pack(fd) + bytes(28)


def test_poll_oneoff_clock_sleeps(make_guest: Any) -> None:
    guest = make_guest(_spec())
    guest.write(0, _clock_sub(7, 30_000_000))
    start = time.monotonic()
    assert guest.call("poll_oneoff", 0, 1024, 1, 2048) == 0
    assert time.monotonic() - start >= 0.025
    assert guest.u32(2048) == 1
    userdata, error, tag, _, _ = abi.EVENT.unpack(guest.read(1024, 32))
    assert (userdata, error, tag) == (7, 0, abi.EVENTTYPE_CLOCK)


def test_poll_oneoff_fd_readiness(make_guest: Any) -> None:
    r, w = os.pipe()
    try:
        guest = make_guest(_spec(STDIO, stdio_fds=(r, 1, 2)))
        guest.write(0, _fd_sub(1, abi.EVENTTYPE_FD_READ, 0) + _clock_sub(2, 5_000_000_000))
        os.write(w, b"hello")
        assert guest.call("poll_oneoff", 0, 1024, 2, 2048) == 0
        assert guest.u32(2048) == 1
        userdata, error, tag, nbytes, _ = abi.EVENT.unpack(guest.read(1024, 32))
        assert (userdata, error, tag, nbytes) == (1, 0, abi.EVENTTYPE_FD_READ, 5)
    finally:
        os.close(r)
        os.close(w)


def test_poll_oneoff_bad_fd_and_no_subscriptions(make_guest: Any) -> None:
    guest = make_guest(_spec(STDIO))
    assert guest.call("poll_oneoff", 0, 1024, 0, 2048) == abi.EINVAL
    guest.write(0, _fd_sub(5, abi.EVENTTYPE_FD_READ, 42))
    assert guest.call("poll_oneoff", 0, 1024, 1, 2048) == 0
    userdata, error, tag, _, _ = abi.EVENT.unpack(guest.read(1024, 32))
    assert (userdata, error, tag) == (5, abi.EBADF, abi.EVENTTYPE_FD_READ)


# ---------------------------------------------------------------------------------------------
# run_module: exit codes, traps, linking, closing
# ---------------------------------------------------------------------------------------------
def _module(engine: wasmtime.Engine, body: str, imports: str = "", start: bool = True) -> wasmtime.Module:
    export = '(export "_start")' if start else ""
    wat = f'(module {imports} (memory (export "memory") 1) (func $main {export} {body}))'
    return wasmtime.Module(engine, wasmtime.wat2wasm(wat))


PROC_EXIT = '(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))'


def test_returning_start_exits_zero(engine: wasmtime.Engine) -> None:
    assert run_module(wasmtime.Store(engine), _module(engine, "nop"), _spec()) == 0


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_proc_exit_code(engine: wasmtime.Engine, code: int) -> None:
    module = _module(engine, f"(call $exit (i32.const {code})) unreachable", PROC_EXIT)
    assert run_module(wasmtime.Store(engine), module, _spec()) == code


def test_trap_is_guest_trap_with_backtrace(engine: wasmtime.Engine) -> None:
    wat = """(module (memory (export "memory") 1)
      (func $inner unreachable)
      (func $outer call $inner)
      (func (export "_start") call $outer))"""
    module = wasmtime.Module(engine, wasmtime.wat2wasm(wat))
    with pytest.raises(GuestTrap) as info:
        run_module(wasmtime.Store(engine), module, _spec())
    text = str(info.value)
    assert "unreachable" in text
    assert "wasm backtrace" in text
    assert "inner" in text and "outer" in text


def test_out_of_bounds_access_is_guest_trap(engine: wasmtime.Engine) -> None:
    module = _module(engine, "(drop (i32.load (i32.const 70000)))")
    with pytest.raises(GuestTrap, match="out of bounds"):
        run_module(wasmtime.Store(engine), module, _spec())


def test_unknown_import_is_link_error(engine: wasmtime.Engine) -> None:
    module = _module(engine, "nop", '(import "env" "evil" (func))')
    with pytest.raises(GuestLinkError) as info:
        run_module(wasmtime.Store(engine), module, _spec())
    assert info.value.import_name == "env.evil"
    bad = _module(engine, "nop", '(import "wasi_snapshot_preview1" "path_open_please" (func))')
    with pytest.raises(GuestLinkError):
        run_module(wasmtime.Store(engine), bad, _spec())


def test_wrong_signature_is_link_error(engine: wasmtime.Engine) -> None:
    module = _module(engine, "nop", '(import "wasi_snapshot_preview1" "fd_write" (func (param i32)))')
    with pytest.raises(GuestLinkError):
        run_module(wasmtime.Store(engine), module, _spec())


def test_missing_start_is_link_error(engine: wasmtime.Engine) -> None:
    with pytest.raises(GuestLinkError):
        run_module(wasmtime.Store(engine), _module(engine, "nop", start=False), _spec())


def test_missing_preopen_is_wasi_error(engine: wasmtime.Engine, tmp_path: Path) -> None:
    spec = _spec([*STDIO, PreopenDir(tmp_path / "missing", "/")])
    with pytest.raises(WasiError):
        run_module(wasmtime.Store(engine), _module(engine, "nop"), spec)


def _fds_under(folder: Path) -> int:
    """How many of this process's fds name something in ``folder`` (the guest's pre-open and files)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder)):
                count += 1
        except OSError:
            pass  # the fd listing the folder itself, already closed
    return count


OPEN_AND_TRAP = """(import "wasi_snapshot_preview1" "path_open"
   (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (data (i32.const 100) "f")"""


@pytest.mark.parametrize("ending", ["", "unreachable", "(call $exit (i32.const 3))"])
def test_every_host_fd_is_closed_after_the_run(engine: wasmtime.Engine, tmp_path: Path, ending: str) -> None:
    (tmp_path / "f").write_text("x")
    body = (
        "(drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 0)"
        " (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 0)))" * 5 + ending
    )
    module = _module(engine, body, PROC_EXIT + OPEN_AND_TRAP)
    spec = _spec([*STDIO, PreopenDir(tmp_path, "/")])
    opened: list[int] = []
    original = os.open

    def counting_open(*args: Any, **kwargs: Any) -> int:
        fd = original(*args, **kwargs)
        opened.append(fd)
        return fd

    os.open = counting_open  # type: ignore[assignment]
    try:
        run_module(wasmtime.Store(engine), module, spec)
    except GuestTrap:
        assert ending == "unreachable"
    finally:
        os.open = original
    assert len(opened) >= 6  # the pre-open and five files
    assert _fds_under(tmp_path) == 0


def test_write_to_stdout_reaches_the_given_fd(engine: wasmtime.Engine, tmp_path: Path) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "hello\\n")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 6))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
    module = wasmtime.Module(engine, wasmtime.wat2wasm(wat))
    with open(tmp_path / "out", "wb") as out:
        spec = _spec(STDIO, stdio_fds=(0, out.fileno(), 2))
        assert run_module(wasmtime.Store(engine), module, spec) == 0
    assert (tmp_path / "out").read_bytes() == b"hello\n"


# ---------------------------------------------------------------------------------------------
# A Python exception inside a host function never escapes into wasmtime
# ---------------------------------------------------------------------------------------------
class _Broken(OpenFile):
    rights_base = abi.RIGHTS_ALL

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def write(self, bufs: Any) -> int:
        raise self.error


def test_unexpected_host_exception_is_eio(make_guest: Any, capfd: pytest.CaptureFixture[str]) -> None:
    guest = make_guest(_spec(STDIO))
    guest.host.fds.renumber(guest.host.fds.insert(_Broken(ValueError("bug"))), 1)
    assert guest.call("fd_write", 1, 0, 0, 8) == abi.EIO
    assert isinstance(guest.host.internal_errors[0], ValueError)
    assert "Traceback" not in capfd.readouterr().err


def test_interrupt_inside_host_call_stops_the_guest(engine: wasmtime.Engine) -> None:
    wat = """(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") (drop (call $w (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 8)))))"""
    module = wasmtime.Module(engine, wasmtime.wat2wasm(wat))
    original = StdioFile.write

    def interrupted(self: StdioFile, bufs: Any) -> int:
        raise KeyboardInterrupt

    StdioFile.write = interrupted  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            run_module(wasmtime.Store(engine), module, _spec(STDIO))
    finally:
        StdioFile.write = original  # type: ignore[method-assign]


def test_runs_on_several_engines_in_one_process() -> None:
    # wasmtime binds a function type to the first engine that uses it: nothing may be shared across engines.
    for _ in range(2):
        engine = wasmtime.Engine()
        module = _module(engine, "(call $exit (i32.const 5))", PROC_EXIT)
        assert run_module(wasmtime.Store(engine), module, _spec()) == 5


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (GuestSpec(args=["a\0b"], env=[], files=[]), "args"),
        (GuestSpec(args=[], env=[("A=B", "c")], files=[]), "env"),
        (GuestSpec(args=[], env=[("", "c")], files=[]), "env"),
        (GuestSpec(args=[], env=[("A", "c\0")], files=[]), "env"),
        (GuestSpec(args=["x" * (1 << 20)], env=[], files=[]), "args"),
        (GuestSpec(args=[], env=[], files=[PreopenDir(Path("relative"), "/")]), "files"),
    ],
)
def test_invalid_spec_is_refused(engine: wasmtime.Engine, spec: GuestSpec, field: str) -> None:
    with pytest.raises(InvalidGuestSpec) as info:
        run_module(wasmtime.Store(engine), _module(engine, "nop"), spec)
    assert info.value.field == field


def test_preopen_that_is_a_file_is_preopen_error(engine: wasmtime.Engine, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(PreopenError) as info:
        run_module(
            wasmtime.Store(engine), _module(engine, "nop"), _spec([PreopenDir(tmp_path / "file", "/")])
        )
    assert info.value.host_path == str(tmp_path / "file")


def test_start_with_parameters_is_link_error(engine: wasmtime.Engine) -> None:
    wat = '(module (memory (export "memory") 1) (func (export "_start") (param i32)))'
    with pytest.raises(GuestLinkError):
        run_module(wasmtime.Store(engine), wasmtime.Module(engine, wasmtime.wat2wasm(wat)), _spec())


def test_proc_exit_from_a_start_section(engine: wasmtime.Engine) -> None:
    wat = f"""(module {PROC_EXIT} (memory (export "memory") 1)
      (func $init (call $exit (i32.const 9))) (start $init) (func (export "_start")))"""
    assert run_module(wasmtime.Store(engine), wasmtime.Module(engine, wasmtime.wat2wasm(wat)), _spec()) == 9


def test_overlong_path_is_enametoolong(make_guest: Any, tmp_path: Path) -> None:
    guest = make_guest(_spec([*STDIO, PreopenDir(tmp_path, "/", writable=True)]))
    assert guest.call("path_create_directory", 3, 0, 5000) == abi.ENAMETOOLONG
    assert guest.call("path_create_directory", 3, 0, 2**32 - 1) == abi.ENAMETOOLONG


def test_fifo_in_the_tree_does_not_hang_open(make_guest: Any, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    guest = make_guest(_spec([*STDIO, PreopenDir(tmp_path, "/", writable=True)]))
    p, n = guest.path(1024, "fifo")
    # Opening a FIFO for writing with no reader fails at once (ENXIO) instead of blocking the host.
    assert guest.call("path_open", 3, 0, p, n, 0, abi.RIGHT_FD_WRITE, 0, 0, 0) == abi.ENXIO
    assert guest.call("path_open", 3, 0, p, n, 0, abi.RIGHT_FD_READ, 0, 0, 0) == 0


RANDOM_GET = '(import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))'


@pytest.mark.parametrize("memory", ['(memory (export "memory") 0)', "(memory 1)", ""])
def test_guest_without_usable_memory_gets_efault(engine: wasmtime.Engine, memory: str) -> None:
    # A zero-page memory, an unexported memory, no memory at all: every pointer is out of range.
    wat = f"""(module {PROC_EXIT} {RANDOM_GET} {memory}
      (func (export "_start")
        (call $exit (i32.add (i32.mul (call $rand (i32.const 0) (i32.const 1)) (i32.const 100))
                             (call $rand (i32.const 0) (i32.const 0))))))"""
    module = wasmtime.Module(engine, wasmtime.wat2wasm(wat))
    assert run_module(wasmtime.Store(engine), module, _spec()) == abi.EFAULT * 100


def test_memory_that_moves_when_it_grows(tmp_path: Path) -> None:
    # With no reservation beyond the current size, every memory.grow may move the memory: the host
    # must re-read the base address on each call, never write through a stale one.
    config = wasmtime.Config()
    config.memory_reservation = 0
    config.memory_reservation_for_growth = 0
    config.memory_guard_size = 0
    config.memory_may_move = True
    engine = wasmtime.Engine(config)
    wat = f"""(module {PROC_EXIT}
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "x")
      (func (export "_start") (local $i i32)
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 1))
        (loop $l
          (drop (memory.grow (i32.const 1)))
          ;; the iovec and the byte, copied to the newest page, so stale pointers would show
          (i32.store8 (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1))
                      (i32.add (i32.const 97) (local.get $i)))
          (i32.store (i32.const 0) (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1)))
          (if (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)) (then unreachable))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 20))))))"""
    module = wasmtime.Module(engine, wasmtime.wat2wasm(wat))
    with open(tmp_path / "out", "wb") as out:
        assert run_module(wasmtime.Store(engine), module, _spec(STDIO, stdio_fds=(0, out.fileno(), 2))) == 0
    assert (tmp_path / "out").read_bytes() == bytes(range(97, 117))


def test_read_only_is_inherited_by_opened_subdirectories(ro_guest: Any, tmp_path: Path) -> None:
    p, n = ro_guest.path(1024, "sub")
    assert (
        ro_guest.call("path_open", 3, 0, p, n, abi.OFLAGS_DIRECTORY, abi.RIGHTS_ALL, abi.RIGHTS_ALL, 0, 0)
        == 0
    )
    sub = ro_guest.u32(0)
    assert ro_guest.call("fd_fdstat_get", sub, 16) == 0
    assert ro_guest.u64(24) & abi.RIGHTS_WRITING == 0
    q, m = ro_guest.path(2048, "new")
    assert ro_guest.call("path_create_directory", sub, q, m) in REFUSED
    assert ro_guest.call("path_open", sub, 0, q, m, abi.OFLAGS_CREAT, abi.RIGHTS_ALL, 0, 0, 0) in REFUSED
    assert os.listdir(tmp_path / "ro" / "sub") == []


# ---------------------------------------------------------------------------------------------
# "Any arguments to any WASI function give an errno": never a host exception, never a crash
# ---------------------------------------------------------------------------------------------
_ARG32 = st.one_of(
    st.integers(0, 16), st.sampled_from([2048, 2100, 2200, 2300]), st.integers(PAGE - 64, PAGE + 64), U32
)
_ARG64 = st.one_of(st.integers(0, 16), st.integers(0, 2**64 - 1), st.just(2**63), st.just(2**64 - 1))
# poll_oneoff could sleep for a random timeout and proc_exit unwinds: both have their own tests.
FUZZED = sorted(set(SIGNATURES) - {"poll_oneoff", "proc_exit"})


@pytest.fixture
def fuzz_guest(make_guest: Any, tmp_path: Path) -> Any:
    root = tmp_path / "root"
    root.mkdir()
    (root / "file").write_text("data")
    (root / "dir").mkdir()
    null = os.open(os.devnull, os.O_RDWR)
    guest = make_guest(_spec([*STDIO, PreopenDir(root, "/", writable=True)], stdio_fds=(null, null, null)))
    for offset, text in ((2048, "file"), (2100, "dir"), (2200, "new"), (2300, "../x")):
        guest.path(offset, text)
    yield guest
    os.close(null)


@pytest.mark.parametrize("name", FUZZED)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_arguments_give_an_errno(fuzz_guest: Any, name: str, data: st.DataObject) -> None:
    args = [data.draw(_ARG32 if kind == "i" else _ARG64) for kind in SIGNATURES[name]]
    errno = fuzz_guest.call(name, *args)
    assert 0 <= errno <= abi.ENOTCAPABLE
    assert fuzz_guest.host.internal_errors == []
