"""Import time of the ``donjon run oci://`` pull path beside the HTTP stacks it could sit on.

Reproduce:

    .venv/bin/python benchmarks/bench_import_oci.py [--runs 21]

Each row is the median over ``--runs`` fresh interpreters (interleaved) of the wall time of one
``import`` statement, measured inside the child with ``time.perf_counter`` (interpreter start-up
excluded). ``donjon.oci.pull`` is what ``donjon run oci://`` imports to pull; its registry client
is on ``http.client`` + ``ssl`` since it left httpx (benchmarks/RESULTS.md). The last column is
the ratio to ``http.client, ssl``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

MODULES = ("http.client, ssl", "httpx", "donjon.oci.pull", "donjon.oci.pull, httpx")
_CHILD = "import time; t = time.perf_counter(); import {m}; print((time.perf_counter() - t) * 1000)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    # No proxy variable, as on most machines: urllib.request is then not imported either.
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "all_proxy")}
    times: dict[str, list[float]] = {m: [] for m in MODULES}
    for _ in range(args.runs):
        for module in MODULES:
            out = subprocess.run(
                [sys.executable, "-c", _CHILD.format(m=module)],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            times[module].append(float(out.stdout))
    base = statistics.median(times[MODULES[0]])
    print(f"{args.runs} fresh interpreters each, interleaved; medians")
    print("| import | ms | vs http.client, ssl |")
    print("|---|---:|---:|")
    for module in MODULES:
        median = statistics.median(times[module])
        print(f"| `{module}` | {median:.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
