"""docs/deploy.md runs as written: its ``sh`` blocks, in order, with one ``bash -e`` in an empty folder.

The blocks start their own registry (Debian's docker-registry) and Steward, and stop them; this
test only gives them a free port, the examples directory and a cache directory, and kills both
if a block failed before stopping them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def sh_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", markdown, flags=re.S | re.M)


def test_the_deploy_doc_runs_in_an_empty_folder(tmp_path):
    blocks = sh_blocks((ROOT / "docs" / "deploy.md").read_text())
    assert len(blocks) >= 5
    script = tmp_path / "deploy.sh"
    script.write_text("\n".join(blocks))
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "EXAMPLES": str(ROOT / "examples"),
        "REGISTRY_PORT": str(free_port()),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }
    env.pop("DONJON_REGISTRY_CA", None)
    env.pop("REGISTRY_AUTH_FILE", None)
    try:
        done = subprocess.run(
            ["bash", "-e", str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        for server in ("steward", "registry"):
            pid_file = work / f"{server}.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "NOT attested" in done.stderr  # the nil run says so
    assert "a signature by a key not trusted" in done.stderr  # the stranger's run was refused
    # The encrypted run: attested, its key released after attestation, its file read by the guest.
    assert "attested by the Steward" in done.stdout and "[SIMULATED TEE]" in done.stdout
    assert "package decrypted with Steward secret app-key" in done.stdout
    keep_log = (work / "keep.log").read_text()
    assert keep_log.count("package decrypted with Steward secret app-key") == 2  # v1, then the update
