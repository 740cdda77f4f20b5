"""The sidecar's half of the model lifecycle on a real registry folder and a running server:
a promotion reaches it without a restart, a tampered version is refused while the old champion
keeps serving, a canary routes each customer exactly as the stream does, and Triton's
repository API (guarded by a bearer token) drives the same lifecycle."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_infer.config import Settings
from stream_infer.errors import ModelArtifactError
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.control import announce
from stream_infer.model.export import to_onnx
from stream_infer.model.registry import MODEL_FILE, ModelRegistry
from stream_infer.model.routing import routes_to_challenger
from stream_infer.model.session import load_model

from .conftest import make_test_settings
from .kafka_io import make_transactions, produce, read_topic, setup_topics, worker_thread
from .test_sidecar import predict_body, serving

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PREDICT = "/v1/models/fraud/predict"
DEADLINE_S = 60.0


@pytest.fixture(scope="session")
def onnx_versions() -> tuple[bytes, bytes, bytes]:
    """Three small real models with different coefficients (so different scores)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, len(FEATURE_NAMES))).astype(np.float32)
    targets = (x[:, 0] + x[:, 3] > 1.0, x[:, 1] - x[:, 2] > 0.5, x[:, 4] > 0.0)
    v1, v2, v3 = (
        to_onnx(LogisticRegression(max_iter=1000).fit(x, y.astype(int)), len(FEATURE_NAMES))
        for y in targets
    )
    return v1, v2, v3


@pytest.fixture
def registry(tmp_path: Path, onnx_versions: tuple[bytes, bytes, bytes]) -> ModelRegistry:
    """v1 (the champion, as the first version), v2 and v3 (candidates)."""
    reg = ModelRegistry(tmp_path / "registry")
    for onnx in onnx_versions:
        reg.register("fraud", onnx, FEATURE_NAMES)
    return reg


def lifecycle_settings(
    base: Settings, bootstrap: str, tmp: Path, registry: ModelRegistry, **overrides: Any
) -> Settings:
    model = {
        "registry_dir": str(registry.root),
        "poll_interval_s": 0.1,
        **overrides.pop("model", {}),
    }
    serve = {"repository_token": TOKEN, **overrides.pop("serve", {})}
    return make_test_settings(base, bootstrap, tmp, model=model, serve=serve, **overrides)


@pytest.fixture
def settings(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, registry: ModelRegistry
) -> Settings:
    return lifecycle_settings(base_settings, kafka_bootstrap, tmp_path, registry)


def tamper(registry: ModelRegistry, version: int) -> None:
    """Overwrite a registered version's artifact (its manifest's sha256 no longer matches)."""
    (registry.root / "fraud" / str(version) / MODEL_FILE).write_bytes(b"not the registered model")


