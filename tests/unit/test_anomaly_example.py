"""The anomaly example: loadgen's device telemetry and its Feast repository.

- the generator is deterministic by seed, and each injected fault is what the ``fault`` column
  says over its interval (a spike offsets a reading, a stuck sensor repeats one value);
- the repository loads (readings keyed by device, 5-minute and 1-hour windows, the z-score and
  flat-sensor view, the 6-input service) and ``feast apply`` accepts it offline;
- the on-demand view's z-score is 0 where the hour's standard deviation is 0 or NaN;
- its training set, through the stream's kernel, equals the row-by-row reference.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from loadgen.cli import cli as loadgen_cli
from loadgen.telemetry import (
    COLUMNS,
    FAULT_KINDS,
    SENSORS,
    TelemetryConfig,
    fault_counts,
    generate_telemetry,
)
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.spec import StreamDefinitions
from stream_infer.streamdef.training import training_frame

REPO = Path(__file__).resolve().parents[2] / "examples" / "anomaly" / "feature_repo"
SMALL = TelemetryConfig(devices=4, days=1, seed=3)


@pytest.fixture(scope="module")
def defs() -> StreamDefinitions:
    return load_definitions(REPO)


@pytest.fixture(scope="module")
def readings() -> pd.DataFrame:
    return generate_telemetry(SMALL)


def test_telemetry_is_deterministic_by_seed(readings: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(generate_telemetry(SMALL), readings)
    other = generate_telemetry(TelemetryConfig(devices=4, days=1, seed=4))
    assert not other[list(SENSORS)].equals(readings[list(SENSORS)].iloc[: len(other)])


def test_telemetry_columns_order_and_ids(readings: pd.DataFrame) -> None:
    assert tuple(readings.columns) == COLUMNS
    assert readings["reading_id"].tolist() == list(range(len(readings)))
    assert readings["reading_time"].is_monotonic_increasing
    assert readings["reading_time"].iloc[0] == pd.Timestamp(SMALL.start_date)
    assert set(readings["device_id"]) == {f"dev-{i:04d}" for i in range(SMALL.devices)}
    assert set(readings["fault"]) <= set(FAULT_KINDS)
    per_device = readings.groupby("device_id")["reading_time"]
    gaps = per_device.diff().dt.total_seconds().dropna()
    assert gaps.min() >= 1
    assert gaps.max() <= SMALL.max_interval_s * 1.2
    spacing = (per_device.max() - per_device.min()).dt.total_seconds() / (per_device.count() - 1)
    assert spacing.between(SMALL.min_interval_s, SMALL.max_interval_s).all()


def test_every_fault_kind_is_injected_and_counted() -> None:
    frame = generate_telemetry(TelemetryConfig(devices=6, days=2, seed=0))
    counts = fault_counts(frame)
    assert sum(counts.values()) == len(frame)
    assert all(counts[kind] > 0 for kind in FAULT_KINDS)
    assert counts["none"] / len(frame) > 0.9


def test_a_stuck_interval_repeats_one_value_and_a_spike_stands_out() -> None:
    frame = generate_telemetry(TelemetryConfig(devices=6, days=2, seed=0))
    for _, device in frame.groupby("device_id"):
        stuck = device["fault"].eq("stuck")
        runs = (stuck != stuck.shift()).cumsum()[stuck]
        for _, run in device[stuck].groupby(runs):
            assert any(run[s].nunique() == 1 for s in SENSORS)
        normal = device["fault"].eq("none").to_numpy()
        for i in np.flatnonzero(device["fault"].eq("spike").to_numpy()):
            before = np.flatnonzero(normal[:i])[-2:]
            after = i + 1 + np.flatnonzero(normal[i + 1 :])[:2]
            near = device.iloc[np.concatenate([before, after])]
            calm = device.iloc[max(i - 30, 0) : i + 30][normal[max(i - 30, 0) : i + 30]]
            # 8 to 15 noise sd on one sensor: beyond 5 sd of its nearest normal neighbours.
            assert any(
                abs(device[s].iloc[i] - near[s].mean()) > 5 * calm[s].diff().std() / math.sqrt(2)
                for s in SENSORS
            ), device.iloc[i]


def test_loadgen_generate_example_anomaly_writes_the_parquet(tmp_path: Path) -> None:
    out = tmp_path / "readings.parquet"
    args = ["generate", "--example", "anomaly", "--devices", "3", "--days", "1", "--seed", "5"]
    result = CliRunner().invoke(loadgen_cli, [*args, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "readings of 3 devices over 1 days" in result.output
    written = pd.read_parquet(out)
    want = generate_telemetry(
        TelemetryConfig(devices=3, days=1, seed=5, start_date=date(2026, 1, 5))
    )
    pd.testing.assert_frame_equal(written, want)


def test_the_repository_reads_readings_by_device(defs: StreamDefinitions) -> None:
    src = defs.source
    assert (src.name, src.topic, src.format) == ("readings", "readings", "json")
    assert (src.key_field, src.event_id_field, src.timestamp_field) == (
        "device_id",
        "reading_id",
        "reading_time",
    )
    assert {f.name for f in src.fields} == {"reading_id", "reading_time", "device_id", *SENSORS}
    assert defs.label_source is None and defs.daily_views == ()
    (view,) = defs.stream_views
    got = {(a.feature, a.column, a.function, a.window_s) for a in view.aggregations}
    want = {
        (f"{s}_{f}_{label}", s, f, seconds)
        for s in SENSORS
        for label, seconds in (("5m", 300), ("1h", 3600))
        for f in ("mean", "stddev", "min", "max", "count")
    }
    assert got == want
    assert defs.service == "anomaly_model_v1"
    assert defs.inputs == (
        *(f"{s}_zscore" for s in SENSORS),
        *(f"{s}_flat_5m" for s in SENSORS),
    )


def test_zscore_is_0_without_spread_and_flat_needs_two_equal_readings(
    defs: StreamDefinitions,
) -> None:
    (view,) = defs.on_demand
    n = 5
    inputs: dict[str, list[float]] = {}
    for s in SENSORS:
        inputs[s] = [10.0, 10.0, 13.0, 7.0, 5.0]
        inputs[f"{s}_mean_1h"] = [10.0, 10.0, 10.0, 10.0, 5.0]
        inputs[f"{s}_stddev_1h"] = [float("nan"), 0.0, 1.5, 2.0, 1.0]
        inputs[f"{s}_min_5m"] = [10.0, 10.0, 9.0, 7.0, 5.0]
        inputs[f"{s}_max_5m"] = [10.0, 10.0, 13.0, 10.0, 5.0]
        inputs[f"{s}_count_5m"] = [1.0, 3.0, 4.0, 2.0, 2.0]
    got = view.function(inputs)
    for s in SENSORS:
        assert got[f"{s}_reading"] == inputs[s]
        assert got[f"{s}_zscore"] == [0.0, 0.0, 2.0, -1.5, 0.0]
        assert got[f"{s}_flat_5m"] == [0.0, 1.0, 0.0, 0.0, 1.0]
        assert all(len(v) == n for v in got.values())


def test_its_training_set_is_the_reference(defs: StreamDefinitions, readings: pd.DataFrame) -> None:
    head = readings[
        readings["reading_time"] < readings["reading_time"].iloc[0] + pd.Timedelta("3h")
    ]
    fast = training_frame(defs, head)
    slow = training_frame(defs, head, reference=True)
    assert fast["reading_id"].tolist() == head["reading_id"].astype(str).tolist()
    for name in defs.inputs:
        if name.endswith("flat_5m"):
            assert fast[name].tolist() == slow[name].tolist(), name
        else:
            np.testing.assert_allclose(fast[name], slow[name], rtol=1e-9, atol=1e-9, err_msg=name)
    assert (fast["temperature_zscore"] != 0).any()


def test_feast_apply_accepts_it_offline(tmp_path: Path) -> None:
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    feast = Path(sys.executable).parent / "feast"
    done = subprocess.run(
        [str(feast), "apply"], cwd=repo, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (
        "Created stream feature view device_windows",
        "Created on demand feature view reading_scores",
        "Created feature service anomaly_model_v1",
    ):
        assert line in done.stdout
