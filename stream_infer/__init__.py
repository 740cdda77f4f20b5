"""stream-infer: streaming inference over Kafka with shared Feast features and ONNX Runtime."""

from __future__ import annotations

__version__ = "0.1.0"
