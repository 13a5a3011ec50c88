"""The real, os-backed pseudo-filesystem, on a temporary directory where the semantics allow."""

from __future__ import annotations

import errno

import pytest

from donjon.backends import BackendUnavailable, TsmBackend
from donjon.backends.fs import OsPseudoFs, PseudoFs, check_relative


def test_os_pseudo_fs_implements_the_interface(tmp_path):
    assert isinstance(OsPseudoFs(tmp_path), PseudoFs)


def test_mkdir_write_read_rmdir(tmp_path):
    fs = OsPseudoFs(tmp_path)
    fs.mkdir("entry")
    assert fs.is_dir("entry") and fs.exists("entry")
    (tmp_path / "entry/inblob").write_bytes(b"")
    fs.write_file("entry/inblob", b"\x01" * 64)
    assert fs.read_file("entry/inblob", 64) == b"\x01" * 64
    (tmp_path / "entry/inblob").unlink()
    fs.rmdir("entry")
    assert not fs.exists("entry")


def test_write_never_creates_a_file(tmp_path):
    # configfs attributes exist or the write is a mistake: no O_CREAT.
    with pytest.raises(FileNotFoundError):
        OsPseudoFs(tmp_path).write_file("outblob", b"x")
    assert not (tmp_path / "outblob").exists()


def test_read_past_the_limit_is_efbig_and_at_the_limit_is_fine(tmp_path):
    (tmp_path / "blob").write_bytes(b"a" * 100_000)
    fs = OsPseudoFs(tmp_path)
    assert len(fs.read_file("blob", 100_000)) == 100_000
    with pytest.raises(OSError) as info:
        fs.read_file("blob", 99_999)
    assert info.value.errno == errno.EFBIG


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../b", "./a"])
def test_paths_may_not_leave_the_root(path, tmp_path):
    with pytest.raises(ValueError):
        check_relative(path)
    with pytest.raises(ValueError):
        OsPseudoFs(tmp_path).read_file(path, 10)


def test_tsm_probe_over_a_plain_directory_fails_cleanly(tmp_path):
    # A plain directory is not configfs: the entry gets no attributes. The probe must
    # say so and remove the entry it made.
    backend = TsmBackend("snp", root=tmp_path)
    availability = backend.probe()
    assert not availability.usable
    assert "no such file" in availability.reason
    assert list(tmp_path.iterdir()) == []


def test_tsm_evidence_over_a_plain_directory_fails_cleanly(tmp_path):
    with pytest.raises(BackendUnavailable):
        TsmBackend("tdx", root=tmp_path).evidence(bytes(64))
    assert list(tmp_path.iterdir()) == []


def test_tsm_over_a_missing_root(tmp_path):
    availability = TsmBackend("snp", root=tmp_path / "nope").probe()
    assert not availability.usable
    assert str(tmp_path / "nope") in availability.reason
