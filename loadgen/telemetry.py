"""Device telemetry with injected faults: the anomaly example's events, vectorised with numpy.

Each device reads three sensors (``temperature``, ``vibration``, ``current``) at its own
interval, drawn once in ``[min_interval_s, max_interval_s]`` seconds, each reading jittered by up
to a fifth of the interval (whole seconds, increasing). A sensor's value is its device's base
level plus a daily cycle (a sine over the UTC day with the device's phase) plus Gaussian noise.

Faults are injected on one sensor of one device over a known interval, never overlapping on a
device, and every reading of the device inside the interval is marked with the fault's kind in
the ``fault`` column (``none`` otherwise). The column is for evaluation only: it is not a field
of the event source, so it never reaches the wire or the model.

- ``spike``: 1 to 3 consecutive readings offset by 8 to 15 noise standard deviations (either
  sign);
- ``drift``: 1 to 3 hours over which the sensor's offset grows linearly from 0 to 10 to 20
  noise standard deviations, then the sensor is back to normal (recalibrated);
- ``stuck``: 30 to 90 minutes over which the sensor repeats the value it read when it stuck.

Deterministic: the same :class:`TelemetryConfig` (seed included) gives the same frame. Measured
at the defaults (20 devices, 7 days, seed 0): 498,711 readings, 2.9 % of them inside a
fault, in 0.5 s on this 2-core machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

SECONDS_PER_DAY: Final = 86_400
SENSORS: Final = ("temperature", "vibration", "current")
FAULT_KINDS: Final = ("none", "spike", "drift", "stuck")
#: Output columns, in order (``fault`` last: evaluation only).
COLUMNS: Final = ("reading_id", "reading_time", "device_id", *SENSORS, "fault")

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# Per sensor: (base low, base high, daily amplitude low, high, noise sd low, high).
_PROFILES: Final[dict[str, tuple[float, float, float, float, float, float]]] = {
    "temperature": (40.0, 70.0, 3.0, 8.0, 0.3, 0.8),
    "vibration": (0.5, 2.0, 0.05, 0.3, 0.03, 0.08),
    "current": (5.0, 15.0, 1.0, 3.0, 0.1, 0.3),
}


@dataclass(frozen=True)
class TelemetryConfig:
    """What to generate; the rates are expected faults per device and day.

    Raises:
        ValueError: a count or interval is not positive, the intervals are reversed, or a rate
            is negative.
    """

    devices: int = 20
    days: int = 7
    start_date: date = date(2026, 1, 5)
    min_interval_s: int = 5
    max_interval_s: int = 60
    spikes_per_day: float = 12.0
    drifts_per_day: float = 0.5
    stuck_per_day: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.devices < 1 or self.days < 1 or self.min_interval_s < 1:
            raise ValueError("devices, days and min_interval_s must be positive")
        if self.max_interval_s < self.min_interval_s:
            raise ValueError("max_interval_s must not be below min_interval_s")
        if min(self.spikes_per_day, self.drifts_per_day, self.stuck_per_day) < 0:
            raise ValueError("fault rates must not be negative")


def _times(rng: np.random.Generator, interval: int, days: int) -> Ints:
    """Whole seconds since the start, strictly increasing, about ``interval`` apart."""
    grid = np.arange(0, days * SECONDS_PER_DAY, interval, dtype=np.int64)
    jitter = rng.integers(0, max(interval // 5, 1), len(grid), dtype=np.int64)
    return grid + jitter  # jitter < interval: the order is kept


def _device(
    rng: np.random.Generator, config: TelemetryConfig
) -> tuple[Ints, dict[str, Floats], npt.NDArray[np.int8]]:
    """One device's reading times, sensor values and fault codes (indexes of FAULT_KINDS)."""
    interval = int(rng.integers(config.min_interval_s, config.max_interval_s + 1))
    times = _times(rng, interval, config.days)
    n = len(times)
    phase = rng.uniform(0, 2 * np.pi)
    cycle = np.sin(2 * np.pi * (times % SECONDS_PER_DAY) / SECONDS_PER_DAY + phase)
    values: dict[str, Floats] = {}
    noise_sd: dict[str, float] = {}
    for sensor in SENSORS:
        base_lo, base_hi, amp_lo, amp_hi, sd_lo, sd_hi = _PROFILES[sensor]
        sd = float(rng.uniform(sd_lo, sd_hi))
        noise_sd[sensor] = sd
        level = rng.uniform(base_lo, base_hi) + rng.uniform(amp_lo, amp_hi) * cycle
        values[sensor] = level + rng.normal(0, sd, n)
    fault = np.zeros(n, dtype=np.int8)
    _inject(rng, config, times, values, noise_sd, fault)
    return times, values, fault


