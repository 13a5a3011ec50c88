"""'donjon platform' through its main(argv), on fake host trees."""

from __future__ import annotations

import json

import pytest

from donjon.backends import BACKEND_NAMES
from donjon.cli import EXIT_OK, EXIT_OPERATIONAL, EXIT_REFUSED, EXIT_USAGE
from donjon.cli import main as donjon
from donjon.cli.platform import main


def test_info_text_lists_every_backend_and_the_auto_choice(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "info"]) == EXIT_OK
    out = capsys.readouterr().out
    for name in BACKEND_NAMES:
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    assert "fix: mount -t configfs none" in out
    assert "auto selects: nil (no attested backend is usable" in out


def test_info_json_is_data(tmp_path, capsys):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/sev-guest").write_text("")
    assert main(["--root", str(tmp_path), "info", "--format", "json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in doc["backends"]] == list(BACKEND_NAMES)
    by_name = {b["name"]: b for b in doc["backends"]}
    assert by_name["snp"]["usable"] is False
    assert by_name["snp"]["fix"].startswith("mount -t configfs")
    assert by_name["nil"] == {**by_name["nil"], "usable": True, "attested": False}
    assert by_name["sim-snp"]["simulated"] is True
    assert doc["auto"] == "nil"
    assert any("sev-guest" in h for h in doc["hints"])


def test_info_for_one_backend(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "info", "--backend", "sgx", "--format", "json"]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in doc["backends"]] == ["sgx"]
    assert "auto" not in doc


def test_through_the_top_level_dispatcher(tmp_path, capsys):
    assert donjon(["platform", "--root", str(tmp_path), "info"]) == EXIT_OK
    assert "nil" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [[], ["info", "--format", "xml"], ["frobnicate"], ["info", "--backend", "tpm"], ["evidence"]],
)
def test_usage_errors(argv, capsys):
    assert main(argv) == EXIT_USAGE
    assert "donjon platform" in capsys.readouterr().err


def test_help_is_not_an_error(capsys):
    assert main(["--help"]) == EXIT_OK
    assert "info" in capsys.readouterr().out


def test_evidence_from_a_simulator_to_a_file(tmp_path, capsys):
    out = tmp_path / "quote.bin"
    binding = bytes(range(64)).hex()
    code = main(
        ["--root", str(tmp_path), "evidence", "--backend", "sim-tdx", "--binding", binding, "--out", str(out)]
    )
    assert code == EXIT_OK
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "tdx-quote" and summary["simulated"] is True
    data = out.read_bytes()
    assert int.from_bytes(data[0:2], "little") in (4, 5)
    assert summary["size"] == len(data)
    assert summary["binding"] == binding


def test_evidence_from_nil_is_refused(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "evidence", "--backend", "nil"]) == EXIT_REFUSED
    assert "unattested" in capsys.readouterr().err


def test_evidence_where_the_tee_is_missing_is_operational(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "evidence", "--backend", "snp"]) == EXIT_OPERATIONAL
    err = capsys.readouterr().err
    assert "configfs is not mounted" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("binding", ["zz", "00" * 63, "00" * 65])
def test_evidence_with_a_bad_binding_is_usage(tmp_path, binding, capsys):
    assert (
        main(["--root", str(tmp_path), "evidence", "--backend", "sim-tdx", "--binding", binding])
        == EXIT_USAGE
    )


def test_evidence_to_an_unwritable_path_is_operational(tmp_path, capsys):
    target = tmp_path / "missing-dir" / "out.bin"
    code = main(["--root", str(tmp_path), "evidence", "--backend", "sim-tdx", "--out", str(target)])
    assert code == EXIT_OPERATIONAL
    assert "cannot write" in capsys.readouterr().err
