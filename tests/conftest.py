"""Shared fixtures: where ../shared lives, and failing (not skipping) without it under CI."""

from __future__ import annotations

import os
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


@pytest.fixture
def vectors() -> Path:
    """The real attestation vectors: ``../shared/vectors``."""
    return need_shared("vectors")


@pytest.fixture
def wasi_testsuite() -> Path:
    """The wasip1 conformance suite: ``../shared/wasi-testsuite`` (read-only; copy before running)."""
    return need_shared("wasi-testsuite")
