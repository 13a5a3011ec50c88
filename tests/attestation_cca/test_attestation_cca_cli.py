"""``donjon evidence verify`` on CCA sample tokens: what the command tells the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from donjon.cli import main


def test_sample_cpak_warning_names_the_sample_key_not_trust_simulated(
    vectors: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The ccatoken sample is signed by a published sample CPAK: verified, but simulated. The warning
    # must give that reason; --trust-simulated was never passed.
    argv = [
        "evidence",
        "verify",
        str(vectors / "cca/ccatoken/cca_token.cbor"),
        "--cca-platform-key",
        str(vectors / "cca/ccatoken/cca_platform.pub"),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "verified: true" in captured.out
    assert "simulated: true" in captured.out
    assert "WARNING: simulated evidence" in captured.err
    assert "sample CCA platform key" in captured.err
    assert "--trust-simulated" not in captured.err
