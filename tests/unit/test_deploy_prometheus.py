"""Prometheus configuration: the alert rules parse and pass their unit tests (promtool), every
alert is tested and documented, and the scrape config reaches every process of the stack."""

from __future__ import annotations

import yaml

from tests.deploy_checks import ALERTS, DEPLOY, REPO, alert_queries, promtool

PROM = DEPLOY / "prometheus"


def test_alert_rules_parse() -> None:
    out = promtool("check", "rules", str(ALERTS))
    assert f"SUCCESS: {len(alert_queries())} rules found" in out


def test_alert_rules_pass_their_tests() -> None:
    out = promtool("test", "rules", "alerts_test.yml", cwd=PROM)
    assert "SUCCESS" in out


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    cases = [c for t in tests for c in t["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    # A firing case whose input also holds series that must not fire counts as quiet too:
    # exp_alerts lists every alert of that name, so an extra one fails the case.
    mixed = {
        c["alertname"]
        for t in tests
        for c in t["alert_rule_test"]
        if c["exp_alerts"] and len(t["input_series"]) > len(c["exp_alerts"])
    }
    alerts = {name for name, _ in alert_queries()}
    assert fired == alerts, alerts ^ fired
    assert alerts <= quiet | mixed, alerts - quiet - mixed


def test_alerts_say_what_to_do() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_scrape_config_is_valid_and_reaches_every_process() -> None:
    out = promtool("check", "config", "prometheus.yml", cwd=PROM)
    assert "SUCCESS: 1 rule files found" in out
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    # job -> (compose service, port its process listens on)
    want = {
        "stream-infer-worker": ("worker", 9108),
        "stream-infer-labels": ("labels", 9109),
        "stream-infer-sidecar": ("sidecar", 8080),
        "stream-infer-lag": ("lag-exporter", 9110),
    }
    for job, (service, port) in want.items():
        assert service in compose, service
        scrape = jobs[job]
        targets = [t for sc in scrape.get("static_configs", []) for t in sc["targets"]]
        targets += [
            f"{n}:{sd['port']}" for sd in scrape.get("dns_sd_configs", []) for n in sd["names"]
        ]
        assert targets == [f"{service}:{port}"], (job, targets)
    mounts = compose["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts
    assert config["rule_files"] == ["alerts.yml"]