def _inject(
    rng: np.random.Generator,
    config: TelemetryConfig,
    times: Ints,
    values: dict[str, Floats],
    noise_sd: dict[str, float],
    fault: npt.NDArray[np.int8],
) -> None:
    """Inject the device's faults in place, marking ``fault``; a fault that would overlap one
    already injected is dropped (its draw is still consumed: the result stays seeded)."""
    n = len(times)
    horizon = config.days * SECONDS_PER_DAY
    rates = {1: config.spikes_per_day, 2: config.drifts_per_day, 3: config.stuck_per_day}
    for code, rate in rates.items():
        for _ in range(int(rng.poisson(rate * config.days))):
            sensor = SENSORS[int(rng.integers(len(SENSORS)))]
            sd = noise_sd[sensor]
            if code == 1:
                lo = int(rng.integers(n))
                hi = min(lo + int(rng.integers(1, 4)), n)
                offset = rng.choice([-1.0, 1.0]) * rng.uniform(8, 15) * sd
                if not fault[lo:hi].any():
                    values[sensor][lo:hi] += offset
                    fault[lo:hi] = code
                continue
            length = int(rng.uniform(3600, 3 * 3600) if code == 2 else rng.uniform(1800, 5400))
            start = int(rng.integers(0, max(horizon - length, 1)))
            lo, hi = np.searchsorted(times, [start, start + length])
            scale = rng.choice([-1.0, 1.0]) * rng.uniform(10, 20) * sd
            if hi - lo < 2 or fault[lo:hi].any():
                continue
            if code == 2:
                ramp = (times[lo:hi] - times[lo]) / length
                values[sensor][lo:hi] += scale * ramp
            else:
                values[sensor][lo:hi] = values[sensor][lo]
            fault[lo:hi] = code


def generate_telemetry(config: TelemetryConfig) -> pd.DataFrame:
    """Every device's readings (columns :data:`COLUMNS`), sorted by (time, device).

    ``reading_id`` counts from 0 in that order; ``reading_time`` is naive UTC (whole seconds);
    ``device_id`` is ``dev-0000``, ``dev-0001``, ...; ``fault`` one of :data:`FAULT_KINDS`.
    """
    rng = np.random.default_rng(config.seed)
    parts = [_device(rng, config) for _ in range(config.devices)]
    times = np.concatenate([p[0] for p in parts])
    device = np.repeat(np.arange(config.devices, dtype=np.int64), [len(p[0]) for p in parts])
    order = np.lexsort((device, times))
    start_s = int(pd.Timestamp(config.start_date).value // 1_000_000_000)
    frame = pd.DataFrame(
        {
            "reading_id": np.arange(len(times), dtype=np.int64),
            "reading_time": pd.to_datetime((times[order] + start_s), unit="s"),
            "device_id": np.char.add("dev-", np.char.zfill(device[order].astype(str), 4)).astype(
                object
            ),
        }
    )
    for sensor in SENSORS:
        frame[sensor] = np.round(np.concatenate([p[1][sensor] for p in parts])[order], 4)
    codes = np.concatenate([p[2] for p in parts])[order]
    frame["fault"] = np.asarray(FAULT_KINDS, dtype=object)[codes]
    return frame


def fault_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Readings per fault kind (every kind listed, zeros included)."""
    counts = frame["fault"].value_counts()
    return {kind: int(counts.get(kind, 0)) for kind in FAULT_KINDS}


def write_telemetry(
    devices: int, days: int | None, start: datetime | None, seed: int, path: Path
) -> str:
    """Generate with the defaults but these, write ``path`` (parents created); return a line
    saying what was written (readings and readings per fault kind)."""
    config = TelemetryConfig(
        devices=devices,
        days=days or TelemetryConfig.days,
        start_date=start.date() if start is not None else TelemetryConfig.start_date,
        seed=seed,
    )
    frame = generate_telemetry(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    faults = ", ".join(f"{kind} {n:,}" for kind, n in fault_counts(frame).items())
    what = f"{len(frame):,} readings of {devices} devices over {config.days} days"
    return f"{what} ({faults}) -> {path}"
