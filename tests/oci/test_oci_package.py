"""The pure parts of packages: references, the manifest, deterministic builds, unpacking, limits."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from donjon.config import parse_config
from donjon.oci.artifact import (
    ARTIFACT_TYPE,
    MAX_MANIFEST_BYTES,
    TreeEntry,
    build_manifest,
    canonical_json,
    parse_manifest,
)
from donjon.oci.auth import Credentials, find_credentials
from donjon.oci.build import build_package
from donjon.oci.cache import BlobCache
from donjon.oci.errors import (
    AuthFailed,
    BadReference,
    DigestMismatch,
    MalformedPackage,
    PackageRefused,
    TooLarge,
)
from donjon.oci.layout import read_layout, write_layout
from donjon.oci.reference import parse_reference
from donjon.oci.unpack import check_within, unpack_trees

ROOT = Path(__file__).resolve().parents[2]
MODULE = (ROOT / "examples" / "hello" / "hello.wasm").read_bytes()


# -- references ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("oci://localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
        ("registry.example/team/app:v1.2", "registry.example", "team/app", "v1.2", None),
        ("127.0.0.1:5000/a/b@sha256:" + "ab" * 32, "127.0.0.1:5000", "a/b", None, "sha256:" + "ab" * 32),
        ("r.example/a:t@sha256:" + "00" * 32, "r.example", "a", "t", "sha256:" + "00" * 32),
    ],
)
def test_a_reference_parses_into_its_parts(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize(
    "text",
    [
        "app:v1",  # no registry: Donjon never guesses docker.io
        "localhost:5000/app",  # no tag, no digest: no default "latest"
        "localhost:5000/App:v1",  # upper case repository
        "localhost:5000/app:-bad",
        "localhost:99999/app:v1",
        "localhost:5000/app@sha256:abc",
        "localhost:5000/app@md5:" + "00" * 16,
        "local_host:5000/app:v1",
        "x" * 2000,
    ],
)
def test_a_bad_reference_is_refused_by_name(text):
    with pytest.raises(BadReference):
        parse_reference(text)


def test_sign_needs_a_digest_not_a_tag():
    with pytest.raises(BadReference, match="by digest"):
        parse_reference("localhost:5000/app:v1", require_digest=True)


# -- building ----------------------------------------------------------------------------------


def _project(tmp_path: Path) -> tuple[Path, bytes]:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_text("alpha\n")
    (tmp_path / "data" / "sub" / "b.bin").write_bytes(bytes(range(256)))
    (tmp_path / "peer-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    config = (
        'backends = ["sim-snp"]\n'
        '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'
        '[[files]]\nkind = "dir"\nname = "data"\npath = "data"\nguest_path = "/data"\n'
        '[[files]]\nkind = "connect"\nhost = "peer.example"\nport = 443\nprot = "tls"\n'
        'trust = "file"\ntrust_file = "peer-ca.pem"\n'
    )
    (tmp_path / "Donjon.toml").write_text(config)
    return tmp_path, config.encode()


def _build(directory: Path, source: bytes):
    return build_package(MODULE, parse_config(source).config, source, directory)


def test_a_rebuild_is_byte_identical_whatever_the_file_times(tmp_path):
    import os

    directory, source = _project(tmp_path / "p")
    first = _build(directory, source)
    write_layout(tmp_path / "one.oci", first.manifest, first.blobs)
    for path in (directory / "data").rglob("*"):
        os.utime(path, (1, 1))
    second = _build(directory, source)
    write_layout(tmp_path / "two.oci", second.manifest, second.blobs)
    files = sorted(
        p.relative_to(tmp_path / "one.oci") for p in (tmp_path / "one.oci").rglob("*") if p.is_file()
    )
    assert files == sorted(
        p.relative_to(tmp_path / "two.oci") for p in (tmp_path / "two.oci").rglob("*") if p.is_file()
    )
    for rel in files:
        assert (tmp_path / "one.oci" / rel).read_bytes() == (tmp_path / "two.oci" / rel).read_bytes()
    assert first.manifest.digest == second.manifest.digest


def test_the_manifest_carries_the_artifact_type_the_layers_and_the_workload_digest(tmp_path):
    from donjon.config import workload_digest

    directory, source = _project(tmp_path)
    built = _build(directory, source)
    doc = json.loads(built.manifest.raw)
    assert doc["artifactType"] == ARTIFACT_TYPE
    assert [layer["mediaType"] for layer in doc["layers"]] == [
        "application/vnd.donjon.workload.module.v1+wasm",
        "application/vnd.donjon.workload.config.v1+toml",
        "application/vnd.donjon.workload.dir.v1.tar",
        "application/vnd.donjon.workload.file.v1",
    ]
    assert [
        layer.get("annotations", {}).get("org.opencontainers.image.title") for layer in doc["layers"][2:]
    ] == [
        "data",
        "peer-ca.pem",
    ]
    expected = workload_digest(MODULE, parse_config(source).config).hex()
    assert doc["annotations"]["dev.donjon.workload.digest"] == expected
    # The directory's tar: sorted, times and owners zeroed.
    tar = built.blobs[doc["layers"][2]["digest"]]
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == ["a.txt", "sub", "sub/b.bin"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}


def test_a_link_in_a_packaged_directory_is_refused_not_followed(tmp_path):
    directory, source = _project(tmp_path)
    (directory / "data" / "escape").symlink_to("/etc/passwd")
    with pytest.raises(MalformedPackage, match="links are not packaged"):
        _build(directory, source)


def test_a_config_path_outside_the_package_is_refused(tmp_path):
    source = b'[[files]]\nkind = "dir"\nname = "up"\npath = "../up"\nguest_path = "/up"\n'
    with pytest.raises(MalformedPackage, match="inside the package"):
        _build(tmp_path, source)


def test_a_layout_round_trips_and_a_changed_blob_is_caught(tmp_path):
    directory, source = _project(tmp_path / "p")
    built = _build(directory, source)
    write_layout(tmp_path / "app.oci", built.manifest, built.blobs)
    manifest, blobs = read_layout(tmp_path / "app.oci", limit=1 << 20)
    assert manifest == built.manifest and blobs == built.blobs
    module = tmp_path / "app.oci" / "blobs" / "sha256" / built.manifest.module.digest.removeprefix("sha256:")
    module.write_bytes(module.read_bytes() + b"\x00")
    with pytest.raises((DigestMismatch, TooLarge)):
        read_layout(tmp_path / "app.oci", limit=1 << 20)


def test_a_layout_is_not_written_over_another_directory(tmp_path):
    directory, source = _project(tmp_path / "p")
    built = _build(directory, source)
    (tmp_path / "mine").mkdir()
    with pytest.raises(MalformedPackage, match="not an OCI image layout"):
        write_layout(tmp_path / "mine", built.manifest, built.blobs)


# -- parsing what a registry sends ---------------------------------------------------------------


def _manifest(**changes):
    manifest, _ = build_manifest(MODULE, b"", [], bytes(32))
    doc = json.loads(manifest.raw)
    doc.update(changes)
    return canonical_json(doc)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (_manifest(artifactType="application/vnd.other"), "not a Donjon package"),
        (_manifest(annotations={}), "dev.donjon.workload.digest"),
        (_manifest(schemaVersion=1), "not an OCI image manifest"),
        (_manifest(layers=[]), "layers"),
        (b'{"schemaVersion":2,"schemaVersion":2}', "duplicate key"),
        (b"\xff", "not valid JSON"),
        (b"[]", "not a JSON object"),
    ],
)
def test_a_manifest_that_is_not_a_donjon_package_is_refused(raw, match):
    with pytest.raises(MalformedPackage, match=match):
        parse_manifest(raw)


def test_a_layer_path_that_escapes_is_refused():
    doc = json.loads(_manifest())
    doc["layers"].append(
        {
            "mediaType": "application/vnd.donjon.workload.dir.v1.tar",
            "digest": "sha256:" + "00" * 32,
            "size": 0,
            "annotations": {"org.opencontainers.image.title": "../../etc"},
        }
    )
    with pytest.raises(MalformedPackage, match="inside the package"):
        parse_manifest(canonical_json(doc))


def test_a_config_layer_declared_over_the_config_limit_is_refused_before_it_is_fetched():
    from donjon.config.parse import MAX_CONFIG_BYTES

    doc = json.loads(_manifest())
    doc["layers"][1]["size"] = MAX_CONFIG_BYTES + 1  # was fetched up to a layer's 256 MiB
    with pytest.raises(TooLarge, match="config"):
        parse_manifest(canonical_json(doc))
    doc["layers"][1]["size"] = MAX_CONFIG_BYTES
    parse_manifest(canonical_json(doc))


def test_an_oversize_manifest_is_refused_before_it_is_parsed():
    with pytest.raises(TooLarge):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1))


def test_a_manifest_with_another_digest_is_refused():
    with pytest.raises(DigestMismatch):
        parse_manifest(_manifest(), expected_digest="sha256:" + "11" * 32)


# -- unpacking ---------------------------------------------------------------------------------


def _tar(*members: tarfile.TarInfo) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
    return out.getvalue()


_DIR_CONFIG = parse_config(b'[[files]]\nkind = "dir"\nname = "d"\npath = "d"\nguest_path = "/d"\n').config


def test_a_package_unpacks_to_the_paths_its_config_names(tmp_path):
    directory, source = _project(tmp_path / "p")
    built = _build(directory, source)
    trees = [TreeEntry(t.title or "", t.tree_kind, built.blobs[t.digest]) for t in built.manifest.trees]
    (tmp_path / "out").mkdir()
    unpack_trees(parse_config(source).config, trees, tmp_path / "out", limit=1 << 20)
    assert (tmp_path / "out" / "data" / "sub" / "b.bin").read_bytes() == bytes(range(256))
    assert (tmp_path / "out" / "peer-ca.pem").read_text().startswith("-----BEGIN")


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.linkname = linkname
    return member


@pytest.mark.parametrize(
    "member",
    [
        tarfile.TarInfo("../escape"),
        tarfile.TarInfo("/etc/passwd"),
        (
            lambda: (
                m := tarfile.TarInfo("link"),
                setattr(m, "type", tarfile.SYMTYPE),
                setattr(m, "linkname", "/"),
            )[0]
        )(),
        (lambda: (m := tarfile.TarInfo("dev"), setattr(m, "type", tarfile.CHRTYPE))[0])(),
    ],
    ids=["dotdot", "absolute", "symlink", "device"],
)
def test_a_hostile_tar_entry_is_refused(tmp_path, member):
    with pytest.raises(MalformedPackage):
        unpack_trees(_DIR_CONFIG, [TreeEntry("d", "dir", _tar(member))], tmp_path, limit=1 << 20)
    assert not (tmp_path.parent / "escape").exists()


def test_unpacking_is_bounded_in_bytes(tmp_path):
    big = tarfile.TarInfo("big")
    big.size = 4096
    with pytest.raises(TooLarge):
        unpack_trees(_DIR_CONFIG, [TreeEntry("d", "dir", _tar(big))], tmp_path, limit=1000)


def test_layers_that_do_not_match_the_config_are_refused(tmp_path):
    with pytest.raises(MalformedPackage, match="do not match"):
        unpack_trees(_DIR_CONFIG, [TreeEntry("other", "dir", _tar())], tmp_path, limit=1 << 20)


# -- a package config never widens the run -------------------------------------------------------


def test_a_config_that_lists_nil_is_refused_on_an_attested_run_and_accepted_on_nil():
    config = parse_config(b'backends = ["sim-snp", "nil"]\n').config
    with pytest.raises(PackageRefused, match="include 'nil'"):
        check_within(config, "sim-snp")
    with pytest.raises(PackageRefused):
        check_within(config, "auto")
    check_within(config, "nil")
    check_within(parse_config(b'backends = ["sim-snp"]\n').config, "sim-snp")


@pytest.mark.parametrize("backend", ["snp", "tdx", "azure-snp", "auto"])
def test_a_config_that_accepts_simulated_peers_is_refused_unless_the_run_is_simulated(backend):
    config = parse_config(
        b'[[files]]\nkind = "connect"\nhost = "peer.example"\nallow_simulated = true\n'
    ).config
    with pytest.raises(PackageRefused, match="allow_simulated"):
        check_within(config, backend)
    check_within(config, "sim-snp")
    check_within(config, "nil")


def test_a_config_that_accepts_unattested_peers_is_refused_on_an_attested_run():
    config = parse_config(
        b'[[files]]\nkind = "connect"\nhost = "peer.example"\nallow_unattested = true\n'
    ).config
    with pytest.raises(PackageRefused, match="allow_unattested"):
        check_within(config, "sim-snp")


# -- the cache ---------------------------------------------------------------------------------


def test_a_cached_blob_is_verified_on_read_and_a_corrupt_one_is_dropped(tmp_path):
    from donjon.oci.artifact import digest_of

    cache = BlobCache(tmp_path)
    digest = digest_of(b"hello")
    cache.put(digest, b"hello")
    assert cache.get(digest, limit=10) == b"hello"
    path = tmp_path / "sha256" / digest.removeprefix("sha256:")
    path.write_bytes(b"hellO")
    assert cache.get(digest, limit=10) is None and not path.exists()
    with pytest.raises(ValueError):
        cache.put(digest, b"other")


# -- credentials -------------------------------------------------------------------------------


def test_credentials_come_from_the_auth_file_then_the_docker_config(tmp_path):
    import base64

    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {"r.example:5000": {"auth": base64.b64encode(b"u:p:w").decode()}}}))
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(
        json.dumps({"auths": {"https://other.example": {"username": "o", "password": "q"}}})
    )
    env = {"REGISTRY_AUTH_FILE": str(auth), "DOCKER_CONFIG": str(docker)}
    assert find_credentials("r.example:5000", environ=env) == Credentials("u", "p:w")
    assert find_credentials("other.example", environ=env) == Credentials("o", "q")
    assert find_credentials("none.example", environ=env) is None
    assert "p:w" not in repr(find_credentials("r.example:5000", environ=env))


def test_a_user_flag_needs_a_password_from_the_environment_or_a_file(tmp_path):
    with pytest.raises(AuthFailed, match="DONJON_REGISTRY_PASSWORD"):
        find_credentials("r.example", username="u", environ={})
    assert find_credentials(
        "r.example", username="u", environ={"DONJON_REGISTRY_PASSWORD": "s"}
    ) == Credentials("u", "s")
    (tmp_path / "pw").write_text("secret\n")
    assert find_credentials(
        "r.example", username="u", password_file=str(tmp_path / "pw"), environ={}
    ) == Credentials("u", "secret")


def test_an_unreadable_auth_file_names_the_file_not_its_content(tmp_path):
    auth = tmp_path / "auth.json"
    auth.write_text("not json: hunter2")
    with pytest.raises(AuthFailed) as e:
        find_credentials("r.example", environ={"REGISTRY_AUTH_FILE": str(auth)})
    assert "hunter2" not in str(e.value) and str(auth) in str(e.value)


def test_a_tar_with_the_same_file_twice_is_refused(tmp_path):
    one, two = _member("same"), _member("same")
    with pytest.raises(MalformedPackage, match="twice"):
        unpack_trees(_DIR_CONFIG, [TreeEntry("d", "dir", _tar(one, two))], tmp_path, limit=1 << 20)


def test_a_tar_with_a_directory_under_a_file_is_refused(tmp_path):
    with pytest.raises(MalformedPackage, match="cannot be unpacked"):
        unpack_trees(
            _DIR_CONFIG,
            [TreeEntry("d", "dir", _tar(_member("x"), _member("x/y", tarfile.DIRTYPE)))],
            tmp_path,
            limit=1 << 20,
        )


# -- what a package run may not be told ----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--config", "Donjon.toml"], "brings its own config"),
        (["--dir", "data"], "brings its own config"),
        (["--max-memory", "64 MiB"], r"its own \[limits\]"),
        (["--deadline", "1"], r"its own \[limits\]"),
        ([], "name the trusted signers"),
    ],
)
def test_a_package_run_refuses_what_would_change_its_config_or_skip_its_signature(extra, match):
    """Limits are part of the workload digest the package names: a run that changed them would
    run (and attest) another workload, so they are refused, never silently dropped."""
    from donjon.cli.run import UsageError, parse_args

    signers = [] if not extra else ["--trust-signer", "signer.pub"]
    with pytest.raises(UsageError, match=match):
        parse_args([*signers, *extra, "oci://registry.example/app:v1"])


def test_an_unreadable_signer_key_is_operational_exit_3_naming_the_file(tmp_path, capsys):
    from donjon.cli import main

    missing = tmp_path / "nowhere.pub"
    code = main(["run", "--backend", "nil", "--trust-signer", str(missing), "oci://127.0.0.1:9/app:v1"])
    err = capsys.readouterr().err
    assert code == 3 and f"{missing}: cannot read" in err and err.count("\n") == 1


# -- keygen ------------------------------------------------------------------------------------


def test_keygen_never_writes_through_a_link_and_leaves_no_half_pair(tmp_path, capsys):
    import os
    import stat

    from donjon.cli.package import main

    precious = tmp_path / "precious"
    precious.write_text("not yours")
    (tmp_path / "k.pub").symlink_to(precious)
    assert main(["keygen", str(tmp_path / "k")]) == 3
    assert "k.pub exists" in capsys.readouterr().err
    assert precious.read_text() == "not yours"  # was written through the link
    assert not (tmp_path / "k.key").exists()  # and no .key left without its .pub
    (tmp_path / "k.pub").unlink()
    umask = os.umask(0o022)
    try:
        assert main(["keygen", str(tmp_path / "k")]) == 0
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.pub").stat().st_mode) == 0o644
    assert main(["keygen", str(tmp_path / "k")]) == 3  # never over a key
