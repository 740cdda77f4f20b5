"""Micro-batching shared by the worker (Kafka batches) and the sidecar (dynamic batching)."""

from __future__ import annotations
