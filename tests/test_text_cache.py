"""A render stopped mid-write can leave an empty SVG in Manim's text cache; text still works."""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import ParseError

import pytest
from manim import Text, tempconfig

from mechviz.visual.style import make_text


def test_an_empty_cached_svg_is_made_again(tmp_path: Path) -> None:
    with tempconfig({"media_dir": str(tmp_path)}):
        first = make_text("Hq 0.77", font_size=48)
        svgs = list((tmp_path / "texts").glob("*.svg"))
        assert svgs
        for svg in svgs:
            svg.write_bytes(b"")  # as a killed render leaves it
        with pytest.raises(ParseError):
            Text("Hq 0.77", font_size=48)  # Manim alone fails on it
        again = make_text("Hq 0.77", font_size=48)
        assert again.width == pytest.approx(first.width)
        assert all(svg.stat().st_size > 0 for svg in (tmp_path / "texts").glob("*.svg"))
