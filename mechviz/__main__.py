"""``python -m mechviz``: the same as the ``mechviz`` command."""

from __future__ import annotations

from mechviz.cli.main import main

main()
