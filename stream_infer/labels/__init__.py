"""The label processor: delayed labels -> per-(daily view, day, join key) partials -> daily rows."""

from __future__ import annotations
