"""The sidecar's per-transaction routing agrees with the pipeline's batch routing, and the
repository API's bodies parse as the protocol says (empty = defaults, errors name the field)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from stream_infer.model.routed import score
from stream_infer.model.routing import routes_to_challenger
from stream_infer.model.serving import Served, ServingModels
from stream_infer.model.session import LoadedModel
from stream_infer.sidecar.models import route_of, routes_of
from stream_infer.sidecar.repository import LoadRequest, UnloadRequest
from stream_infer.sidecar.repository_api import BadBodyError, parse_body


class ConstantSession:
    """Scores every row with one constant (the version's fingerprint)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows = len(next(iter(feeds.values())))
        return [np.column_stack([1 - np.full(rows, self.value), np.full(rows, self.value)])]


def served(version: int) -> Served:
    model = LoadedModel(
        "fraud", version, ("a", "b"), "CPU", ConstantSession(version / 10), "input", "p"
    )
    return Served(model, f"1.{version}.0", None)


@pytest.mark.parametrize("percent", [0, 1, 20, 50, 100])
def test_one_transaction_routes_as_its_batch_does(percent: int) -> None:
    serving = ServingModels(3, served(1), served(2), percent, served(3))
    ids = [f"customer-{i}" for i in range(400)]
    routed = score(serving, np.zeros((len(ids), 2)), ids)
    routes = routes_of(routed)
    for cid, route, value in zip(ids, routes, routed.scores.tolist(), strict=True):
        member, role = route_of(serving, cid)
        assert (route.version, route.semver, route.role) == (member.version, member.semver, role)
        assert role == ("challenger" if routes_to_challenger(cid, percent) else "champion")
        assert value == pytest.approx(member.version / 10)  # the version that scored it


def test_without_a_challenger_the_champion_serves_everyone() -> None:
    serving = ServingModels(1, served(4))
    routed = score(serving, np.zeros((3, 2)), ["a", "b", "c"])
    assert {(r.version, r.role) for r in routes_of(routed)} == {(4, "champion")}
    assert route_of(serving, "a") == (serving.champion, "champion")


def test_repository_bodies() -> None:
    assert parse_body(b"", LoadRequest) == LoadRequest()
    assert parse_body(b"{}", LoadRequest).parameters.role == "champion"
    load = parse_body(
        b'{"parameters": {"version": 2, "role": "challenger", "percent": 5}}', LoadRequest
    )
    assert (load.parameters.version, load.parameters.percent) == (2, 5)
    unload = parse_body(b'{"parameters": {"unload_dependents": false}}', UnloadRequest)
    assert unload.parameters.role is None  # what tritonclient sends
    for raw, word in [
        (b"{nope", "JSON"),
        (b"[1]", "object"),
        (b'{"parameters": {"percent": 101}}', "percent"),
        (b'{"parameters": {"config": "{}"}}', "config"),  # Triton's config override: unsupported
        (b'{"parameters": {"role": "boss"}}', "role"),
    ]:
        with pytest.raises(BadBodyError, match=word):
            parse_body(raw, LoadRequest)
