"""Training: the handbook's split, model fitting, metrics, export and registration."""

from __future__ import annotations
