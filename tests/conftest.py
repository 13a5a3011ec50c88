"""Shared fixtures: where ../shared lives, and failing (not skipping) without it under CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """``$DONJON_SHARED`` or ``../shared`` beside the repository, if it exists."""
    env = os.environ.get("DONJON_SHARED")
    path = Path(env) if env else ROOT.parent / "shared"
    return path if path.is_dir() else None


def need_shared(*parts: str) -> Path:
    """Return a path under ../shared; fail under CI=true, skip elsewhere, when it is missing."""
    base = shared_dir()
    path = base.joinpath(*parts) if base is not None else None
    if path is None or not path.exists():
        message = f"../shared/{'/'.join(parts)} not found (set DONJON_SHARED)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def postgres_dsn() -> str:
    """The test PostgreSQL's DSN (``bash scripts/pg-start`` prints one); fail under CI=true, skip
    elsewhere, when it is not set."""
    dsn = os.environ.get("DONJON_TEST_POSTGRES_DSN")
    if not dsn:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("DONJON_TEST_POSTGRES_DSN is not set under CI")
        pytest.skip("DONJON_TEST_POSTGRES_DSN is not set (bash scripts/pg-start prints one)")
    return dsn


@pytest.fixture
def umask_000() -> Iterator[None]:
    """Run the test under umask 000: a file created without an explicit mode is world-writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def umask_077() -> Iterator[None]:
    """Run the test under umask 077: a file created without an explicit mode is private."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def vectors() -> Path:
    """The real attestation vectors: ``../shared/vectors``."""
    return need_shared("vectors")


@pytest.fixture
def wasi_testsuite() -> Path:
    """The wasip1 conformance suite: ``../shared/wasi-testsuite`` (read-only; copy before running)."""
    return need_shared("wasi-testsuite")


# --- SoftHSM2, for the PKCS#11 tests (tests/hsm, tests/steward/test_steward_hsm.py) ---
# SoftHSM2 reads SOFTHSM2_CONF when its module is first initialised in a process, so one token
# directory serves the whole test session, created before anything loads the module; each test
# uses its own object labels. Child processes (`donjon steward serve`) inherit the variable.
# Needs Debian's softhsm2 (scripts/test installs it): a failure under CI=true, else a skip.

PIN = "4321-test-pin"
SO_PIN = "8765-test-so-pin"
LABEL = "donjon-test"


@dataclass(frozen=True)
class SoftHsm:
    conf: Path
    label: str
    pin: str
    pin_file: Path

    def uri(self, obj: str | None = None, *, pin: bool = True, token: str | None = None) -> str:
        """A URI for an object on the test token (with its PIN file unless ``pin=False``)."""
        parts = [f"token={token or self.label}"]
        if obj is not None:
            parts.append(f"object={obj}")
        return "pkcs11:" + ";".join(parts) + (f"?pin-source=file:{self.pin_file}" if pin else "")

    @staticmethod
    def label_for(prefix: str) -> str:
        """A fresh object label (the token lives for the whole session)."""
        return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        message = f"{tool} is not installed (apt-get install softhsm2)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": required under CI")
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    util = _need("softhsm2-util")
    base = tmp_path_factory.mktemp("softhsm")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", LABEL, "--pin", PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pin_file = base / "pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    yield SoftHsm(conf=conf, label=LABEL, pin=PIN, pin_file=pin_file)
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous
