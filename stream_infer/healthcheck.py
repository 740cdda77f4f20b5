"""``python -m stream_infer.healthcheck URL [--gauge NAME]``: a container probe.

Exits 0 when ``URL`` answers 200 and, with ``--gauge``, some sample of the gauge ``NAME`` on
that page is 1: the worker's readiness (``stream_infer_ready``, 1 once the worker holds its
partition assignment, its model is warm and its store answers) lives on its /metrics.
Otherwise exits 1 and says why on stderr. For Docker's HEALTHCHECK and Kubernetes exec probes:
it imports only the standard library and prometheus_client, so a probe costs a fraction of a
second.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def check(url: str, gauge: str | None, timeout_s: float) -> str | None:
    """None when healthy, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = resp.read().decode()
    except (urllib.error.URLError, OSError) as exc:  # HTTPError (non-2xx) included
        return f"{url}: {exc}"
    if gauge is None:
        return None
    values = [
        sample.value
        for family in text_string_to_metric_families(body)
        if family.name == gauge
        for sample in family.samples
    ]
    if not values:
        return f"{url}: no {gauge} sample"
    if 1.0 not in values:
        return f"{url}: {gauge} is {values}, not 1"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream_infer.healthcheck")
    parser.add_argument("url", help="e.g. http://127.0.0.1:9108/metrics")
    parser.add_argument("--gauge", default=None, help="require a sample of this gauge to be 1")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds")
    args = parser.parse_args(argv)
    problem = check(args.url, args.gauge, args.timeout)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
