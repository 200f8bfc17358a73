"""Write docs/api.md from the public names' signatures and docstrings, with one picture each.

Usage: python docs/make_api.py [--no-pictures]

The public surface is ``mechviz.__all__`` and ``mechviz.visual.__all__``. Each
block's picture is rendered (480p, 16:9, dark) from the example trace by the
very code the page shows, into ``docs/api/<Name>.png``. ``make gallery`` runs
this; ``tests/test_docs.py`` checks that api.md matches what this writes.
"""

from __future__ import annotations

import argparse
import inspect
import textwrap
from pathlib import Path

import mechviz
import mechviz.visual

DOCS = Path(__file__).resolve().parent
PICTURES = DOCS / "api"

# What each block's picture shows: code run with `trace` (the example trace) and
# the names of mechviz.visual in scope. The page prints the same code.
EXAMPLES = {
    "TokenRow": "TokenRow.from_trace(trace)",
    "TokenBox": "TokenBox.from_trace(trace, position=3)",
    "ProbBars": "ProbBars.from_trace(trace, position=-1, layer=trace.n_layers - 1, k=5)",
    "AttentionGrid": "AttentionGrid.from_trace(trace, layer=23, head=4)",
    "AttentionArcs": "AttentionArcs.from_trace(trace, layer=23, head=4)",
    "HeadGallery": "HeadGallery.from_trace(trace, layer=23, highlight=4)",
    "LensTable": "LensTable.from_trace(trace)",
    "UnembedPipeline": "UnembedPipeline.from_trace(trace)",
    "LensReadout": "LensReadout.from_trace(trace, position=-1)",
    "ResidualStreams": "ResidualStreams.from_trace(trace)",
    "WriteBars": "WriteBars.from_trace(trace)",
    "EmbeddingRows": "EmbeddingRows.from_trace(trace)",
    "CosineMatrix": "CosineMatrix.from_trace(trace)",
    "NeuronRow": "NeuronRow.from_trace(trace, layer=29)",
    "LayerCounts": "LayerCounts.from_trace(trace, layer=12)",
    "ActivationLegend": "ActivationLegend.from_trace(trace)",
    "LogitWaterfall": "LogitWaterfall.from_trace(trace)",
    "LensTrack": "LensTrack.from_trace(trace)",
    "TopHeads": "TopHeads.from_trace(trace)",
    "DictionaryTable": "DictionaryTable.from_trace(trace, 'input')",
    "MiddleTable": "MiddleTable.from_trace(trace)",
    "WordMatrix": "WordMatrix.from_trace(trace)",
    "PairList": "PairList.from_trace(trace)",
    "ShareBars": "ShareBars.from_trace(trace)",
    "RatioPanels": "RatioPanels.from_trace(trace)",
    "ParameterTally": "ParameterTally.from_trace(trace)",
    "HeadTokens": "HeadTokens.from_trace(trace)",
    "HeadMap": "HeadMap.from_trace(ablated)",
    "BeforeAfter": "BeforeAfter.from_trace(ablated)",
    "LensCompare": "LensCompare.from_trace(ablated)",
    "PatchingMaps": "PatchingMaps.from_trace(patched)",
    "PatchingLegend": "PatchingLegend.from_trace(patched)",
    "LensPair": "LensPair.from_trace(learned)",
    "LensCurves": "LensCurves.from_trace(learned)",
    "FeatureSum": "FeatureSum.from_trace(learned)",
    "FeatureCard": "FeatureCard.from_trace(learned, int(learned.features.ids[-1, 0]))",
}
# Blocks drawn from the example trace with a tuned lens and SAE features
# (example_trace("TunedLens")): pictured once that trace is shipped.
LEARNED = {"LensPair", "LensCurves", "FeatureSum", "FeatureCard"}
RENDER_EXAMPLE = 'mechviz.render("Attention", trace, format="png", beats=["grid"])'

INTRO = """\
# API reference

The public surface of mechviz is `mechviz.__all__` and `mechviz.visual.__all__`,
listed below; every other module and name is internal and may change. Each
building block is a Manim mobject with a `from_trace` classmethod: it reads one
trace, fits the room it is given (`width`, `height` in scene units; default the
frame less its margins) without shrinking text below the legibility floor
(`MIN_TEXT`), and takes the render's theme unless given one. The pictures are
drawn from the example trace ("The capital of France is", SmolLM2-135M) by the
code shown under each, at 854x480; `ablated` is that prompt with heads 23.4 and
29.1 ablated (`mechviz.trace(prompt, ablate=["23.4", "29.1"])`) and `patched`
is `mechviz.patch(prompt, "The capital of Italy is", answer=" Paris",
wrong=" Rome")`. This page is written by `docs/make_api.py`
(`make gallery`); a guide to writing a scene of your own is in
[your-own-scene.md](your-own-scene.md).
"""


