"""A local HTTP server on 127.0.0.1 that replays recorded KDS/PCS answers, counting requests."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def normalise(target: str) -> str:
    """Path plus the query with its parameters sorted, so tests need not care about order."""
    parts = urllib.parse.urlsplit(target)
    query = sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    return parts.path + ("?" + urllib.parse.urlencode(query) if query else "")


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: False: send no Content-Length and close the connection to end the body.
    content_length: bool = True


class ReplayServer:
    """Routes ``path?query`` to answers; a list of answers is played in order, the last one repeating."""

    Answer = Answer

    def __init__(self) -> None:
        self.routes: dict[str, list[Answer]] = {}
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                key = normalise(self.path)
                with server.lock:
                    server.hits[key] += 1
                    answers = server.routes.get(key)
                    answer = (answers.pop(0) if len(answers) > 1 else answers[0]) if answers else Answer(404)
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    if answer.content_length:
                        self.send_header("Content-Length", str(len(answer.body)))
                    else:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def route(self, target: str, *answers: Answer) -> str:
        key = normalise(target)
        self.routes[key] = list(answers)
        return key

    def total_hits(self) -> int:
        return sum(self.hits.values())


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    server = ReplayServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join(timeout=5)
