"""Where an encrypted package's files are decrypted: only a memory-backed filesystem (donjon.oci.memdir)."""

from __future__ import annotations

from pathlib import Path

from donjon.oci.memdir import candidates, filesystem_type, find_memory_dir

# proc(5)'s example line, then the shapes a container shows (an overlay root, tmpfs /dev/shm, a
# runtime dir whose name needs escaping, a disk mounted over a tmpfs at the same point).
MOUNTINFO = """\
22 1 98:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
40 22 0:21 / /dev/shm rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
41 22 0:22 / /run/user/1000 rw,nosuid,nodev,relatime shared:4 - tmpfs tmpfs rw,mode=700
42 22 0:23 / /run/odd\\040name rw - ramfs ramfs rw
43 22 0:24 / /stacked rw - tmpfs tmpfs rw
44 43 8:1 / /stacked rw - xfs /dev/sdb1 rw
not a mountinfo line
"""


def test_the_longest_mount_point_decides():
    assert filesystem_type(MOUNTINFO, "/dev/shm/donjon-package-x") == "tmpfs"
    assert filesystem_type(MOUNTINFO, "/dev/shmem") == "ext4"  # a prefix of the name is not a parent
    assert filesystem_type(MOUNTINFO, "/run/user/1000") == "tmpfs"
    assert filesystem_type(MOUNTINFO, "/tmp/x") == "ext4"
    assert filesystem_type(MOUNTINFO, "/mnt2/a") == "ext3"


def test_escaped_mount_points_and_stacked_mounts():
    assert filesystem_type(MOUNTINFO, "/run/odd name/f") == "ramfs"
    assert filesystem_type(MOUNTINFO, "/stacked/f") == "xfs"  # the later mount hides the tmpfs


def test_nothing_parses_to_nothing():
    assert filesystem_type("garbage\n\n- -\n", "/x") is None


def test_the_runtime_dir_comes_first_and_only_when_absolute():
    assert candidates({"XDG_RUNTIME_DIR": "/run/user/7"}) == [Path("/run/user/7"), Path("/dev/shm")]
    assert candidates({"XDG_RUNTIME_DIR": "relative"}) == [Path("/dev/shm")]
    assert candidates({}) == [Path("/dev/shm")]


def test_a_directory_on_disk_is_never_chosen(tmp_path):
    on_disk = f"1 0 8:1 / / rw - ext4 /dev/vda rw\n2 1 0:9 / {tmp_path}/mem rw - tmpfs tmpfs rw\n"
    (tmp_path / "mem").mkdir()
    (tmp_path / "disk").mkdir()
    assert find_memory_dir([tmp_path / "disk"], mountinfo=on_disk) is None
    places = [tmp_path / "missing", tmp_path / "disk", tmp_path / "mem"]
    assert find_memory_dir(places, mountinfo=on_disk) == (tmp_path / "mem", "tmpfs")


def test_without_a_memory_filesystem_a_run_decrypts_nothing_and_exits_3(monkeypatch, capsys):
    """The Keep's check before it asks for the key: no tmpfs here, so no place for the files."""
    import contextlib

    import donjon.oci.memdir
    from donjon.cli.run import Options, _plaintext_root

    monkeypatch.setattr(donjon.oci.memdir, "find_memory_dir", lambda: None)
    opts = Options()
    with contextlib.ExitStack() as cleanup:
        opts.cleanup = cleanup
        assert _plaintext_root(opts) == 3
    err = capsys.readouterr().err
    assert err.startswith("donjon: an encrypted package's files are decrypted only onto a memory-backed")
    assert err.count("\n") == 1 and "nothing decrypted" in err


def test_the_files_directory_is_private_and_removed_with_the_run(tmp_path, monkeypatch):
    import contextlib
    import stat

    import donjon.oci.memdir
    from donjon.cli.run import Options, _plaintext_root

    monkeypatch.setattr(donjon.oci.memdir, "find_memory_dir", lambda: (tmp_path, "tmpfs"))
    opts = Options()
    with contextlib.ExitStack() as cleanup:
        opts.cleanup = cleanup
        made = _plaintext_root(opts)
        assert isinstance(made, Path) and made.parent == tmp_path
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert not made.exists()
