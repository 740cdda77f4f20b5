"""The Grafana dashboard and its provisioning: the checked-in JSON is the generator's output,
is well formed, has the on-call panels, and every query parses (promtool). That every query
names only exposed metrics is checked against the real processes in
tests/integration/test_metrics_endpoints.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml

from tests.deploy_checks import (
    DASHBOARD,
    DEPLOY,
    REPO,
    dashboard,
    dashboard_queries,
    metric_names,
    promtool,
)

REQUIRED_PANELS = {
    "Lag per partition (offsets)",
    "Lag per partition (seconds)",
    "Partition status",
    "Events in / out per second",
    "Dead letters per second",
    "End-to-end latency p50 / p99",
    "Batch size",
    "Inference and feature time per batch",
    "Model version and role per process",
    "Canary share",
    "PSI per version",
    "Label watermark delay",
    "Sidecar requests per second",
    "Sidecar latency p50 / p99",
}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "build_dashboard", DEPLOY / "grafana" / "build_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_json_is_the_generators_output() -> None:
    assert DASHBOARD.read_text() == _generator().render(), (
        "deploy/grafana/dashboards/stream-infer.json is stale: "
        "run .venv/bin/python deploy/grafana/build_dashboard.py"
    )


def test_dashboard_is_well_formed() -> None:
    d = dashboard()
    assert d["uid"] == "stream-infer" and d["title"]
    assert isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    for panel in d["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']!r} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for t in panel["targets"]:
            assert t["expr"].strip() and t["datasource"] == panel["datasource"]


def test_dashboard_has_the_on_call_panels() -> None:
    titles = {p["title"] for p in dashboard()["panels"]}
    assert titles >= REQUIRED_PANELS, REQUIRED_PANELS - titles


def test_every_query_parses(tmp_path: Path) -> None:
    # promtool parses PromQL only inside rule files: one recording rule per query.
    queries = dashboard_queries()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query:{i}", "expr": q}
                    for i, (_, q) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    out = promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(queries)} rules found" in out
    assert all(metric_names(q) for _, q in queries), "a query reads no metric"


def test_provisioning_serves_the_dashboard_from_prometheus() -> None:
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    [ds] = source["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/stream-infer.yml").read_text()
    )
    [prov] = provider["providers"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{prov['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_metric_names_reads_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (api, le) (rate(x_bucket{a="b", c=~"$v"}[5m])))'
    ) == {"x_bucket"}
    assert metric_names(
        "sum(rate(a_total[5m])) / clamp_min(sum(rate(b_total[5m])), 1e-9) > 0.01"
    ) == {
        "a_total",
        "b_total",
    }
    assert metric_names("max by (job) (d_seconds) > 9 * 86400") == {"d_seconds"}
    assert metric_names('(sum(rate(y[2m])) or on () vector(0)) == 0 and on () z{t="u"} > 0') == {
        "y",
        "z",
    }
    assert metric_names("p and on (job, version) (q == 1)") == {"p", "q"}