def wait_for(check: Callable[[], Any], what: str) -> Any:
    """Poll ``check`` until it returns something truthy; fail after :data:`DEADLINE_S`."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def features_of(body: dict[str, Any]) -> np.ndarray:
    return np.array([[body["features"][n] for n in FEATURE_NAMES]], dtype=np.float32)


def metric(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def index_of(client: httpx.Client) -> dict[str, dict[str, Any]]:
    reply = client.post("/v2/repository/index", headers=AUTH)
    assert reply.status_code == 200, reply.text
    return {e["version"]: e for e in reply.json() if e["name"] == "fraud"}


def test_a_promotion_reaches_the_sidecar_without_a_restart(
    settings: Settings, registry: ModelRegistry
) -> None:
    tx = make_transactions(1)[0]
    body = predict_body(tx, return_features=True)
    v2 = load_model(registry, "fraud", FEATURE_NAMES, version=2)
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        first = client.post(PREDICT, json=body).json()
        assert (first["model_version"], first["model_role"]) == (1, "champion")
        assert first["model_semver"] == registry.manifest("fraud", 1).semver

        registry.promote("fraud", 2, reason="test: promote v2")
        after = wait_for(
            lambda: (r := client.post(PREDICT, json=body).json())["model_version"] == 2 and r,
            "the sidecar to answer from v2",
        )
        assert after["model_role"] == "champion"
        assert after["model_semver"] == registry.manifest("fraud", 2).semver
        score = after["predictions"]["fraud_probability"]
        assert score != pytest.approx(first["predictions"]["fraud_probability"], abs=1e-6)
        assert score == pytest.approx(float(v2.predict(features_of(after))[0]), abs=1e-6)
        zeros = [0.0] * (2 * len(FEATURE_NAMES))
        tensor = {"name": "input", "shape": [2, 15], "datatype": "FP32", "data": zeros}
        oip = client.post("/v2/models/fraud/infer", json={"inputs": [tensor]}).json()
        assert oip["model_version"] == "2" and oip["parameters"]["model_role"] == "champion"

        text = client.get("/metrics").text
        serving_now = {
            (lb["version"], lb["role"])
            for lb, v in metric(text, "stream_infer_model_serving")
            if v == 1
        }
        assert serving_now == {("2", "champion")}
        assert (
            metric(text, "stream_infer_serving_revision")[0][1] == registry.roles("fraud").revision
        )
        statuses = registry.statuses("fraud", 2)
        assert any(r.startswith("sidecar@") and s.state == "ready" for r, s in statuses.items())
        index = index_of(client)
        assert index["2"]["state"] == "READY" and index["2"]["role"] == "champion"
        assert index["1"]["state"] == "UNAVAILABLE" and index["1"]["role"] is None

        registry.rollback("fraud", reason="test: roll back")  # v1 is still warm
        wait_for(
            lambda: client.post(PREDICT, json=body).json()["model_version"] == 1,
            "the rollback to reach the sidecar",
        )
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_a_load_through_one_sidecar_is_announced_to_another_long_before_its_poll(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, registry: ModelRegistry
) -> None:
    # Both poll every 10 minutes: only the model-control announcement can switch the other.
    settings = lifecycle_settings(
        base_settings, kafka_bootstrap, tmp_path, registry, model={"poll_interval_s": 600.0}
    )
    setup_topics(settings)
    body = predict_body(make_transactions(1)[0])
    with (
        serving(settings) as first,
        serving(settings) as second,
        httpx.Client(timeout=30) as client,
    ):
        assert client.post(first + PREDICT, json=body).json()["model_version"] == 1
        assert client.post(second + PREDICT, json=body).json()["model_version"] == 1
        load = {"parameters": {"version": 2, "reason": "test: announce"}}
        reply = client.post(f"{first}/v2/repository/models/fraud/load", headers=AUTH, json=load)
        assert reply.status_code == 200, reply.text
        assert client.post(first + PREDICT, json=body).json()["model_version"] == 2  # at once
        revision = registry.roles("fraud").revision
        records = read_topic(
            settings,
            settings.topics.model_control,
            lambda r: any(orjson.loads(m.value())["revision"] == revision for m in r),
        )
        assert {m.key() for m in records} == {b"fraud"}

        resent = time.monotonic()

        def switched() -> bool:
            nonlocal resent
            # An announcement sent before the other's listener joined is not seen (it reads
            # from the end): say it again, as a second `model promote` would.
            if time.monotonic() - resent > 2.0:
                announce(settings, "fraud", revision)
                resent = time.monotonic()
            return bool(client.post(second + PREDICT, json=body).json()["model_version"] == 2)

        wait_for(switched, "the announcement to reach the other sidecar")


def test_a_tampered_champion_is_refused_and_the_old_one_keeps_serving(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, registry: ModelRegistry
) -> None:
    # The registry checks an artifact when a role is given, so a tampered file reaches a
    # sidecar only by changing after the promotion. A sidecar that would not read the
    # registry by itself in the meantime (hour-long poll) keeps the order deterministic; the
    # repository's reload (a load without parameters) makes it read the registry once, as a
    # poll would.
    settings = lifecycle_settings(
        base_settings, kafka_bootstrap, tmp_path, registry, model={"poll_interval_s": 3600.0}
    )
    tx = make_transactions(1)[0]
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        tamper(registry, 3)
        with pytest.raises(ModelArtifactError, match="sha256"):
            registry.promote("fraud", 3)  # the registry refuses a tampered artifact itself
        registry.promote("fraud", 2, reason="test: promote, then tamper")
        tamper(registry, 2)

        reload = client.post("/v2/repository/models/fraud/load", headers=AUTH)
        assert reload.status_code == 400
        error = reload.json()["error"]
        assert "version 2" in error and "sha256" in error and "still serving v1" in error

        answer = client.post(PREDICT, json=predict_body(tx)).json()
        assert (answer["model_version"], answer["model_role"]) == (1, "champion")
        assert client.get("/v2/health/ready").status_code == 200
        index = index_of(client)
        assert index["1"]["state"] == "READY"
        refused = index["2"]
        assert refused["role"] == "champion" and refused["state"] == "UNAVAILABLE"
        assert refused["status"] == "failed" and "sha256" in refused["reason"]
        mine = [s for r, s in registry.statuses("fraud", 2).items() if r.startswith("sidecar@")]
        assert [s.state for s in mine] == ["failed"]
        failures = metric(client.get("/metrics").text, "stream_infer_model_load_failures_total")
        assert any(lb["version"] == "2" and v >= 1 for lb, v in failures)

        registry.rollback("fraud", reason="test: v2 is broken")
        again = client.post("/v2/repository/models/fraud/load", headers=AUTH)
        assert again.status_code == 200, again.text
        assert [m["version"] for m in again.json()["serving"]] == ["1"]


def test_a_sidecar_whose_champion_is_tampered_is_ready_once_a_good_one_is_promoted(
    settings: Settings, registry: ModelRegistry
) -> None:
    tamper(registry, 1)
    with (
        serving(settings, wait_ready=False) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        not_ready = wait_for(
            lambda: "champion not loaded" in (r := client.get("/v2/health/ready")).text and r,
            "readiness to say why the champion is not loaded",
        )
        assert not_ready.status_code == 503 and "sha256" in not_ready.json()["error"]
        index = index_of(client)  # the index answers while the sidecar is not ready
        assert index["1"]["state"] == "UNAVAILABLE" and "sha256" in index["1"]["reason"]
        assert client.post(PREDICT, json=predict_body(make_transactions(1)[0])).status_code == 503

        registry.promote("fraud", 2, reason="test: replace the broken champion")
        wait_for(lambda: client.get("/v2/health/ready").status_code == 200, "readiness")
        answer = client.post(PREDICT, json=predict_body(make_transactions(1)[0])).json()
        assert answer["model_version"] == 2


def test_a_tampered_challenger_at_start_up_leaves_the_champion_serving_everyone(
    settings: Settings, registry: ModelRegistry
) -> None:
    registry.canary("fraud", 2, 100, reason="test: everyone to v2")
    tamper(registry, 2)
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        for tx in make_transactions(20, customers=20):
            answer = client.post(PREDICT, json=predict_body(tx)).json()
            assert (answer["model_version"], answer["model_role"]) == (1, "champion")
        index = index_of(client)
        assert index["2"]["role"] == "challenger" and index["2"]["state"] == "UNAVAILABLE"
        assert "sha256" in index["2"]["reason"]
        text = client.get("/metrics").text
        assert metric(text, "stream_infer_canary_percent")[0][1] == 0
        failures = metric(text, "stream_infer_model_load_failures_total")
        assert any(lb["version"] == "2" and v >= 1 for lb, v in failures)


def test_a_canary_routes_each_customer_as_the_stream_does(
    settings: Settings, registry: ModelRegistry
) -> None:
    registry.canary("fraud", 2, 20, reason="test: canary at 20%")
    setup_topics(settings)
    events = make_transactions(300, customers=100)
    produce(settings, settings.topics.transactions, events)
    with worker_thread(settings):
        records = read_topic(settings, settings.topics.scores, lambda r: len(r) >= len(events))
    stream = {s["transaction_id"]: s for s in (orjson.loads(m.value()) for m in records)}
    assert len(stream) == len(events)

    others = [
        {**events[0], "transaction_id": f"c-{i}", "customer_id": f"customer-{i}"}
        for i in range(500)
    ]
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:

        def ask(tx: dict[str, Any]) -> dict[str, Any]:
            reply = client.post(PREDICT, json=predict_body(tx))
            assert reply.status_code == 200, reply.text
            return dict(reply.json())

        # Concurrent callers: batches mix the champion's and the challenger's customers.
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, others))
            replays = list(pool.map(ask, events[::3]))
    on_challenger = 0
    for tx, answer in zip(others, answers, strict=True):
        wanted = routes_to_challenger(tx["customer_id"], 20)
        assert answer["model_version"] == (2 if wanted else 1), tx["customer_id"]
        assert answer["model_role"] == ("challenger" if wanted else "champion")
        on_challenger += wanted
    assert 0 < on_challenger < len(others)
    for tx, answer in zip(events[::3], replays, strict=True):
        mine = stream[tx["transaction_id"]]
        assert answer["model_version"] == mine["model_version"], tx["customer_id"]
        assert answer["model_role"] == mine["model_role"]
        assert answer["model_semver"] == mine["model_semver"]
        assert answer["predictions"]["fraud_probability"] == pytest.approx(mine["score"], abs=1e-6)
    assert {a["model_version"] for a in replays} == {1, 2}


def test_the_repository_api_drives_the_lifecycle_behind_its_token(
    settings: Settings, registry: ModelRegistry
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    load = "/v2/repository/models/fraud/load"
    unload = "/v2/repository/models/fraud/unload"
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for path in ("/v2/repository/index", load, unload):
                denied = client.post(path, headers=headers)
                assert denied.status_code == 401 and "token" in denied.json()["error"]
        assert registry.roles("fraud").revision == 1  # nothing changed

        challenger = {"parameters": {"version": 2, "role": "challenger", "percent": 30}}
        reply = client.post(load, headers=AUTH, json=challenger)
        assert reply.status_code == 200, reply.text
        # Applied at once here (no poll wait), and recorded in the registry for everyone.
        semver = registry.manifest("fraud", 2).semver
        assert {"version": "2", "semver": semver, "role": "challenger"} in reply.json()["serving"]
        canary = registry.serving("fraud").challenger
        assert canary is not None and (canary.version, canary.percent) == (2, 30)
        assert "repository API" in registry.history("fraud")[-1].actor
        assert index_of(client)["2"] | {"percent": 30} == index_of(client)["2"]
        metadata = client.get("/v2/models/fraud/versions/2").json()
        assert metadata["versions"] == ["1", "2"]
        rows = np.ones((1, len(FEATURE_NAMES)), dtype=np.float32)
        tensor = {"name": "input", "shape": [1, 15], "datatype": "FP32", "data": rows[0].tolist()}
        direct = client.post("/v2/models/fraud/versions/2/infer", json={"inputs": [tensor]})
        assert direct.json()["model_version"] == "2"
        assert direct.json()["parameters"]["model_role"] == "challenger"
        v2 = load_model(registry, "fraud", FEATURE_NAMES, version=2)
        assert direct.json()["outputs"][0]["data"][1] == pytest.approx(
            float(v2.predict(rows)[0]), abs=1e-6
        )
        absent = client.post("/v2/models/fraud/versions/3/infer", json={"inputs": [tensor]})
        assert absent.status_code == 404

        bad = [
            ({"parameters": {"version": 3, "role": "challenger"}}, "percent"),
            ({"parameters": {"version": 99}}, "99"),
            ({"parameters": {"version": 1, "role": "bogus"}}, "role"),
            ({"parameters": {"version": 1, "percent": 5}}, "percent"),
        ]
        for payload, word in bad:
            refused = client.post(load, headers=AUTH, json=payload)
            assert refused.status_code == 400 and word in refused.json()["error"], refused.text
        junk = client.post(load, headers=AUTH, content=b"{nope")
        assert junk.status_code == 400 and "JSON" in junk.json()["error"]
        tamper(registry, 3)
        refused = client.post(load, headers=AUTH, json={"parameters": {"version": 3}})
        assert refused.status_code == 400 and "sha256" in refused.json()["error"]
        assert registry.roles("fraud").champion == 1
        assert index_of(client)["3"]["status"] == "failed"

        for payload in (
            {"parameters": {"version": 1}},
            {"parameters": {"role": "champion"}},
            {"parameters": {"unload_dependents": False}},
        ):
            kept = client.post(unload, headers=AUTH, json=payload)
            assert kept.status_code == 400 and "champion" in kept.json()["error"], kept.text
        cleared = client.post(unload, headers=AUTH, json={"parameters": {"role": "challenger"}})
        assert cleared.status_code == 200 and cleared.json()["serving"] == [
            {"version": "1", "semver": registry.manifest("fraud", 1).semver, "role": "champion"}
        ]
        assert registry.serving("fraud").challenger is None

        promoted = client.post(load, headers=AUTH, json={"parameters": {"version": 2}})
        assert promoted.status_code == 200, promoted.text
        answer = client.post(PREDICT, json=predict_body(make_transactions(1)[0])).json()
        assert (answer["model_version"], answer["model_role"]) == (2, "champion")

        triton_client = triton.InferenceServerClient(url.removeprefix("http://"))
        index = triton_client.get_model_repository_index(headers=AUTH)
        assert {(e["version"], e["state"]) for e in index} >= {("2", "READY")}
        triton_client.load_model("fraud", headers=AUTH)  # a reload: the registry as it is
        with pytest.raises(InferenceServerException, match="champion"):
            triton_client.unload_model("fraud", headers=AUTH)
        with pytest.raises(InferenceServerException, match="token"):
            triton_client.get_model_repository_index()


def test_without_a_token_the_repository_api_is_off_and_a_pinned_sidecar_never_swaps(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, registry: ModelRegistry
) -> None:
    off = lifecycle_settings(
        base_settings, kafka_bootstrap, tmp_path, registry, serve={"repository_token": None}
    )
    with serving(off) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path in ("/v2/repository/index", "/v2/repository/models/fraud/load"):
            reply = client.post(path, headers=AUTH)
            assert reply.status_code == 403 and "repository_token" in reply.json()["error"]

    pinned = lifecycle_settings(
        base_settings, kafka_bootstrap, tmp_path, registry, model={"version": 1}
    )
    with serving(pinned) as url, httpx.Client(base_url=url, timeout=30) as client:
        reply = client.post(
            "/v2/repository/models/fraud/load", headers=AUTH, json={"parameters": {"version": 2}}
        )
        assert reply.status_code == 400 and "pinned" in reply.json()["error"]
        registry.promote("fraud", 2, reason="test: a pinned sidecar ignores this")
        # A following sidecar would swap within a poll; this one reports v2 as not loaded here.
        index = index_of(client)
        assert index["2"]["role"] == "champion" and "pinned" in index["2"]["reason"]
        answer = client.post(PREDICT, json=predict_body(make_transactions(1)[0])).json()
        assert (answer["model_version"], answer["model_role"]) == (1, "champion")


def test_schemathesis_with_the_token_finds_no_server_errors(settings: Settings) -> None:
    """Fuzzed repository requests (real loads and role changes included) never answer 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings

    with serving(settings) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        failures: list[str] = []
        for operation in schema.get_all_operations():
            op = operation.ok()
            if not op.path.startswith("/v2/repository"):
                continue

            @given(case=op.as_strategy())
            @hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                if case.path_parameters:  # the served model: fuzz what a load would change
                    case.path_parameters = {"name": "fraud"}
                parameters = case.body.get("parameters") if isinstance(case.body, dict) else None
                if isinstance(parameters, dict) and type(parameters.get("version")) is int:
                    parameters["version"] = 1 + parameters["version"] % 3  # registered ones
                response = case.call(base_url=url, headers=AUTH, timeout=30)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} {case.body!r}: "
                        f"{response.status_code} {response.text}"
                    )

            check()
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
    assert not failures, failures
