"""Model registry, export and the ONNX Runtime session."""

from __future__ import annotations
