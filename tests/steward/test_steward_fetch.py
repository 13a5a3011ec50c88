"""The Steward's own collateral fetched from a (local, fake) AMD KDS through donjon.collateral's cache."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest


class FakeKds:
    """Serves what KDS serves for one simulated product line: cert_chain (PEM) and crl (DER)."""

    def __init__(self, vendor, product: str = "Milan") -> None:
        self.routes = {
            f"/vcek/v1/{product}/cert_chain": (vendor.cert_chain_pem(), "application/x-pem-file"),
            f"/vcek/v1/{product}/crl": (vendor.crl(), "application/pkix-crl"),
        }
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                found = routes.get(self.path.split("?")[0])
                if found is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                body, ctype = found
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKds:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _fetching(env, url: str, *, offline: bool = False) -> None:
    shutil.rmtree(env.dir / "collateral" / "snp-report")
    text = env.config.read_text().replace("fetch = false", "fetch = true")
    text = text.replace('# kds_url = "https://kdsintf.amd.com"', f'kds_url = "{url}"')
    if offline:
        text = text.replace("offline = false", "offline = true")
    env.config.write_text(text)


def test_collateral_fetched_from_kds_and_cached(env, kit):
    with FakeKds(env.vendor) as kds:
        _fetching(env, kds.url)
        keep = kit.Keep(env.vendor)
        with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
            assert keep.attest(client, srv.url).status_code == 200
            assert keep.attest(client, srv.url).status_code == 200
        assert sorted(set(kds.hits)) == ["/vcek/v1/Milan/cert_chain", "/vcek/v1/Milan/crl"]
        assert len(kds.hits) == 2  # the second request was served from the cache
    # Offline, from the cache alone, it still works; with an empty cache it is refused.
    text = env.config.read_text().replace("offline = false", "offline = true")
    env.config.write_text(text)
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        assert kit.Keep(env.vendor).attest(client, srv.url).status_code == 200
    shutil.rmtree(env.dir / "collateral-cache")
    with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
        r = kit.Keep(env.vendor).attest(client, srv.url)
        assert r.status_code == 403 and r.json()["check"] == "collateral.missing"


@pytest.mark.parametrize("product", ["Genoa"])
def test_kds_without_the_product_line_is_refused(env, kit, product):
    with FakeKds(env.vendor, product=product) as kds:
        _fetching(env, kds.url)
        with kit.ServerThread(env.steward()) as srv, httpx.Client() as client:
            r = kit.Keep(env.vendor).attest(client, srv.url)
            assert r.status_code == 403 and r.json()["check"] == "collateral.missing"
