"""Prometheus text exposition (format 0.0.4), written by hand: counters and one histogram.

``donjon_steward_issued_total{path,kind}``, ``donjon_steward_refused_total{check}``
(refusals with an entry in the decision log), ``donjon_steward_rejected_total{reason}``
(requests refused or failed without one: malformed or unauthenticated requests,
server faults the log could not record), ``donjon_steward_request_seconds``
(histogram, by endpoint). Every ``POST /attest`` and ``POST /`` is counted in
exactly one of the three counters. Label values are check names chosen by the
code, never text from a request. Thread-safe; values live in the process (each
replica exposes its own). Then the lines of any collector added (the connection
guard's and the rate limit's).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable

__all__ = ["BUCKETS", "Metrics"]

#: Latency buckets in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._issued: dict[tuple[str, str], int] = defaultdict(int)
        self._refused: dict[str, int] = defaultdict(int)
        self._rejected: dict[str, int] = defaultdict(int)
        self._hist: dict[str, list[int]] = {}
        self._sum: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)
        self._reloads: dict[str, int] = defaultdict(int)
        self._collectors: list[Callable[[], list[str]]] = []

    def add_collector(self, collect: Callable[[], list[str]]) -> None:
        """Append ``collect()``'s exposition lines to :meth:`render` (the server's connection metrics)."""
        self._collectors.append(collect)

    def issued(self, path: str, kind: str) -> None:
        with self._lock:
            self._issued[(path, kind)] += 1

    def refused(self, check: str) -> None:
        with self._lock:
            self._refused[check] += 1

    def rejected(self, reason: str) -> None:
        with self._lock:
            self._rejected[reason] += 1

    def policy_reload(self, result: str) -> None:
        with self._lock:
            self._reloads[result] += 1

    def observe(self, endpoint: str, seconds: float) -> None:
        with self._lock:
            buckets = self._hist.setdefault(endpoint, [0] * (len(BUCKETS) + 1))
            buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
            self._sum[endpoint] += seconds
            self._count[endpoint] += 1

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            lines += [
                "# HELP donjon_steward_issued_total Certificates issued.",
                "# TYPE donjon_steward_issued_total counter",
            ]
            for (path, kind), n in sorted(self._issued.items()):
                lines.append(
                    f'donjon_steward_issued_total{{path="{_label(path)}",kind="{_label(kind)}"}} {n}'
                )
            lines += [
                "# HELP donjon_steward_refused_total Requests refused and logged,"
                " by the check that refused them.",
                "# TYPE donjon_steward_refused_total counter",
            ]
            for check, n in sorted(self._refused.items()):
                lines.append(f'donjon_steward_refused_total{{check="{_label(check)}"}} {n}')
            lines += [
                "# HELP donjon_steward_rejected_total Requests refused without a log entry"
                " (malformed, unauthenticated, server faults), by reason.",
                "# TYPE donjon_steward_rejected_total counter",
            ]
            for reason, n in sorted(self._rejected.items()):
                lines.append(f'donjon_steward_rejected_total{{reason="{_label(reason)}"}} {n}')
            lines += [
                "# HELP donjon_steward_policy_reloads_total Policy reloads (SIGHUP), by result.",
                "# TYPE donjon_steward_policy_reloads_total counter",
            ]
            for result, n in sorted(self._reloads.items()):
                lines.append(f'donjon_steward_policy_reloads_total{{result="{_label(result)}"}} {n}')
            lines += [
                "# HELP donjon_steward_request_seconds Time to answer a request, by endpoint.",
                "# TYPE donjon_steward_request_seconds histogram",
            ]
            for endpoint, buckets in sorted(self._hist.items()):
                ep = _label(endpoint)
                total = 0
                for bound, n in zip(BUCKETS, buckets, strict=False):
                    total += n
                    lines.append(
                        f'donjon_steward_request_seconds_bucket{{endpoint="{ep}",le="{bound}"}} {total}'
                    )
                total += buckets[-1]
                lines.append(f'donjon_steward_request_seconds_bucket{{endpoint="{ep}",le="+Inf"}} {total}')
                lines.append(
                    f'donjon_steward_request_seconds_sum{{endpoint="{ep}"}} {self._sum[endpoint]:.6f}'
                )
                lines.append(
                    f'donjon_steward_request_seconds_count{{endpoint="{ep}"}} {self._count[endpoint]}'
                )
        for collect in self._collectors:
            lines += collect()
        return "\n".join(lines) + "\n"