def first_paragraph(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].strip()


def rest_of_doc(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    parts = doc.split("\n\n", 1)
    return parts[1].strip() if len(parts) > 1 else ""


def signature(name: str, obj: object) -> str:
    if inspect.isclass(obj):
        target = getattr(obj, "from_trace", None)
        label = f"{name}.from_trace" if target is not None else name
        target = target if target is not None else obj
    else:
        target, label = obj, name
    try:
        sig = str(inspect.signature(target))
    except (TypeError, ValueError):
        return label
    return f"{label}{sig}"


def section(module: str, name: str, obj: object, pictures: set[str]) -> str:
    lines = [f"### `{module}.{name}`", ""]
    if inspect.isclass(obj) or callable(obj):
        sig = signature(name, obj)
        lines += ["```python", textwrap.fill(sig, 96, subsequent_indent="    "), "```", ""]
        lines += [first_paragraph(obj), ""]
        rest = rest_of_doc(obj)
        if rest:
            lines += ["```text", rest, "```", ""]
    else:
        lines += [f"`{name} = {obj!r}`", ""]
    example = EXAMPLES.get(name) or (RENDER_EXAMPLE if name == "render" else None)
    if example:
        lines += ["```python", example, "```", ""]
    if name in pictures:
        lines += [f"![{name}](api/{name}.png)", ""]
    return "\n".join(lines)


def page(pictures: set[str]) -> str:
    parts = [INTRO, "## `mechviz`", ""]
    for name in mechviz.__all__:
        if name != "__version__":
            parts.append(section("mechviz", name, getattr(mechviz, name), pictures))
    parts += ["## `mechviz.visual`", ""]
    for name in mechviz.visual.__all__:
        parts.append(section("mechviz.visual", name, getattr(mechviz.visual, name), pictures))
    return "\n".join(parts).rstrip() + "\n"


def picture_names() -> set[str]:
    missing = {n for n in LEARNED if not (PICTURES / f"{n}.png").exists()}
    return (set(EXAMPLES) - missing) | {"render"}


def render_pictures() -> None:
    """One PNG per example block (and one scene for ``render``), from the example trace."""
    from mechviz.visual import TraceScene
    from mechviz.visual.settings import example_trace

    PICTURES.mkdir(exist_ok=True)
    trace = mechviz.load(example_trace())
    ablated = mechviz.load(example_trace("Ablation"))
    patched = mechviz.load(example_trace("Patching"))
    learned_path = example_trace("TunedLens")
    learned = mechviz.load(learned_path) if learned_path.exists() else None
    for name, code in EXAMPLES.items():
        if name in LEARNED and learned is None:
            continue  # no example trace with learned readouts yet

        class Picture(TraceScene):
            example = code

            def construct(self) -> None:
                scope = {k: getattr(mechviz.visual, k) for k in mechviz.visual.__all__}
                scope |= {"ablated": ablated, "patched": patched, "learned": learned}
                block = eval(self.example, {"trace": self.trace, **scope})  # noqa: S307
                self.add(block.move_to([0, 0, 0]))

        Picture.__name__ = name
        mechviz.render(Picture, trace, format="png", output=PICTURES / f"{name}.png")
        print(f"wrote {PICTURES / name}.png")
    mechviz.render("Attention", trace, format="png", beats=["grid"], output=PICTURES / "render.png")
    # The guide's example (docs/your-own-scene.md), its last frame.
    import importlib.util

    path = DOCS / "examples" / "head_and_lens.py"
    spec = importlib.util.spec_from_file_location("head_and_lens", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    mechviz.render(
        module.HeadAndLens, trace, format="png", quality="medium", output=path.with_suffix(".png")
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-pictures", action="store_true")
    args = parser.parse_args()
    if not args.no_pictures:
        render_pictures()
    (DOCS / "api.md").write_text(page(picture_names()), encoding="utf-8")
    print(f"wrote {DOCS / 'api.md'}")


if __name__ == "__main__":
    main()
