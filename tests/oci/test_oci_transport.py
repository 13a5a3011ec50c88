"""The registry client's pure parts: auth challenges, token answers, URLs, proxies from the
environment; and what the pull path imports (the point of leaving httpx: its import time).

Against servers: tests/e2e/test_e2e_oci_auth.py (token auth) and test_e2e_oci_transport.py
(redirects, proxies, keep-alive)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from donjon.oci.errors import RegistryError
from donjon.oci.token import MAX_TOKEN_ANSWER, parse_challenge, parse_token_answer, scope
from donjon.oci.transport import (
    Origin,
    RedirectRefused,
    TransportError,
    environment_proxy,
    split_https_url,
)


def test_the_pull_path_imports_neither_httpx_nor_urllib_request():
    code = (
        "import sys, donjon.oci.pull, donjon.cli.package\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore') "
        "or m == 'urllib.request'))"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no proxy variable: urllib.request is not needed
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_distributions_bearer_challenge_parses():
    # registry/auth/token/accesscontroller.go challengeParams, as the registry sends it.
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:team/app:pull,push",error="insufficient_scope"'
    )
    assert c.scheme == "bearer" and c.error == "insufficient_scope"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:team/app:pull,push",
        "error": "insufficient_scope",
    }


def test_a_challenge_with_escapes_bare_tokens_and_odd_case_parses():
    c = parse_challenge('BASIC Realm="a \\"quoted\\" realm", charset=UTF-8')
    assert c.scheme == "basic" and c.params == {"realm": 'a "quoted" realm', "charset": "UTF-8"}
    assert parse_challenge("").scheme == "" and parse_challenge("Bearer").params == {}


def test_a_token_answer_parses_with_its_lifetime_bounded():
    assert parse_token_answer("r", b'{"token": "abc", "expires_in": 300}').expires_in == 300
    assert parse_token_answer("r", b'{"access_token": "abc"}').expires_in == 60  # token.md default
    assert parse_token_answer("r", b'{"token": "abc", "expires_in": 10000000}').expires_in == 3600
    assert parse_token_answer("r", b'{"token": "abc", "expires_in": -5}').expires_in == 60
    assert parse_token_answer("r", b'{"token": "abc", "expires_in": true}').expires_in == 60
    assert "abc" not in repr(parse_token_answer("r", b'{"token": "abc"}'))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b"{}", "no usable token"),
        (b'{"token": ""}', "no usable token"),
        (b'{"token": 5}', "no usable token"),
        (b'{"token": "a\\r\\nX-Injected: 1"}', "no usable token"),  # it goes into a header line
        (json.dumps({"token": "a" * MAX_TOKEN_ANSWER}).encode(), "answer over"),
    ],
)
def test_a_bad_token_answer_is_refused_by_name(body, match):
    with pytest.raises(RegistryError, match=match):
        parse_token_answer("r", body)


def test_scope_is_token_mds_resource_scope():
    assert scope("team/app", "pull,push") == "repository:team/app:pull,push"


def test_only_https_urls_are_requested_and_credentials_stay_out_of_the_error():
    assert split_https_url("https://r.example/v2/app/blobs/x?a=1") == (
        Origin("r.example", 443),
        "/v2/app/blobs/x?a=1",
    )
    assert split_https_url("https://[::1]:5000")[0] == Origin("::1", 5000)
    assert str(Origin("::1", 5000)) == "[::1]:5000"
    for url in ("http://r.example/x", "ftp://r.example/x", "//r.example/x", "https:///x"):
        with pytest.raises(RedirectRefused, match="is not an https:// URL"):
            split_https_url(url)
    with pytest.raises(RedirectRefused) as e:
        split_https_url("http://user:secret@r.example/x")
    assert "secret" not in str(e.value)


_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def env(monkeypatch):
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_no_proxy_variable_means_a_direct_connection(env):
    env.setenv("HTTP_PROXY", "http://proxy:3128")  # for http:// only: a registry is https
    assert environment_proxy(Origin("r.example", 443)) is None


def test_https_proxy_and_no_proxy_are_read_as_curl_does(env):
    env.setenv("HTTPS_PROXY", "proxy.corp:3128")
    env.setenv("NO_PROXY", "localhost, .internal.example,10.0.0.5")
    proxy = environment_proxy(Origin("r.example", 443))
    assert proxy is not None and proxy.origin == Origin("proxy.corp", 3128) and proxy.authorization is None
    assert environment_proxy(Origin("localhost", 5000)) is None
    assert environment_proxy(Origin("reg.internal.example", 443)) is None
    assert environment_proxy(Origin("10.0.0.5", 5000)) is None
    assert environment_proxy(Origin("10.0.0.50", 5000)) is not None
    env.setenv("NO_PROXY", "*")
    assert environment_proxy(Origin("r.example", 443)) is None


def test_a_proxy_with_credentials_sends_them_to_the_proxy_only_and_hides_them(env):
    env.setenv("https_proxy", "http://me:p%40ss@proxy:8080")
    proxy = environment_proxy(Origin("r.example", 443))
    assert proxy is not None and proxy.authorization == "Basic bWU6cEBzcw=="  # me:p@ss
    assert "p@ss" not in repr(proxy) and "bWU6" not in repr(proxy)


def test_all_proxy_serves_when_https_proxy_is_unset(env):
    env.setenv("ALL_PROXY", "http://proxy:3128")
    proxy = environment_proxy(Origin("r.example", 443))
    assert proxy is not None and proxy.origin == Origin("proxy", 3128)


@pytest.mark.parametrize("url", ["https://proxy:3128", "socks5://proxy:1080"])
def test_a_proxy_this_client_cannot_use_is_refused_clearly(env, url):
    env.setenv("HTTPS_PROXY", url)
    with pytest.raises(TransportError, match="only http:// proxies are supported"):
        environment_proxy(Origin("r.example", 443))
