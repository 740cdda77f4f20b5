"""``stream-infer model register MODEL.onnx``: bring your own model (see model/intake.py).

The repository's feature service says what the model must take; anything refused (inputs that
do not fit, no obvious score output, a decision score whose meaning is not said, a semver not
above the latest) exits non-zero with one line naming the difference, and registers nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stream_infer.cli_model import _echo_json, _refusals, _registry, _settings, change_options
from stream_infer.model.control import announce
from stream_infer.model.manifest import SEMVER_PATTERN


def _semver(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    import re

    if value is not None and re.match(SEMVER_PATTERN, value) is None:
        raise click.BadParameter(f"{value!r} is not X.Y.Z")
    return value


@click.command("register")
@click.argument("model_path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--name", required=True, help="the model's name in the registry")
@click.option("--feature-service", "service", required=True, help="the service it scores")
@click.option(
    "--repo",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="the Feast repository (default: features.repo_dir)",
)
@click.option("--output", default=None, help="the score output (default: the obvious one)")
@click.option(
    "--score-kind",
    type=click.Choice(["probability", "decision"]),
    default=None,
    help="default: probability for a classifier's probabilities, else decision",
)
@click.option(
    "--positive",
    type=click.Choice(["high", "low"]),
    default=None,
    help="which end of the score is positive (default high for a probability)",
)
@click.option(
    "--threshold", type=float, default=None, help="default for a probability: model.threshold"
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="a training set parquet (`stream-infer features training-set`) for drift deciles",
)
@click.option("--semver", default=None, callback=_semver, help="default: from the last version")
@click.option("--description", default="", help="shown by `model list`")
@change_options
@click.pass_context
def register(
    ctx: click.Context,
    model_path: Path,
    name: str,
    service: str,
    repo: Path | None,
    output: str | None,
    score_kind: Any,
    positive: Any,
    threshold: float | None,
    reference: Path | None,
    semver: str | None,
    description: str,
    reason: str,
    actor: str | None,
    as_json: bool,
) -> None:
    """Check MODEL_PATH (ONNX) against a feature service and register it as a candidate (the
    champion only as the model's first version)."""
    import pandas as pd

    from stream_infer.model.intake import Provenance, ScoreMeaning, reference_rows, register_onnx
    from stream_infer.streamdef.feast_reader import load_definitions

    settings = _settings(ctx)
    with _refusals():
        defs = load_definitions(repo or settings.features.repo_dir, service)
        rows = None
        if reference is not None:
            rows = reference_rows(pd.read_parquet(reference), defs.inputs)
        registry = _registry(ctx)
        entry = register_onnx(
            registry,
            name,
            model_path.read_bytes(),
            defs,
            meaning=ScoreMeaning(output, score_kind, positive, threshold),
            reference=rows,
            semver=semver,
            provenance=Provenance(description=description),
            actor=actor,
            reason=reason,
        )
        state = registry.roles(name)
    m = entry.manifest
    champion = state.champion == m.version
    if champion:
        announce(settings, name, state.revision)
    if as_json:
        _echo_json({"manifest": m.model_dump(mode="json"), "roles": state.roles_of(m.version)})
        return
    role = "champion (first version)" if champion else f"candidate (champion v{state.champion})"
    threshold_text = "model.threshold" if m.threshold is None else f"{m.threshold:g}"
    click.echo(
        f"registered {m.name} v{m.version} ({m.semver}) as {role}: {m.input_dtype} input "
        f"{m.input_name}[?, {len(m.feature_names)}] of {m.feature_service}, score {m.output_name}"
        f" ({m.score_kind}, {m.positive} is positive, threshold {threshold_text}), "
        f"sha256={m.sha256[:12]}, reference deciles {'yes' if m.reference_deciles else 'none'}"
    )
