"""scripts/: installing Debian packages is silent unless it fails (scripts/apt-install)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: A stand-in for apt-get that talks like the real one (its -qq still lets dpkg speak).
FAKE_APT_GET = """#!/bin/sh
echo "Selecting previously unselected package golang-go." >&2
echo "Preparing to unpack .../golang-go_2%3a1.22~2_amd64.deb ..."
echo "Setting up golang-go (2:1.22~2) ..."
echo "apt-get $*" >> "$APT_CALLS"
case "$*" in *missing-package*) echo "E: Unable to locate package missing-package" >&2; exit 100;; esac
exit 0
"""


@pytest.fixture
def fake_apt(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT_GET)
    apt.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "APT_CALLS": str(tmp_path / "calls"),
        "TMPDIR": str(tmp_path),
    }


def test_a_successful_install_prints_nothing(fake_apt: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "apt-install"), "golang-go"],
        capture_output=True,
        text=True,
        env=fake_apt,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["apt-get update -qq", "apt-get install -y -qq golang-go"]
    assert not list(tmp_path.glob("donjon-apt.*"))  # the log is removed


def test_a_failed_install_shows_its_log(fake_apt: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "apt-install"), "missing-package"],
        capture_output=True,
        text=True,
        env=fake_apt,
        timeout=30,
    )
    assert result.returncode == 100 and result.stdout == ""
    assert "apt-get install missing-package failed" in result.stderr
    assert "E: Unable to locate package missing-package" in result.stderr
    assert "Setting up" in result.stderr  # the whole log, to see what went wrong
    assert not list(tmp_path.glob("donjon-apt.*"))


def test_every_script_installs_through_apt_install() -> None:
    # A raw `apt-get install` in scripts/test or a helper would print its progress into the output.
    # (Hints in messages and comments, after a quote or a '#', may name it.)
    command = re.compile(r"^[^#\"']*\bapt-get\b[^\n]*\binstall\b", re.MULTILINE)
    for script in (ROOT / "scripts").iterdir():
        if script.name != "apt-install":
            assert not command.search(script.read_text()), script.name
