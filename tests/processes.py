"""What tests in several folders start as child processes: ``donjon`` commands and a served Steward.

Imported relatively (``from ..processes import StewardProcess``): the tests run in pytest's
importlib mode, where test folders are not packages on ``sys.path``.
"""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["TIMEOUT", "StewardProcess", "free_port", "run_donjon"]

#: Seconds a Steward may take to log a line a test waits for.
TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_donjon(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m donjon ARGS`` to completion (60 s at most), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "donjon", *args], input=stdin, capture_output=True, timeout=60, check=False
    )


class StewardProcess:
    """``donjon steward serve --config C --port P`` in a child process, until :meth:`stop`.

    Every line it logs is kept in :attr:`stderr` and can be waited for, in order, with
    :meth:`wait_for` (by default the constructor waits for ``"listening"``).
    """

    def __init__(self, config: Path, *, wait: bool = True) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "donjon", "steward", "serve", "--config", str(config)]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = f"https://127.0.0.1:{self.port}"
        if wait:
            self.wait_for('"listening"')

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.rstrip("\n"))
            self.lines.put(raw.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, marker: str) -> str:
        """The next logged line holding ``marker`` (lines before it are passed over)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                late = f"no {marker!r} from the Steward in {TIMEOUT} s: {self.stderr}"
                raise AssertionError(late) from None
            if line is None:
                raise AssertionError(f"the Steward exited before {marker!r}: {self.stderr}")
            if marker in line:
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
