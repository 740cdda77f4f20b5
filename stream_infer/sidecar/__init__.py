"""The sidecar: the stream's model, features and batcher behind HTTP and gRPC."""

from __future__ import annotations
