"""The Steward's connection and refusal limits (``[connections]`` in ``steward.toml``), as values.

Pure: the numbers and the rule that turns a peer's address into the key the limits count
under. :mod:`donjon.steward.connguard` enforces the connection limits on the listening
socket, :mod:`donjon.steward.ratelimit` the refusal rate; docs/steward.md "Threat model and
limits" says what each covers and what it does not.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["IPV6_PREFIX", "ConnectionLimits", "address_key"]

#: IPv6 peers are counted per /64: one host is usually given a whole /64 (RFC 7421 section 1),
#: so counting single IPv6 addresses would give one attacker 2^64 separate budgets.
IPV6_PREFIX = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines (seconds) that run from accept, and caps on what one address may hold.

    ``header_timeout``: from accept, the TLS handshake and the whole first request head must
    arrive within it; after each response, the next request head must arrive within it again
    (this is also the keep-alive idle time). ``body_timeout``: from the end of the head, the
    whole body. ``max_connections``: open connections in all; when they are all taken, the
    connection that has waited longest for its request head is dropped for a new one.
    ``max_per_address``: open connections per client address (IPv6: per /64); more are
    closed at accept. ``refusal_burst`` / ``refusal_rate``: a token bucket per address
    charged by every 4xx answer; while it is empty the address gets ``429`` with
    ``Retry-After``. ``rate_table_size``: how many addresses the buckets remember (the least
    recently refused are forgotten first), so many addresses cannot grow the table.
    """

    header_timeout: float = 5.0
    body_timeout: float = 10.0
    max_connections: int = 4096
    max_per_address: int = 64
    refusal_burst: int = 20
    refusal_rate: float = 1.0
    rate_table_size: int = 16384


def address_key(host: str | None) -> str:
    """The key a peer's limits are counted under: the IPv4 address, or the IPv6 /64.

    An IPv4-mapped IPv6 address (a dual-stack listener on ``::``) counts as its IPv4 address.
    Anything that is not an IP address (a Unix socket, no peer) counts as itself.
    """
    if not host:
        return "unknown"
    if ":" not in host and host.count(".") == 3 and host.replace(".", "").isdigit():
        return host  # IPv4 as the kernel writes it: the common case, on every accept
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
