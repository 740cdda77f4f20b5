"""The label processor: delayed fraud labels -> per-(terminal, day) counts -> daily rows."""

from __future__ import annotations
