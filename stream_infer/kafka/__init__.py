"""Kafka adapters: broker launcher, topic specs, client wiring, statistics."""

from __future__ import annotations
