"""The sidecar: the stream's model, features and batcher behind HTTP."""

from __future__ import annotations
