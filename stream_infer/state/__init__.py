"""Durable feature state: customer histories and terminal daily rows (Redis or SQLite)."""

from __future__ import annotations
