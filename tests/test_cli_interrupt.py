"""Ctrl-C on real ``donjon`` processes: exit 130 as a shell sees it, no traceback, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import wasmtime
from cryptography.hazmat.primitives import serialization

from donjon.steward.ca import create_ca

DONJON = [sys.executable, "-m", "donjon"]

#: A guest that blocks in fd_read on its stdin (which nobody writes to).
READ_STDIN_WAT = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 64))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def _read_until(stream: IO[str], marker: str) -> list[str]:
    """Lines of ``stream`` up to the first containing ``marker`` (pytest-timeout bounds the wait)."""
    lines: list[str] = []
    for line in stream:
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"{marker!r} never came; got {lines}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its closing ')'.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _wait_blocked_in_read(pid: int, timeout: float = 10.0) -> None:
    """Until the kernel says ``pid`` sleeps in a pipe read (the guest's fd_read on stdin)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        if "pipe_read" in wchan:
            return
        if wchan in ("", "0"):  # a kernel that does not say: sleeping is the best sign there is
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "S":
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never blocked reading its stdin")


def test_ctrl_c_while_attesting_exits_130_with_one_line(tmp_path: Path) -> None:
    # Before the guest starts, Ctrl-C is a KeyboardInterrupt: caught, one line, exit 130.
    _, cert = create_ca("not a running Steward", now=datetime.now(UTC))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    hello = Path(__file__).resolve().parents[1] / "examples" / "hello" / "hello.wasm"
    # Port 9 on loopback: nothing listens, so the Keep retries its Steward until interrupted.
    argv = [*DONJON, "run", "--backend", "nil", "--steward", "https://127.0.0.1:9", "--steward-ca", str(ca)]
    proc = subprocess.Popen([*argv, str(hello)], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        before = _read_until(proc.stderr, "retrying")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.endswith("donjon: interrupted\n")
    assert "Traceback" not in "".join(before) + err


def test_ctrl_c_on_a_guest_blocked_on_stdin_is_status_130_in_a_shell(tmp_path: Path) -> None:
    # While the guest runs, SIGINT has its default action (docs/run.md): the process ends at once,
    # even inside a blocking host call, and the shell that started it reports 128 + 2 = 130.
    module = tmp_path / "read.wasm"
    module.write_bytes(wasmtime.wat2wasm(READ_STDIN_WAT))
    script = '"$@"; echo "status=$?" >&2'
    shell = subprocess.Popen(
        ["bash", "-c", script, "bash", *DONJON, "run", "--no-cache", str(module)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert shell.stderr is not None
        before = _read_until(shell.stderr, "NOT attested")  # printed right before the guest starts
        (donjon,) = _children(shell.pid)
        _wait_blocked_in_read(donjon)
        os.kill(donjon, signal.SIGINT)
        _, err = shell.communicate(timeout=30)
    finally:
        shell.kill()
    assert err.strip().splitlines()[-1] == "status=130"
    assert "Traceback" not in "".join(before) + err


def test_ctrl_c_in_the_middle_of_the_demo_stops_everything(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen(
        [*DONJON, "demo", "--quiet-keep"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    try:
        assert proc.stdout is not None
        shown = _read_until(proc.stdout, "[2/5] Keep starting")  # the Steward serves, the Keep attests
        (workdir,) = tmp.iterdir()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.endswith("donjon demo: interrupted\n")
    assert "Traceback" not in "".join(shown) + out + err
    # Resources closed: the temporary directory is gone, and no process (the Keep) still uses it.
    assert list(tmp.iterdir()) == []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            assert str(workdir).encode() not in cmdline, f"process {entry} left running"
