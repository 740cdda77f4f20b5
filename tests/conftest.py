"""Shared fixtures. Unit tests need nothing; integration fixtures live in integration/."""

from __future__ import annotations

import os

# onnxruntime-gpu warns loudly about missing CUDA libraries on CPU hosts; tests treat that as
# noise, not as a failure (the fallback itself is covered by a unit test).
os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
