"""docs/secrets.md's ``sh`` blocks run as written: in order, one ``bash -e``, an empty directory,
``donjon`` on PATH (as the tutorial's are). The walk through starts a Steward and stops it itself;
the process group is killed afterwards in any case."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "secrets.md"


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)


def test_the_walk_through_runs_and_the_guest_read_the_secret(tmp_path: Path) -> None:
    script = "\n".join(sh_blocks(DOC.read_text()))
    assert "donjon steward serve" in script and "kill" in script
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    hashes = [line.split()[0] for line in out.splitlines() if re.fullmatch(r"[0-9a-f]{64}\s+-", line)]
    assert len(hashes) == 2 and hashes[0] == hashes[1], out
    assert '"check": "client.certificate"' in out or '"check":"client.certificate"' in out
    assert "db-password\t2\t" in out
    assert b"correct horse" not in (tmp_path / "steward" / "log.db").read_bytes()
