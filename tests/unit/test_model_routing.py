"""Canary routing: sticky across processes, shares close to P, exact ends, monotone in P."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from stream_infer.model.routing import (
    BUCKETS,
    bucket_of,
    buckets_of,
    challenger_mask,
    routes_to_challenger,
)


def _random_ids(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [str(rng.getrandbits(48)) for _ in range(n)]


IDS = _random_ids(100_000)


def test_same_id_same_side_in_a_fresh_process() -> None:
    ids = ["0", "1", "42", "customer-7", "ünïcode-✓", *IDS[:200]]
    script = (
        "import sys, json\n"
        "from stream_infer.model.routing import bucket_of, routes_to_challenger\n"
        "ids = json.loads(sys.stdin.read())\n"
        "print(json.dumps([[bucket_of(i), routes_to_challenger(i, 37.5)] for i in ids]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = json.loads(out.stdout)
    ours = [[bucket_of(i), routes_to_challenger(i, 37.5)] for i in ids]
    assert theirs == ours
    # And the split is not degenerate: both sides are represented.
    assert {side for _, side in ours} == {True, False}


@pytest.mark.parametrize("percent", [1.0, 5.0, 10.0, 25.0, 50.0, 90.0, 99.0])
def test_challenger_share_is_within_one_point(percent: float) -> None:
    share = float(challenger_mask(IDS, percent).mean()) * 100
    assert abs(share - percent) < 1.0


def test_zero_and_hundred_percent_are_exact() -> None:
    assert not challenger_mask(IDS, 0.0).any()
    assert challenger_mask(IDS, 100.0).all()
    assert not any(routes_to_challenger(i, 0.0) for i in IDS[:1000])
    assert all(routes_to_challenger(i, 100.0) for i in IDS[:1000])


def test_raising_percent_only_moves_customers_to_the_challenger() -> None:
    previous = challenger_mask(IDS, 0.0)
    for percent in (0.01, 0.5, 1.0, 5.0, 12.34, 25.0, 50.0, 75.0, 99.99, 100.0):
        current = challenger_mask(IDS, percent)
        assert not (previous & ~current).any(), f"someone left the challenger at {percent}%"
        assert current.sum() >= previous.sum()
        previous = current


def test_bucket_is_pinned_murmur3() -> None:
    # A change of hash would move customers between versions mid-canary on upgrade.
    assert bucket_of("123") == 2662625771 % BUCKETS == 5771


def test_batch_and_scalar_agree() -> None:
    sample = IDS[:2000]
    mask = challenger_mask(sample, 33.0)
    assert mask.dtype == np.bool_ and mask.shape == (len(sample),)
    assert mask.tolist() == [routes_to_challenger(i, 33.0) for i in sample]
    buckets = buckets_of(sample)
    assert buckets.tolist() == [bucket_of(i) for i in sample]
    assert int(buckets.min()) >= 0 and int(buckets.max()) < BUCKETS


def test_empty_batch() -> None:
    assert challenger_mask([], 50.0).shape == (0,)


@pytest.mark.parametrize("percent", [-0.1, 100.1, float("nan")])
def test_percent_out_of_range_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match="percent"):
        challenger_mask(IDS[:3], percent)
    with pytest.raises(ValueError, match="percent"):
        routes_to_challenger("1", percent)
