"""The Python API: mechviz.trace / load / render, Trace.save, several prompts at once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mechviz
from mechviz import api
from mechviz.tracing.io import dumps
from mechviz.visual.settings import example_trace
from tests.conftest import run_cli


def test_import_is_light_and_public_names_are_documented() -> None:
    code = "import sys, mechviz; print('torch' in sys.modules, 'manim' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    for name in mechviz.__all__:
        value = getattr(mechviz, name)
        if callable(value) and name != "__version__":
            assert value.__doc__ and value.__doc__.strip(), name
    with pytest.raises(AttributeError):
        mechviz.no_such_name  # noqa: B018


def test_trace_loads_the_model_once(default_model, monkeypatch: pytest.MonkeyPatch) -> None:
    import mechviz.model.load

    loads = []
    real = mechviz.model.load.load_model

    def counting(*a, **k):  # noqa: ANN002, ANN003, ANN202
        loads.append(a)
        return real(*a, **k)

    monkeypatch.setattr(mechviz.model.load, "load_model", counting)
    first = mechviz.trace("The capital of France is", progress=False)
    again = mechviz.trace(["The capital of France is", "2+2="], progress=False)
    assert loads == []  # the session's model was reused: no second load
    assert api.loaded_model() is default_model
    assert isinstance(first, mechviz.Trace) and [t.prompt for t in again][1] == "2+2="
    # The same prompt traced twice in one process gives the same trace, byte for byte.
    assert dumps(first) == dumps(again[0])
    assert first.token_text(first.prediction[0]) == " Paris"


def test_a_bad_prompt_in_a_list_costs_no_forward_pass(
    default_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mechviz.tracing.record

    passes = []
    monkeypatch.setattr(mechviz.tracing.record, "trace_prompt", lambda *a: passes.append(a))
    with pytest.raises(mechviz.MechvizError, match="Prompt 2: The prompt is empty"):
        mechviz.trace(["fine", ""], progress=False)
    with pytest.raises(mechviz.MechvizError, match="Prompt 2: The prompt is 5 tokens long"):
        mechviz.trace(["fine", "one two three four five"], max_tokens=4, progress=False)
    with pytest.raises(mechviz.MechvizError, match="list is empty"):
        mechviz.trace([], progress=False)
    assert passes == []


def test_save_is_atomic_and_load_round_trips(tmp_path: Path) -> None:
    trace = mechviz.load(example_trace())
    path = trace.save(tmp_path / "t.json")
    assert path == tmp_path / "t.json"
    assert path.read_text(encoding="utf-8") == dumps(trace)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    again = mechviz.load(path)
    np.testing.assert_array_equal(again.lens.top_ids, trace.lens.top_ids)
    with pytest.raises(mechviz.MechvizError, match="is a directory"):
        trace.save(tmp_path)


def test_render_a_name_or_an_own_scene_class(tmp_path: Path) -> None:
    trace = mechviz.load(example_trace())
    out = mechviz.render(
        "Attention", trace, format="png", beats=["grid"], output=tmp_path / "a.png"
    )
    assert isinstance(out, mechviz.Rendered) and isinstance(out, Path)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert out._repr_html_().startswith('<img src="data:image/png;base64,')
    # A scene class of the user's own, from a file outside the repository.
    (tmp_path / "mine.py").write_text(
        textwrap.dedent(
            """
            from manim import Text
            from mechviz.visual import TraceScene

            class Mine(TraceScene):
                def construct(self):
                    token, _ = self.trace.prediction
                    self.add(Text(self.vocab_text(token)))
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        from mine import Mine  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    png = mechviz.render(Mine, example_trace(), format="png", output=tmp_path / "m.png")
    assert png.stat().st_size > 1000
    with pytest.raises(mechviz.MechvizError, match="not a scene"):
        mechviz.render(int, trace)
    with pytest.raises(mechviz.MechvizError, match="no option 'colour'"):
        mechviz.render("Attention", trace, colour="red")


def test_rendered_html_for_videos(tmp_path: Path) -> None:
    for suffix, needle in (("mp4", "video/mp4"), ("gif", "image/gif"), ("webm", "video/webm")):
        path = tmp_path / f"x.{suffix}"
        path.write_bytes(b"data")
        assert needle in api.Rendered(path)._repr_html_()


def test_cli_traces_a_prompt_file_with_one_model_load(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The capital of France is\n\n2+2=\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run_cli("trace", "-f", str(prompts), "-o", str(out))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["01-the-capital-of-france-is.json", "02-2-2.json"]
    data = json.loads((out / names[1]).read_text(encoding="utf-8"))
    assert data["prompt"] == "2+2="
    assert "Traced 2 prompts" in result.stderr and "one model load" in result.stderr
    # One bad line: one sentence naming it, exit 2, nothing written.
    prompts.write_text("fine\n" + "x " * 100 + "\n", encoding="utf-8")
    bad = run_cli("trace", "-f", str(prompts), "-o", str(tmp_path / "bad"), "--max-tokens", "20")
    assert bad.returncode == 2 and "Prompt 2:" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
    missing = run_cli("trace", "-f", str(tmp_path / "none.txt"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_file_names_are_numbered_slugs() -> None:
    from mechviz.cli.common import trace_file_names

    names = trace_file_names(["Привет мир", "When Mary and John went to the store, John gave"])
    assert names == ["01-prompt.json", "02-when-mary-and-john-went-to-the-store.json"]
