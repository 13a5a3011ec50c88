"""Helpers for the networking tests: a real ``donjon run`` in a subprocess, configs, free ports.

Everything listens on 127.0.0.1 only, on ports the kernel just handed out, and every wait is
bounded.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from donjon.tls import Credentials

# importlib mode: a test directory cannot import another's conftest, so the throwaway certificate
# authority standing in for the Steward's (and the PEM writer) come from tests/tls/conftest.py by path.
_path = Path(__file__).resolve().parents[1] / "tls" / "conftest.py"
_spec = importlib.util.spec_from_file_location("donjon_tests_tls_harness", _path)
assert _spec is not None and _spec.loader is not None
_tls = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _tls  # dataclasses look their module up here
_spec.loader.exec_module(_tls)
write_credentials = _tls.write_credentials


class CA(_tls.CA):  # type: ignore[misc]
    """The TLS tests' CA, issuing for ``localhost`` unless told otherwise (the Keeps here dial it)."""

    def issue(self, *, spiffe_id: str, dns: tuple[str, ...] = ("localhost",)) -> Credentials:
        creds: Credentials = super().issue(spiffe_id=spiffe_id, dns=dns)
        return creds


ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TIMEOUT = 10.0


def free_port() -> int:
    """A port nobody listens on right now (bound and released; the Keep binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listen_entry(name: str, port: int, prot: str, **extra: str) -> str:
    lines = [
        "[[files]]",
        'kind = "listen"',
        f'name = "{name}"',
        'addr = "127.0.0.1"',
        f"port = {port}",
        f'prot = "{prot}"',
    ]
    lines += [f'{key} = "{value}"' for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def connect_entry(name: str, host: str, port: int, prot: str, **extra: str) -> str:
    lines = ["[[files]]", 'kind = "connect"', f'name = "{name}"', f'host = "{host}"', f"port = {port}"]
    lines += [f'prot = "{prot}"'] + [f'{key} = "{value}"' for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def config_text(*entries: str, env: dict[str, str] | None = None) -> str:
    stdio = "".join(f'[[files]]\nkind = "{kind}"\n\n' for kind in ("stdin", "stdout", "stderr"))
    text = stdio + "\n".join(entries)
    if env:
        text += "\n[env]\n" + "".join(f'{k} = "{v}"\n' for k, v in env.items())
    return text


class KeepProcess:
    """``donjon run --config`` in a subprocess; stderr is collected line by line."""

    def __init__(self, directory: Path, wasm: Path, config: str) -> None:
        self.config_path = directory / "Donjon.toml"
        self.config_path.write_text(textwrap.dedent(config))
        env = {k: v for k, v in os.environ.items() if k != "DONJON_DEBUG"}
        command = [sys.executable, "-m", "donjon", "run", "--no-cache", "--config", str(self.config_path)]
        self._stdout = open(directory / "stdout", "w+b")  # noqa: SIM115 - closed in finish/stop
        self.proc = subprocess.Popen(
            [*command, str(wasm)],
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = TIMEOUT) -> list[str]:
        """Wait until ``count`` stderr lines contain ``text``; those lines."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= count:
                    return found
                remaining = end - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {count}x {text!r} on stderr:\n" + "\n".join(self.lines))
                self._cond.wait(min(remaining, 0.2))

    def wait_listening(self, count: int = 1) -> None:
        self.wait_for("listening on", count)

    def finish(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """Wait for the guest to exit; (exit code, stdout)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the Keep did not exit:\n" + self.stderr) from None
        self._reader.join(5)
        self._stdout.seek(0)
        out = self._stdout.read()
        self._stdout.close()
        return code, out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(2)
        self._stdout.close()


@pytest.fixture
def keep(tmp_path: Path) -> Iterator[object]:
    """``keep(wasm, config_text)`` starts a Keep and waits until its sockets listen."""
    started: list[KeepProcess] = []

    def start(wasm: Path, config: str, *, listening: int = 1, name: str = "keep") -> KeepProcess:
        directory = tmp_path / f"{name}{len(started)}"
        directory.mkdir()
        process = KeepProcess(directory, wasm, config)
        started.append(process)
        if listening:
            process.wait_listening(listening)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def net() -> SimpleNamespace:
    """The helpers above, for test modules (importlib mode: tests cannot import conftest)."""
    return SimpleNamespace(
        EXAMPLES=EXAMPLES,
        TIMEOUT=TIMEOUT,
        free_port=free_port,
        listen_entry=listen_entry,
        connect_entry=connect_entry,
        config_text=config_text,
        CA=CA,
        write_credentials=write_credentials,
    )
