"""The relying party's tests reuse the Keep's harness (a real Steward over HTTPS; a TLS server).

importlib mode: a test directory cannot import another's conftest, so this loads
tests/keep/conftest.py by path and re-exports its fixtures.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_path = Path(__file__).resolve().parents[1] / "keep" / "conftest.py"
_spec = importlib.util.spec_from_file_location("donjon_tests_keep_harness", _path)
assert _spec is not None and _spec.loader is not None
_harness = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _harness  # dataclasses look their module up here
_spec.loader.exec_module(_harness)

sim_vendor = _harness.sim_vendor
steward_env = _harness.steward_env
steward = _harness.steward
sim_snp = _harness.sim_snp
h = _harness.h
