"""``python -m loadgen``: the same as the ``loadgen`` console script."""

from __future__ import annotations

from loadgen.cli import main

main()
