"""Feature definitions shared by training, the stream and the sidecar."""

from __future__ import annotations
