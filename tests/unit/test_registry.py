"""One registry suite, run on both backends: the folder and a real MLflow store (SQLite in
tmp_path, no server, no mocks). Roles, history, revisions, semver, refusals, load reports,
and two processes changing roles at once."""

from __future__ import annotations

import multiprocessing
import shutil
from contextlib import suppress
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from stream_infer.errors import ModelArtifactError, ModelNotFoundError, ModelRoleError
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.backend import RegistryBase
from stream_infer.model.manifest import MODEL_FILE
from stream_infer.model.registry import ModelRegistry
from stream_infer.model.roles import Canary, latest_status
from stream_infer.model.session import load_model

# mlflow's SQLAlchemy store uses a loader strategy SQLAlchemy 2.1 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")

DECILES = [round(0.1 * i, 1) for i in range(1, 10)]


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema created once (the migrations take seconds)."""
    pytest.importorskip("mlflow", reason="mlflow is not installed (the mlflow extra)")
    from stream_infer.model.mlflow_registry import MLflowRegistry

    root = tmp_path_factory.mktemp("mlflow-template")
    MLflowRegistry(f"sqlite:///{root / 'mlflow.db'}", root).names()
    return root / "mlflow.db"


def open_backend(spec: tuple[str, str, str]) -> RegistryBase:
    """A registry from a picklable spec (the child processes open their own)."""
    kind, location, local = spec
    if kind == "folder":
        return ModelRegistry(Path(location))
    from stream_infer.model.mlflow_registry import MLflowRegistry

    return MLflowRegistry(location, Path(local))


@pytest.fixture(params=["folder", "mlflow"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, str]:
    if request.param == "folder":
        return ("folder", str(tmp_path / "registry"), "")
    template: Path = request.getfixturevalue("mlflow_template")
    shutil.copy(template, tmp_path / "mlflow.db")
    return ("mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "local"))


@pytest.fixture
def reg(spec: tuple[str, str, str]) -> RegistryBase:
    return open_backend(spec)


def tamper(registry: RegistryBase, name: str, version: int) -> None:
    """Corrupt the stored artifact itself (not a local copy)."""
    if isinstance(registry, ModelRegistry):
        path = registry.root / name / str(version) / MODEL_FILE
    else:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=str(registry), registry_uri=str(registry))
        run_id = client.get_model_version(name, str(version)).run_id
        root = unquote(urlparse(client.get_run(run_id).info.artifact_uri).path)
        path = Path(root) / "model" / MODEL_FILE
    path.write_bytes(path.read_bytes() + b"\0")


def test_first_version_is_champion_later_ones_are_candidates(
    reg: RegistryBase, onnx_bytes: bytes
) -> None:
    v1 = reg.register("fraud", onnx_bytes, FEATURE_NAMES, metrics={"auc_roc": 0.8})
    assert reg.serving("fraud").champion == 1 and reg.serving("fraud").revision == 1
    first = reg.history("fraud")[0]
    assert (first.action, first.to_version, first.reason) == ("promote", 1, "first version")
    assert "@" in first.actor and v1.manifest.created_by == first.actor
    reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    assert reg.serving("fraud").champion == 1 and reg.serving("fraud").revision == 1
    assert reg.get("fraud").manifest.version == 1
    reg.register("fraud", onnx_bytes, FEATURE_NAMES, promote=True, actor="ci", reason="better")
    served = reg.serving("fraud")
    assert (served.champion, served.revision) == (3, 2)
    assert reg.roles("fraud").previous_champions == (1,)
    assert reg.versions("fraud") == [1, 2, 3] and reg.names() == ["fraud"]
    assert load_model(reg, "fraud", FEATURE_NAMES).version == 3


def test_manifest_records_provenance_and_semver(reg: RegistryBase, onnx_bytes: bytes) -> None:
    def add(data: str, features: tuple[str, ...] = FEATURE_NAMES, input_name: str = "input") -> str:
        version = reg.register(
            "fraud",
            onnx_bytes,
            features,
            input_name=input_name,
            training_data_hash=data,
            hyperparameters={"kind": "logreg", "estimator.C": 1.0},
            code_commit="abc123",
            reference_deciles=DECILES,
            reference_histogram=[10] * 10,
            metrics={"auc_roc": 0.9},
        )
        assert version.manifest.semver is not None
        return version.manifest.semver

    assert [add("d1"), add("d1"), add("d2"), add("d2", FEATURE_NAMES[:14])] == [
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
    ]
    assert add("d2", FEATURE_NAMES[:14], input_name="x") == "3.0.0"
    m = reg.manifest("fraud", 2)
    assert m.reference_deciles == tuple(DECILES) and m.reference_histogram == (10,) * 10
    assert m.hyperparameters == {"kind": "logreg", "estimator.C": 1.0}
    assert (m.code_commit, m.training_data_hash, m.metrics) == ("abc123", "d1", {"auc_roc": 0.9})
    assert m.feature_names == FEATURE_NAMES
    got = reg.get("fraud", 2)
    assert reg.verify(got) == onnx_bytes and got.source
    assert (got.run_id is None) == isinstance(reg, ModelRegistry)


def test_roles_history_and_revision(reg: RegistryBase, onnx_bytes: bytes) -> None:
    for _ in range(3):
        reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    reg.canary("fraud", 2, 10, actor="alice", reason="try v2")
    served = reg.serving("fraud")
    assert served.challenger == Canary(version=2, percent=10) and served.revision == 2
    reg.shadow("fraud", 3, reason="watch v3")
    assert reg.serving("fraud").shadow == 3
    reg.canary("fraud", 3, 5)  # v3 moves from shadow to challenger
    served = reg.serving("fraud")
    assert served.shadow is None and served.challenger == Canary(version=3, percent=5)
    reg.promote("fraud", 3, reason="canary healthy")
    served = reg.serving("fraud")
    assert (served.champion, served.challenger, served.revision) == (3, None, 5)
    reg.record_status("fraud", 3, "ready", reporter="w1")
    assert reg.serving("fraud").revision == 5  # a load report is not a role change
    history = reg.history("fraud")
    assert [e.revision for e in history] == [1, 2, 3, 4, 5]
    assert [e.action for e in history] == ["promote", "canary", "shadow", "canary", "promote"]
    canary = history[1]
    assert (canary.role, canary.from_version, canary.to_version, canary.percent) == (
        "challenger",
        None,
        2,
        10,
    )
    assert (canary.actor, canary.reason) == ("alice", "try v2")
    assert history[3].from_version == 2 and history[3].cleared == ("shadow",)
    assert history[4].cleared == ("challenger",) and history[4].from_version == 1
    reg.shadow("fraud", 2)
    event = reg.clear("fraud", "shadow", reason="done")
    assert (event.from_version, event.to_version, event.revision) == (2, None, 7)
    assert reg.serving("fraud").shadow is None


def test_rollback_walks_back_then_refuses(reg: RegistryBase, onnx_bytes: bytes) -> None:
    for _ in range(3):
        reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    reg.promote("fraud", 2)
    reg.promote("fraud", 3)
    event = reg.rollback("fraud", reason="auc dropped")
    assert (event.action, event.from_version, event.to_version) == ("rollback", 3, 2)
    assert reg.rollback("fraud").to_version == 1
    with pytest.raises(ModelRoleError, match="no previous champion"):
        reg.rollback("fraud")
    assert reg.serving("fraud").champion == 1 and len(reg.history("fraud")) == 5


def test_refusals_change_nothing(reg: RegistryBase, onnx_bytes: bytes) -> None:
    reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    before = reg.roles("fraud")
    for change in (
        lambda: reg.promote("fraud", 9),
        lambda: reg.canary("fraud", 9, 5),
        lambda: reg.shadow("fraud", 9),
    ):
        with pytest.raises(ModelNotFoundError, match="not registered"):
            change()
    for change, message in (
        (lambda: reg.canary("fraud", 2, 101), "0-100"),
        (lambda: reg.canary("fraud", 2, -1), "0-100"),
        (lambda: reg.clear("fraud", "champion"), "cannot be cleared"),
        (lambda: reg.clear("fraud", "shadow"), "no shadow"),
        (lambda: reg.promote("fraud", 1), "already the champion"),
        (lambda: reg.canary("fraud", 1, 5), "champion"),
        (lambda: reg.rollback("fraud"), "no previous champion"),
    ):
        with pytest.raises(ModelRoleError, match=message):
            change()
    assert reg.roles("fraud") == before and len(reg.history("fraud")) == 1
    with pytest.raises(ModelNotFoundError):
        reg.serving("nope")
    with pytest.raises(ModelNotFoundError, match="valid model name"):
        reg.roles("../etc")


def test_tampered_artifact_gets_no_role_and_does_not_load(
    reg: RegistryBase, onnx_bytes: bytes
) -> None:
    reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    tamper(reg, "fraud", 2)
    for change in (
        lambda: reg.promote("fraud", 2),
        lambda: reg.canary("fraud", 2, 10),
        lambda: reg.shadow("fraud", 2),
    ):
        with pytest.raises(ModelArtifactError, match="sha256"):
            change()
    with pytest.raises(ModelArtifactError, match="sha256"):
        load_model(reg, "fraud", FEATURE_NAMES, version=2)
    assert reg.roles("fraud").revision == 1
    assert load_model(reg, "fraud", FEATURE_NAMES).version == 1


def test_load_reports_per_reporter(reg: RegistryBase, onnx_bytes: bytes) -> None:
    reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    reg.record_status("fraud", 1, "ready", reporter="worker-a")
    reg.record_status("fraud", 1, "failed", "CUDA out of memory", reporter="worker-b")
    reg.record_status("fraud", 1, "ready", reporter="worker-a")
    statuses = reg.statuses("fraud", 1)
    assert sorted(statuses) == ["worker-a", "worker-b"]
    assert (statuses["worker-b"].state, statuses["worker-b"].reason) == (
        "failed",
        "CUDA out of memory",
    )
    latest = latest_status(statuses)
    assert latest is not None and latest.reporter == "worker-a"
    with pytest.raises(ModelNotFoundError):
        reg.record_status("fraud", 7, "ready")


def _flip(spec: tuple[str, str, str], rounds: int, actor: str, start: Any) -> None:
    """Promote v2 and v3 in turn; refusals (already champion) are part of the race."""
    registry = open_backend(spec)
    registry.roles("fraud")  # connect before the race starts
    start.wait(timeout=120)
    for i in range(rounds):
        with suppress(ModelRoleError):
            registry.promote("fraud", 2 + i % 2, actor=actor, reason=f"round {i}")


def test_two_processes_promoting_keep_one_consistent_history(
    reg: RegistryBase, spec: tuple[str, str, str], onnx_bytes: bytes
) -> None:
    for _ in range(3):
        reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    rounds = 40 if spec[0] == "folder" else 4
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    workers: list[Any] = [
        ctx.Process(target=_flip, args=(spec, rounds, f"p{n}", start)) for n in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
    assert [w.exitcode for w in workers] == [0, 0]
    history = reg.history("fraud")
    state = reg.roles("fraud")
    assert [e.revision for e in history] == list(range(1, state.revision + 1))
    assert {e.actor for e in history[1:]} <= {"p0", "p1"} and len(history) > 1
    # Each promotion starts from the champion the one before it left: no lost update.
    for before, after in pairwise(history):
        assert after.from_version == before.to_version
    assert state.champion == history[-1].to_version
    assert list(state.previous_champions) == [e.from_version for e in history[1:]]


def test_mlflow_roles_are_aliases(mlflow_template: Path, tmp_path: Path, onnx_bytes: bytes) -> None:
    """``models:/fraud@champion`` and ``@challenger`` resolve as MLflow users expect."""
    from mlflow import MlflowClient

    from stream_infer.config import ModelSettings
    from stream_infer.model.mlflow_registry import MLflowRegistry
    from stream_infer.model.registry import open_registry

    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = ModelSettings(
        registry_backend="mlflow", mlflow_tracking_uri=uri, registry_dir=tmp_path / "local"
    )
    reg = open_registry(settings)
    assert isinstance(reg, MLflowRegistry) and reg.names() == []
    for _ in range(3):
        reg.register("fraud", onnx_bytes, FEATURE_NAMES)
    reg.canary("fraud", 2, 20)
    reg.shadow("fraud", 3)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def alias(role: str) -> int:
        return int(client.get_model_version_by_alias("fraud", role).version)

    assert (alias("champion"), alias("challenger"), alias("shadow")) == (1, 2, 3)
    reg.promote("fraud", 2)
    reg.clear("fraud", "shadow")
    assert alias("champion") == 2
    assert set(client.get_registered_model("fraud").aliases) == {"champion"}
    version = client.get_model_version("fraud", "2")
    assert version.tags["semver"] == "1.0.1" and version.source.startswith("runs:/")
