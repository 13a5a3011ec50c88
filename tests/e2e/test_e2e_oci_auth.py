"""Token auth against the real registry: Debian's ``docker-registry`` (distribution 2.8) with
``auth: token``, and a loopback token service (tests/e2e/oci_servers.py) that checks HTTP Basic
and issues ES256 JWTs whose ``x5c`` chains to the registry's ``rootcertbundle``.

Through the real CLI (``donjon package push/sign`` in process, ``donjon run oci://`` as a child
attested on sim-snp) and through ``RegistryClient``: the Docker token flow works end to end, each
scope's token is fetched once, and every failure of the token service is exit 3 with one line.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from donjon.oci.auth import Credentials
from donjon.oci.errors import AuthFailed, RegistryError, RegistryUnavailable
from donjon.oci.pull import pull
from donjon.oci.reference import parse_reference
from donjon.oci.registry import RegistryClient, RetryPolicy
from donjon.oci.token import MAX_TOKEN_ANSWER

from .conftest import REGISTRY_PASSWORD, REGISTRY_USER, Registry
from .oci_servers import CA, TokenService, never_called
from .test_e2e_oci import SPIFFE_PATH, Packager, _run, _workload


def _token_registry(directory: Path, realm_auth: str, token_tls: CA) -> Registry:
    registry = Registry(directory, auth=realm_auth)
    # The client trusts the registry's CA and the token service's: one PEM bundle.
    bundle = directory / "ca-bundle.pem"
    bundle.write_bytes(registry.ca.read_bytes() + token_tls.pem)
    registry.ca = bundle
    return registry


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    directory = tmp_path_factory.mktemp("token-registry")
    tls = CA("donjon test token service TLS CA")
    service = TokenService(directory, tls, {REGISTRY_USER: REGISTRY_PASSWORD})
    registry = _token_registry(directory / "registry", service.registry_auth(), tls)
    try:
        yield SimpleNamespace(registry=registry, service=service)
    finally:
        registry.close()
        service.close()


@pytest.fixture
def tokens(token_setup: SimpleNamespace) -> SimpleNamespace:
    """The module's registry and token service, with the service's behaviour reset."""
    service = token_setup.service
    service.grant = lambda name: {"pull", "push"}
    service.oversize = False
    service.requests.clear()
    return token_setup


@pytest.fixture
def pkg(tokens, tmp_path, capsys, monkeypatch) -> Packager:
    return Packager(tokens.registry, tmp_path, capsys, monkeypatch)


def _client(registry: Registry, password: str = REGISTRY_PASSWORD) -> RegistryClient:
    return RegistryClient(
        registry.host,
        credentials=Credentials(REGISTRY_USER, password),
        ca_file=str(registry.ca),
        retry=RetryPolicy(backoff=(0.0,)),
    )


def test_push_sign_and_an_attested_run_work_with_token_auth(e2e, tokens, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "token-run")
    steward.set_policy(e2e.policy([e2e.rule(w.digest, SPIFFE_PATH)]))
    key, pub = pkg.keygen("signer")
    pinned = pkg.publish(w, "e2e/token-run", key=key)
    repo = "e2e/token-run"
    # Every request of push and sign went with a token the service issued, not Basic.
    assert set(tokens.service.requests) == {f"repository:{repo}:pull,push", f"repository:{repo}:pull"}
    keep = _run(
        e2e, tokens.registry, steward, f"{tokens.registry.host}/{repo}:v1", "--trust-signer", str(pub)
    )
    keep.wait_for("listening on")
    assert f"package {pinned}" in keep.err
    pkg.donjon(
        "peer", "verify", f"127.0.0.1:{w.port}", "--ca", str(steward.ca_path), "--allow-simulated",
        "--workload-digest", w.digest.hex(),
    )  # fmt: skip


def test_a_token_is_fetched_once_per_scope_not_per_request(e2e, tokens, pkg):
    steward = e2e.steward()
    w = _workload(e2e, steward, "token-count")
    _key, _pub = pkg.keygen("signer")
    layout = pkg.tmp / "count.oci"
    pkg.donjon("package", "build", "--config", str(w.config), str(w.wasm), "-o", str(layout))
    pkg.donjon("package", "push", str(layout), f"{tokens.registry.host}/e2e/token-count:v1")
    # A push is a HEAD, POST and PUT per blob and a PUT of the manifest: one pull,push token.
    assert tokens.service.requests == ["repository:e2e/token-count:pull,push"]
    tokens.service.requests.clear()
    ref = parse_reference(f"{tokens.registry.host}/e2e/token-count:v1")
    with _client(tokens.registry) as client:
        pulled = pull(client, ref, trusted=[], allow_unsigned=True)
        assert pulled.module == w.wasm.read_bytes()
        client.get_manifest(ref, "v1")
    # Resolve, manifest, signature lookup, every layer, and again the tag: one pull token.
    assert Counter(tokens.service.requests) == Counter({"repository:e2e/token-count:pull": 1})


def test_wrong_password_at_the_token_service_is_exit_3_with_one_clear_line(e2e, tokens, pkg, tmp_path):
    steward = e2e.steward()
    _, pub = pkg.keygen("signer")
    wrong = tmp_path / "wrong.json"
    import base64

    wrong.write_text(
        json.dumps({"auths": {tokens.registry.host: {"auth": base64.b64encode(b"donjon:nope").decode()}}})
    )
    keep = e2e.keep(
        ["--backend", "sim-snp", "--steward-ca", str(steward.ca_path), "--trust-signer", str(pub),
         f"oci://{tokens.registry.host}/e2e/token-run:v1"],
        env={**tokens.registry.env, "REGISTRY_AUTH_FILE": str(wrong)},
    )  # fmt: skip
    assert keep.wait() == 3
    lines = [line for line in keep.stderr if line.startswith("donjon: ")]
    assert lines == [
        f"donjon: registry {tokens.registry.host}: the token service refused the credentials (401)"
    ], keep.err
    assert "nope" not in keep.err and "Traceback" not in keep.err
    assert tokens.service.requests == [None]


def test_a_token_service_that_is_down_is_exit_3(tmp_path, capsys, monkeypatch):
    tls = CA("donjon test token service TLS CA")
    service = TokenService(tmp_path, tls, {REGISTRY_USER: REGISTRY_PASSWORD})
    realm = service.registry_auth()
    service.close()  # its port now refuses connections
    registry = _token_registry(tmp_path / "registry", realm, tls)
    try:
        p = Packager(registry, tmp_path, capsys, monkeypatch)
        out = p.donjon("package", "verify", "--allow-unsigned", f"{registry.host}/e2e/anything:v1", expect=3)
        assert out == ""
        assert p.err.count("\n") == 1 and p.err.startswith(f"donjon: registry {registry.host}: token service")
        assert "cannot connect" in p.err and "after 3 attempts" in p.err
    finally:
        registry.close()


def test_a_pull_only_grant_refuses_a_push_with_a_clear_error(tokens, pkg, tmp_path):
    config = tmp_path / "Donjon.toml"
    config.write_text('[[files]]\nkind = "stdout"\n')
    wasm = Path(__file__).resolve().parents[2] / "examples" / "hello" / "hello.wasm"
    layout = tmp_path / "pull-only.oci"
    pkg.donjon("package", "build", "--config", str(config), str(wasm), "-o", str(layout))
    tokens.service.grant = lambda name: {"pull"}
    pkg.donjon("package", "push", str(layout), f"{tokens.registry.host}/e2e/pull-only:v1", expect=3)
    assert pkg.err == (
        f"donjon: registry {tokens.registry.host}: the token service did not grant "
        "repository:e2e/pull-only:pull,push (insufficient_scope)\n"
    )


def test_an_oversize_token_answer_is_refused_without_reading_it_all(tokens):
    tokens.service.oversize = True
    ref = parse_reference(f"{tokens.registry.host}/e2e/oversize:v1")
    with _client(tokens.registry) as client, pytest.raises(RegistryError, match="answer over") as e:
        client.get_manifest(ref, "v1")
    assert not isinstance(e.value, RegistryUnavailable)
    assert f"{MAX_TOKEN_ANSWER} bytes" in str(e.value)


def test_a_realm_that_is_not_https_is_refused_before_any_password_is_sent(tmp_path):
    # A plain-HTTP "token service" that would receive the password: it must never be called.
    with never_called(0.2) as (port, accepted):
        tls = CA("unused")
        service = TokenService(tmp_path, tls, {})
        auth = service.registry_auth().replace(service.realm, f"http://127.0.0.1:{port}/token")
        service.close()
        registry = _token_registry(tmp_path / "registry", auth, tls)
        try:
            ref = parse_reference(f"{registry.host}/e2e/plain:v1")
            with _client(registry) as client, pytest.raises(AuthFailed, match="is not https://"):
                client.get_manifest(ref, "v1")
        finally:
            registry.close()
    assert accepted == []


def test_a_cached_token_refused_by_the_registry_is_fetched_again_once(tokens):
    """A token the registry no longer accepts (expired, rotated signing key) is asked for again
    once for the request, not in a loop."""
    ref = parse_reference(f"{tokens.registry.host}/e2e/token-run:v1")
    with _client(tokens.registry) as client:
        client.get_manifest(ref, "v1")
        assert len(tokens.service.requests) == 1
        for token in client._tokens.values():
            object.__setattr__(token, "authorization", "Bearer not-a-jwt")
        client.get_manifest(ref, "v1")
        assert len(tokens.service.requests) == 2


def test_no_credentials_for_a_token_service_that_wants_some_says_so(tokens):
    ref = parse_reference(f"{tokens.registry.host}/e2e/token-run:v1")
    client = RegistryClient(tokens.registry.host, ca_file=str(tokens.registry.ca))
    with client, pytest.raises(AuthFailed, match="the token service needs credentials"):
        client.get_manifest(ref, "v1")
    assert tokens.service.requests == [None]
