"""``python -m stream_infer`` = the ``stream-infer`` command."""

from __future__ import annotations

from stream_infer.cli import main

if __name__ == "__main__":
    main()
