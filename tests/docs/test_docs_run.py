"""The docs pages that are runnable: their ``sh`` blocks, in order, succeed in one ``bash -e``.

Each page of :data:`PAGES` is run exactly as its reader would: every fenced ```` ```sh ```` block,
in order, as one script, by one ``bash -e``, in an empty temporary folder, with ``donjon`` on
``PATH`` (the one installed beside this Python). The environment adds only free loopback ports
for the variables a page lets its reader choose (``STEWARD_PORT``, ``KEEP_PORT``: the page has
defaults) and a private cache and home. Afterwards no process the script started may be left:
the script runs in a session of its own, and the test fails (and kills them) if any remains.

Adding a page: append it to :data:`PAGES`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Pages whose ``sh`` blocks are a script that must succeed.
PAGES = ["docs/tutorial.md"]
#: The whole page, bounded: a hung step fails the test instead of the suite.
TIMEOUT = 240.0

_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def sh_blocks(text: str) -> list[str]:
    """The ``sh`` code blocks of a Markdown page, in order."""
    return [m.group(1) for m in _BLOCK.finditer(text)]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a process of another user took the id
        return False
    return True


def test_sh_blocks_are_found_in_order() -> None:
    text = "intro\n```sh\necho one\n```\n```python\nnot = 'this'\n```\n```sh\necho two\n```\n"
    assert sh_blocks(text) == ["echo one\n", "echo two\n"]


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_in_one_bash(page: str, tmp_path: Path) -> None:
    blocks = sh_blocks((ROOT / page).read_text(encoding="utf-8"))
    assert blocks, f"{page} has no sh blocks"
    script = tmp_path / "page.sh"
    script.write_text("\n".join(blocks), encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    steward_port, keep_port = _free_ports(2)
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "LANG": "C.UTF-8",
        "STEWARD_PORT": str(steward_port),
        "KEEP_PORT": str(keep_port),
    }
    if "PYTHONPATH" in os.environ:  # the donjon under test, when it is not the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    proc = subprocess.Popen(
        ["bash", "-e", str(script)],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{page} did not finish in {TIMEOUT} s:\n{output}")
    # Processes the script started and left behind are still in its process group.
    deadline = time.monotonic() + 5
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _group_alive(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"{page} failed (exit {proc.returncode}):\n{output}"
    assert not left, f"{page} left processes running:\n{output}"
