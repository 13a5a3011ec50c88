"""Redirects and proxies on the registry client's transport (donjon.oci.transport), on loopback.

- The real registry (distribution 2.8) with its ``redirect`` storage middleware answers blob GETs
  and HEADs with 307 to object storage - here a loopback HTTPS origin serving the registry's
  storage directory: push and pull work through the CLI, and the origin never sees the
  registry's ``Authorization``.
- A scriptable front (test code) redirects blob GETs where a test says: to ``http://``, in a
  loop, to a body over the limit or with another digest. Each is refused by name.
- A loopback ``CONNECT`` proxy with ``HTTPS_PROXY`` set: a whole pull goes through it on one
  tunnel (one kept-alive connection); ``NO_PROXY`` bypasses it; a proxy that is down is exit 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from donjon.oci.artifact import digest_of
from donjon.oci.auth import Credentials
from donjon.oci.errors import DigestMismatch, RegistryError, TooLarge
from donjon.oci.reference import parse_reference
from donjon.oci.registry import RegistryClient, RetryPolicy
from donjon.oci.transport import MAX_REDIRECTS

from .conftest import REGISTRY_PASSWORD, REGISTRY_USER, Registry
from .oci_servers import CA, BlobOrigin, ConnectProxy, RedirectFront, never_called
from .test_e2e_oci import Packager, _workload

_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def _no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# -- a real registry that redirects blobs to object storage ------------------------------------


@pytest.fixture(scope="module")
def redirecting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    directory = tmp_path_factory.mktemp("redirecting-registry")
    storage_ca = CA("donjon test object storage CA")
    origin = BlobOrigin(directory, storage_ca, root=directory / "registry" / "data")
    middleware = f"middleware: {{storage: [{{name: redirect, options: {{baseurl: '{origin.origin}'}}}}]}}\n"
    registry = Registry(directory / "registry", extra=middleware)
    bundle = directory / "ca-bundle.pem"
    bundle.write_bytes(registry.ca.read_bytes() + storage_ca.pem)
    registry.ca = bundle
    try:
        yield SimpleNamespace(registry=registry, origin=origin)
    finally:
        registry.close()
        origin.close()


def test_a_registry_redirecting_blobs_to_storage_pushes_and_pulls_without_leaking_credentials(
    e2e, redirecting, tmp_path, capsys, monkeypatch
):
    registry, origin = redirecting.registry, redirecting.origin
    pkg = Packager(registry, tmp_path, capsys, monkeypatch)
    steward = e2e.steward()
    w = _workload(e2e, steward, "redirected")
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/redirected", key=key)
    # Pushed again: the registry answers each blob's HEAD with the same 307 (the blob is there).
    again = pkg.donjon(
        "package", "push", str(pkg.tmp / "e2e-redirected.oci"), f"{registry.host}/e2e/redirected:v2"
    )
    assert again == pinned
    origin.seen.clear()
    out = pkg.donjon("package", "verify", "--trust-signer", str(pub), pinned)
    assert f"package {pinned}" in out
    module_digest = digest_of(w.wasm.read_bytes()).removeprefix("sha256:")
    served = [path for path, _ in origin.seen]
    assert f"/docker/registry/v2/blobs/sha256/{module_digest[:2]}/{module_digest}/data" in served
    # The registry got Basic credentials on every request; storage never saw them.
    assert origin.seen and all(auth is None for _, auth in origin.seen)


# -- a scriptable front: hostile redirects -------------------------------------------------------


@pytest.fixture
def front(tmp_path: Path) -> Iterator[SimpleNamespace]:
    ca = CA("donjon test front CA")
    front, origin = RedirectFront(tmp_path, ca), BlobOrigin(tmp_path, ca)
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    client = RegistryClient(
        front.host,
        credentials=Credentials(REGISTRY_USER, REGISTRY_PASSWORD),
        ca_file=str(tmp_path / "ca.pem"),
        retry=RetryPolicy(backoff=(0.0,)),
    )
    try:
        yield SimpleNamespace(
            front=front, origin=origin, client=client, ref=parse_reference(f"{front.host}/app:v1")
        )
    finally:
        client.close()
        front.close()
        origin.close()


def test_a_redirected_blob_arrives_checked_and_the_other_origin_never_sees_authorization(front):
    blob = b"module bytes " * 1000
    front.origin.body = blob
    front.front.location = lambda path: f"{front.origin.origin}/bucket/{path.rsplit('/', 1)[1]}?sig=x"
    assert front.client.get_blob(front.ref, digest_of(blob), limit=1 << 20) == blob
    assert front.front.seen[0][1] is not None and front.front.seen[0][1].startswith("Basic ")
    assert front.origin.seen == [(f"/bucket/{digest_of(blob)}?sig=x", None)]


def test_a_401_from_the_storage_a_redirect_led_to_is_not_answered_with_credentials(front):
    front.origin.failures = [(401, b"{}")]
    front.front.location = lambda path: f"{front.origin.origin}/bucket/blob"
    with pytest.raises(RegistryError, match="answered 401"):
        front.client.get_blob(front.ref, digest_of(b"x"), limit=1 << 20)
    assert front.origin.seen == [("/bucket/blob", None)] and len(front.front.seen) == 1


def test_a_redirect_to_plain_http_is_refused_and_not_followed(front):
    with never_called() as (port, accepted):
        front.front.location = lambda path: f"http://127.0.0.1:{port}/bucket/blob"
        with pytest.raises(RegistryError, match=r"redirect refused: http://127.0.0.1:\d+/bucket/blob is not"):
            front.client.get_blob(front.ref, digest_of(b"x"), limit=1 << 20)
    assert accepted == []


def test_a_redirect_loop_stops_after_the_hop_limit(front):
    with pytest.raises(RegistryError, match=f"more than {MAX_REDIRECTS} redirects"):
        front.client.get_blob(front.ref, digest_of(b"x"), limit=1 << 20)
    assert len(front.front.seen) == MAX_REDIRECTS + 1


def test_a_redirected_body_over_the_limit_is_refused(front):
    front.origin.body = b"\0" * 5000
    front.front.location = lambda path: f"{front.origin.origin}/big"
    with pytest.raises(TooLarge) as e:
        front.client.get_blob(front.ref, digest_of(front.origin.body), limit=4096)
    assert (e.value.size, e.value.limit) == (5000, 4096)


def test_a_redirected_body_with_another_digest_is_refused(front):
    front.origin.body = b"not the module"
    front.front.location = lambda path: f"{front.origin.origin}/other"
    with pytest.raises(DigestMismatch):
        front.client.get_blob(front.ref, digest_of(b"the module"), limit=4096)


# -- a CONNECT proxy -----------------------------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    p = ConnectProxy()
    try:
        yield p
    finally:
        p.close()


def _published(registry, tmp_path, capsys, monkeypatch, e2e, label: str) -> tuple[Packager, str]:
    pkg = Packager(registry, tmp_path, capsys, monkeypatch)
    w = _workload(e2e, e2e.steward(), label)
    return pkg, pkg.publish(w, f"e2e/{label}", key=None)


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_a_pull_goes_through_the_proxy_on_one_tunnel(
    e2e, registry, proxy, tmp_path, capsys, monkeypatch, variable
):
    pkg, pinned = _published(registry, tmp_path, capsys, monkeypatch, e2e, f"proxied-{variable.lower()}")
    monkeypatch.setenv(variable, proxy.url)
    out = pkg.donjon("package", "verify", "--allow-unsigned", pinned)
    assert f"package {pinned}" in out
    # Manifest, signature lookup, config and module layers: one kept-alive connection.
    assert proxy.tunnels == [registry.host]


def test_a_push_goes_through_the_proxy_and_its_upload_location_stays_on_the_registry(
    e2e, registry, proxy, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    _, pinned = _published(registry, tmp_path, capsys, monkeypatch, e2e, "pushed-via-proxy")
    assert pinned.startswith(f"{registry.host}/e2e/pushed-via-proxy@sha256:")
    assert set(proxy.tunnels) == {registry.host}


def test_an_unusable_proxy_setting_is_exit_3_at_once(e2e, registry, tmp_path, capsys, monkeypatch):
    pkg, pinned = _published(registry, tmp_path, capsys, monkeypatch, e2e, "socks-proxy")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    pkg.donjon("package", "verify", "--allow-unsigned", pinned, expect=3)
    assert "only http:// proxies are supported" in pkg.err and "attempts" not in pkg.err


def test_no_proxy_bypasses_the_proxy(e2e, registry, proxy, tmp_path, capsys, monkeypatch):
    pkg, pinned = _published(registry, tmp_path, capsys, monkeypatch, e2e, "bypassed")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    pkg.donjon("package", "verify", "--allow-unsigned", pinned)
    assert proxy.tunnels == []


def test_a_proxy_that_is_down_is_exit_3_naming_it(e2e, registry, tmp_path, capsys, monkeypatch, helpers):
    pkg, pinned = _published(registry, tmp_path, capsys, monkeypatch, e2e, "proxy-down")
    port = helpers.free_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    pkg.donjon("package", "verify", "--allow-unsigned", pinned, expect=3)
    assert f"cannot connect (through proxy 127.0.0.1:{port})" in pkg.err
    assert pkg.err.count("\n") == 1


# -- keep-alive ----------------------------------------------------------------------------------


def test_a_kept_connection_the_peer_closed_is_reopened_without_a_retry(tmp_path):
    """The server closes each connection after answering (as an idle timeout would): the next
    request finds the pooled connection dead and reopens it at once - no backoff, no attempt spent."""
    ca = CA("donjon test keep-alive CA")
    origin = BlobOrigin(tmp_path, ca)
    origin.body, origin.hang_up = b"blob", True
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    sleeps: list[float] = []
    client = RegistryClient(
        f"127.0.0.1:{origin.port}", ca_file=str(tmp_path / "ca.pem"), sleep=sleeps.append,
        retry=RetryPolicy(attempts=1),
    )  # fmt: skip
    ref = parse_reference(f"127.0.0.1:{origin.port}/app:v1")
    try:
        with client:
            for _ in range(3):
                assert client.get_blob(ref, digest_of(b"blob"), limit=64) == b"blob"
    finally:
        origin.close()
    assert sleeps == [] and len(origin.seen) == 3


# -- retries, TLS and error bodies ---------------------------------------------------------------


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[SimpleNamespace]:
    ca = CA("donjon test origin CA")
    server = BlobOrigin(tmp_path, ca)
    server.body = b"blob"
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    sleeps: list[float] = []
    client = RegistryClient(f"127.0.0.1:{server.port}", ca_file=str(tmp_path / "ca.pem"), sleep=sleeps.append)
    try:
        yield SimpleNamespace(
            server=server,
            client=client,
            sleeps=sleeps,
            ref=parse_reference(f"127.0.0.1:{server.port}/app:v1"),
        )
    finally:
        client.close()
        server.close()


def test_5xx_and_429_are_retried_with_the_backoff_then_succeed(origin):
    origin.server.failures = [(503, b"{}"), (429, b"{}")]
    assert origin.client.get_blob(origin.ref, digest_of(b"blob"), limit=64) == b"blob"
    assert origin.sleeps == [0.2, 0.5] and len(origin.server.seen) == 3


def test_5xx_after_every_attempt_is_unavailable_naming_the_attempts(origin):
    from donjon.oci.errors import RegistryUnavailable

    origin.server.failures = [(502, b"{}")] * 3
    with pytest.raises(RegistryUnavailable, match="answered 502 \\(after 3 attempts\\)"):
        origin.client.get_blob(origin.ref, digest_of(b"blob"), limit=64)
    assert len(origin.server.seen) == 3


def test_an_error_body_is_read_bounded_and_its_message_shown(origin):
    huge = b'{"errors":[{"code":"DENIED","message":"no such thing"}]}' + b" " * (1 << 20)
    origin.server.failures = [(400, huge)]
    with pytest.raises(RegistryError, match="answered 400: no such thing"):
        origin.client.get_blob(origin.ref, digest_of(b"blob"), limit=64)


def test_a_tls_failure_is_not_retried(origin, tmp_path):
    from donjon.oci.errors import RegistryUnavailable

    (tmp_path / "other.pem").write_bytes(CA("another CA").pem)
    client = RegistryClient(
        origin.client.registry, ca_file=str(tmp_path / "other.pem"), sleep=origin.sleeps.append
    )
    with client, pytest.raises(RegistryUnavailable, match="TLS certificate check failed"):
        client.get_blob(origin.ref, digest_of(b"blob"), limit=64)
    assert origin.sleeps == [] and origin.server.seen == []
