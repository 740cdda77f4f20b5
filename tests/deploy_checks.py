"""Test helpers for deploy/: metric names in PromQL and in exposition text, the queries of the
dashboard, the alert rules and the ScaledObject, settings given as environment variables, and
the system tools the checks run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stream_infer.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "stream-infer.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SCALED_OBJECT = DEPLOY / "k8s" / "base" / "worker-scaledobject.yaml"

#: What the lag exporter exposes (its contract, stream_infer/lag/exporter.py's docstring).
LAG_EXPORTER_METRICS = frozenset(
    {
        "kafka_consumergroup_group_lag",
        "kafka_consumergroup_group_lag_seconds",
        "kafka_consumergroup_group_max_lag",
        "kafka_consumergroup_group_max_lag_seconds",
        "kafka_consumergroup_group_sum_lag",
        "kafka_consumergroup_group_topic_sum_lag",
        "kafka_partition_latest_offset",
        "stream_infer_consumergroup_status",
        "stream_infer_consumergroup_group_status",
        "stream_infer_lag_sample_success",
        "stream_infer_lag_sample_timestamp_seconds",
    }
)
#: Series Prometheus itself attaches to every target.
PROMETHEUS_SYNTHETIC = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added"}
)

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier that is neither part of a number (1e-9) or a variable nor a function call.
_IDENT = re.compile(r"(?<![\w.:$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring"}
)
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,")
#: Grafana's interval variables, as a promtool-parsable duration.
_GRAFANA_DURATIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, ranges, grouping
    clauses and function names removed)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {m for m in _IDENT.findall(text) if m not in _KEYWORDS}


def exposed_names(text: str) -> set[str]:
    """Every series name an exposition's families can produce (a family with no sample yet
    still names its series: counters ``_total``, histograms ``_bucket``/``_count``/``_sum``)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.update({f"{family.name}_total", f"{family.name}_created"})
        elif family.type in ("histogram", "summary"):
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
            names.add(f"{family.name}_created")
        else:
            names.add(family.name)
    return names


def promql(grafana_expr: str) -> str:
    """A dashboard query as plain PromQL (Grafana's interval variables replaced)."""
    for var, duration in _GRAFANA_DURATIONS.items():
        grafana_expr = grafana_expr.replace(var, duration)
    return grafana_expr


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    out: list[tuple[str, str]] = []
    for panel in dashboard()["panels"]:
        for t in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {t['refId']}", promql(t["expr"])))
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            match = _LABEL_VALUES.match(var["query"]["query"])
            assert match, f"variable {var['name']}: only label_values(metric, label) is checked"
            out.append((f"variable {var['name']}", match.group(1)))
    return out


def alert_queries() -> list[tuple[str, str]]:
    """(alert, PromQL) of every rule in deploy/prometheus/alerts.yml."""
    rules = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def scaled_object_queries() -> list[tuple[str, str]]:
    doc = yaml.safe_load(SCALED_OBJECT.read_text())
    return [
        (f"ScaledObject trigger {i}", t["metadata"]["query"])
        for i, t in enumerate(doc["spec"]["triggers"])
        if t["type"] == "prometheus"
    ]


def tool(name: str, package: str) -> str:
    """The path of a command the checks need (the venv's first: hadolint comes from PyPI).

    Fails the test, naming the package that provides it, when it is not installed.
    """
    venv = Path(sys.executable).parent / name
    found = str(venv) if venv.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `make system-tools` or `{package}` provides it")
    return found


def promtool(*args: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    """Run ``promtool args...``; its output. Fails the test, with the output, on a non-zero
    exit."""
    proc = subprocess.run(
        [tool("promtool", "apt-get install prometheus"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """The settings tree a process given ``env`` would build: every ``STREAM_INFER_*`` key
    must name a real section and field (an unknown section would be silently ignored)."""
    overrides: dict[str, Any] = {}
    for key, value in env.items():
        if key == "KAFKA_BOOTSTRAP":
            overrides["KAFKA_BOOTSTRAP"] = value
            continue
        if not key.startswith("STREAM_INFER_"):
            continue
        section, sep, name = key.removeprefix("STREAM_INFER_").lower().partition("__")
        assert sep and section in Settings.model_fields, f"{key}: no settings section {section!r}"
        overrides.setdefault(section, {})[name] = value
    return load_settings(**overrides)
