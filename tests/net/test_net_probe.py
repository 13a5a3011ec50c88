"""The WASI socket calls one at a time: a probe guest (guests/netprobe.c) against a scripted peer.

The same guest runs behind ``prot = "tcp"`` and ``prot = "tls"``: it cannot tell them apart,
which is the point — blocking and non-blocking accept/recv, MSG_PEEK, MSG_WAITALL, poll with a
timeout and for input, fd_read/fd_write on a socket, shutdown, the errnos of misuse.
"""

from __future__ import annotations

import signal
import socket
import ssl
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

PROBE = Path(__file__).parent / "guests" / "netprobe.wasm"


def read_exactly(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "closed early"
        data += chunk
    return data


@pytest.mark.parametrize("prot", ["tcp", "tls"])
def test_socket_calls_one_by_one(keep, net: SimpleNamespace, prot: str) -> None:  # type: ignore[no-untyped-def]
    port = net.free_port()
    k = keep(PROBE, net.config_text(net.listen_entry("probe", port, prot)))
    k.wait_for("probe: accepting")  # the non-blocking accept has run with nobody connecting
    raw = socket.create_connection(("127.0.0.1", port), timeout=net.TIMEOUT)
    sock: Any = raw
    if prot == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
    sock.sendall(b"hello")
    sock.sendall(b"01234")
    time.sleep(0.2)  # MSG_WAITALL must wait for the second half
    sock.sendall(b"56789")
    assert read_exactly(sock, 3) == b"ack"
    sock.sendall(b"x")
    assert read_exactly(sock, 1) == b"w"
    assert sock.recv(10) == b""  # the guest shut down its sending side
    sock.close()
    code, out = k.finish()
    assert code == 0, k.stderr
    results = dict(line.split("=", 1) for line in out.decode().splitlines())
    expected = {
        "listen_filetype": "6",  # witx filetype SOCKET_STREAM
        "recv_stdout": "ENOTSOCK",
        "recv_listener": "ENOTCONN",
        "read_listener": "ENOTCONN",
        "setfl_nonblock": "0",
        "listen_nonblocking": "1",
        "accept_nonblocking": "EAGAIN",
        "setfl_blocking": "0",
        "accept": "0",
        "conn_filetype": "6",
        "conn_nonblocking": "0",
        "peek": "5",
        "peek_data": "hello",
        "recv": "5",
        "recv_data": "hello",
        "waitall": "10",
        "waitall_data": "0123456789",
        "setfl_conn_nonblock": "0",
        "recv_nonblocking": "EAGAIN",
        "poll_timeout": "0",
        "send": "3",
        "poll_in": "1",
        "poll_in_revents_pollin": "1",
        "fd_read": "1",
        "fd_read_data": "x",
        "fd_write": "1",
        "shutdown_bad": "EINVAL",
        "shutdown_wr": "0",
        "poll_eof": "1",
        "recv_eof": "0",
        "close": "0",
        "recv_closed": "EBADF",
        "accept_on_stream": "ENOTSOCK",
    }
    assert {key: results.get(key) for key in expected} == expected, out.decode()
    assert results["send_after_close"] in ("EPIPE", "ECONNRESET"), out.decode()


def test_ctrl_c_ends_a_guest_blocked_in_accept(keep, net: SimpleNamespace) -> None:  # type: ignore[no-untyped-def]
    """While the guest runs, SIGINT has its default action: a blocking wait in the host ends with it."""
    port = net.free_port()
    k = keep(PROBE, net.config_text(net.listen_entry("probe", port, "tcp")))
    k.wait_for("probe: accepting")
    time.sleep(0.1)  # into the blocking accept's poll(2)
    k.proc.send_signal(signal.SIGINT)
    code, _ = k.finish(timeout=5)
    assert code == -signal.SIGINT
