"""``mechviz scene`` and ``mechviz scenes``: render a scene of a trace, list the scenes."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from mechviz.cli.common import (
    check_layer_head,
    csv_values,
    make_trace,
    model_options,
    output_format,
    say,
    slug,
)
from mechviz.errors import MechvizError
from mechviz.model.tokens import check_prompt


def scene_options(func):  # type: ignore[no-untyped-def]
    """How a scene looks and plays: aspect, theme, beats, timing and GIF budget."""
    from mechviz.visual.settings import ASPECTS

    options = [
        click.option(
            "--aspect",
            default="16:9",
            show_default=True,
            type=click.Choice(list(ASPECTS)),
            help="Frame shape; the layout re-flows for it (WholeModel: a png at this shape, "
            "not the still).",
        ),
        click.option(
            "--theme", default="dark", show_default=True, type=click.Choice(["dark", "light"])
        ),
        click.option(
            "--transparent",
            is_flag=True,
            help="No background: PNG with alpha, or a mov/webm video with alpha.",
        ),
        click.option(
            "--fps",
            type=click.FloatRange(1, 120),
            default=None,
            help="Frames per second [default: 15, 30, 60, 60 by --quality].",
        ),
        click.option(
            "--gif-width",
            type=click.IntRange(64, 7680),
            default=None,
            help="GIF: scale down to this many pixels wide.",
        ),
        click.option(
            "--max-mb",
            type=click.FloatRange(0.05, 1000),
            default=None,
            help="GIF: lower the frame rate, then the width, until it fits.",
        ),
        click.option(
            "--beats",
            default=None,
            metavar="A,B",
            help="Render only these beats (see --list-beats).",
        ),
        click.option("--list-beats", is_flag=True, help="Print the scene's beats and exit."),
        click.option(
            "--speed",
            type=click.FloatRange(0.05, 100),
            default=1.0,
            show_default=True,
            help="Play faster (2) or slower (0.5).",
        ),
        click.option(
            "--hold",
            type=click.FloatRange(0, 100),
            default=None,
            help="Seconds to hold the last picture [default: 1.5].",
        ),
        click.option(
            "--captions", is_flag=True, help="Also write an SRT beside the video: one cue per beat."
        ),
        click.option(
            "--layer",
            type=int,
            default=None,
            help="Attention: the layer to show. Dictionaries: the layer the middle dictionary "
            "is read after [default: the middle one].",
        ),
        click.option("--head", type=int, default=None, help="Attention: the head to show."),
        click.option(
            "--query",
            type=int,
            default=None,
            help="Attention: the query position whose arcs are drawn. LogitAttribution: the "
            "position whose prediction is split. Dictionaries: the position read [default: "
            "last].",
        ),
        click.option(
            "--layers",
            default=None,
            metavar="L1,L2",
            help="Unembedding: lens-table layers (the embedding, the last layer and "
            "the answer's layer are always shown). Neurons: the layers paged through. "
            "Dictionaries: the tables' layers.",
        ),
        click.option(
            "--width",
            type=click.IntRange(300, 8000),
            default=None,
            metavar="PX",
            help="WholeModel: the still's width in pixels (png without --aspect, svg) "
            "[default: 1000].",
        ),
        click.option(
            "--cmap",
            default=None,
            type=click.Choice(["default", "matrix", "gray", "viridis"]),
            help="WholeModel: colour map (matrix: green on black) [default: default].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


SCENE_ONLY = {
    "layer": ("Attention", "Dictionaries"),
    "head": ("Attention",),
    "query": ("Attention", "LogitAttribution", "Dictionaries"),
    "layers": ("Unembedding", "Neurons", "Dictionaries"),
    "width": ("WholeModel",),
    "cmap": ("WholeModel",),
}


# Trace sections a scene needs: checked before any scene is rendered.
SCENE_NEEDS = {
    "WholeModel": ("whole",),
    "Neurons": ("neurons",),
    "LogitAttribution": ("lens_mid", "attribution"),  # trace again first, then analyze
    "Dictionaries": ("dictionaries",),
    "EmbeddingSimilarity": ("similarity",),
    "WeightStats": ("weights",),
    "Ablation": ("interventions",),
    "Patching": ("patching",),
    "TunedLens": ("tuned_lens",),
    "Features": ("features",),
}


LEARNED = {"tuned_lens": "tuned_lens", "features": "sae"}  # section -> trace option


@click.command()
@click.argument("name")
@click.option(
    "--trace",
    "trace_file",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Trace to draw [default: the example trace of the default model]; Compare takes two.",
)
@click.option("--prompt", default=None, help="Trace this prompt first (with --model) and draw it.")
@click.option(
    "--quality",
    "-q",
    default="low",
    show_default=True,
    type=click.Choice(["low", "medium", "high", "4k"]),
    help="Shorter side 480, 720, 1080 or 2160 pixels.",
)
@click.option(
    "--format",
    "fmt",
    default=None,
    type=click.Choice(["gif", "mp4", "png", "mov", "webm", "svg"]),
    help="png saves the last frame (WholeModel: the still at --width, or with --aspect "
    "its last frame); svg: the WholeModel "
    "still as vectors; mov and webm keep --transparent [default: from the -o extension, "
    "else gif].",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write [default: renders/<trace-stem>/<Scene>.<ext>; a folder for `all`].",
)
@scene_options
@model_options
def scene(
    name: str,
    trace_file: tuple[Path, ...],
    prompt: str | None,
    quality: str,
    fmt: str | None,
    output: Path | None,
    **kwargs: object,
) -> None:
    """Render scene NAME from a trace (see `mechviz scenes`; `all` renders every one)."""
    from mechviz.files import check_writable
    from mechviz.rendering.scene import (
        FORMATS,
        GifOptions,
        default_output,
        render_scene,
        scene_class,
    )
    from mechviz.scenes import SCENES
    from mechviz.tracing.io import load_trace, save_trace
    from mechviz.visual.settings import SceneSettings, example_trace

    ctx = click.get_current_context()
    look = {k: kwargs.pop(k) for k in list(kwargs) if k in _SCENE_KEYS}
    names = list(SCENES) if name == "all" else [name]
    classes = [scene_class(n) for n in names]  # an unknown name fails before any slow work
    if look.pop("list_beats"):
        for n, cls in zip(names, classes):
            if len(names) > 1:
                click.echo(f"{n}:")
            width = max(map(len, cls.beats))
            for beat, line in cls.beats.items():
                click.echo(f"{'  ' * (len(names) > 1)}{beat:<{width}}  {line}")
        return
    if prompt is not None:
        check_prompt(prompt)
    other = trace_file[1] if len(trace_file) > 1 else None
    if len(trace_file) > 2 or (other is not None and name != "Compare"):
        raise MechvizError(
            f"Give one --trace (Compare takes two); got {len(trace_file)} for {name}."
        )
    trace_file = trace_file[0] if trace_file else None
    if trace_file is not None and prompt is not None:
        raise MechvizError("Give either --trace or --prompt, not both.")
    for key, owners in SCENE_ONLY.items():
        if look[key] is not None and any(n not in owners for n in names):
            flag = "--" + key
            which = " and ".join(
                [", ".join(owners[:-1]), owners[-1]] if len(owners) > 1 else owners
            )
            plural = "s" * (len(owners) > 1)
            raise MechvizError(f"{flag} applies to the {which} scene{plural} only, not {name}.")
    given = [k for k in kwargs if ctx.get_parameter_source(k) != ParameterSource.DEFAULT]
    if prompt is None and given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise MechvizError(
            f"Model options ({flags}) apply only with --prompt; a trace file is already made."
        )
    beats = csv_values(look["beats"], str, "--beats")
    if beats is not None and len(names) > 1:
        raise MechvizError("--beats names the beats of one scene; give a scene name, not all.")
    layers = csv_values(look["layers"], int, "--layers")
    if name == "all":
        fmt = fmt or "gif"
        if output is not None and output.suffix:
            raise MechvizError(f"With `all`, -o names a folder, not a file: {output}.")
    else:
        fmt = output_format(fmt, output, FORMATS)
    # WholeModel's PNG is its still (own shape, --width); an explicit --aspect asks for
    # the last frame at that shape instead, legible like every other scene's.
    still = ctx.get_parameter_source("aspect") in (ParameterSource.DEFAULT, None)
    if not still and fmt == "png" and "WholeModel" in names and look["width"] is not None:
        raise MechvizError(
            "WholeModel's PNG is either the still at --width or the last frame at --aspect; "
            "give one of the two."
        )
    if look["gif_width"] is not None or look["max_mb"] is not None:
        if fmt != "gif":
            raise MechvizError(f"--gif-width and --max-mb apply to GIFs, not {fmt}.")
    if look["transparent"] and fmt in ("gif", "mp4"):
        raise MechvizError(
            f"{fmt.upper()} cannot keep a transparent background; "
            "use --format png, mov (QuickTime Animation) or webm (VP9)."
        )
    if prompt is not None:
        trace_file = Path("renders") / f"{slug(prompt)}.json"
    trace_file = trace_file or example_trace(None if name == "all" else name)
    make_parents = output is None  # renders/<stem>/ is made; a folder the user names must exist
    if name == "all":
        folder = output or default_output(trace_file, names[0], fmt).parent
        outputs = [folder / f"{n}.{fmt}" for n in names]
    else:
        outputs = [output or default_output(trace_file, name, fmt)]
    for path in outputs:
        check_writable(path, make_parents=make_parents)  # before the slow part
    if prompt is not None:
        check_writable(trace_file, make_parents=True)
        # A wider still needs rows pooled for it (WholeModel --width).
        width = max(look["width"] or 1000, 1000)
        learned = {s for n in names for s in SCENE_NEEDS.get(n, ()) if s in LEARNED}
        if name == "all":  # only what is trained: `all` skips the scenes of the rest
            learned = {s for s in learned if _trained(s, kwargs)}
        for section in learned:
            kwargs[LEARNED[section]] = True
        made = make_trace(prompt, width=width, **kwargs)  # type: ignore[arg-type]
        check_layer_head(made, look["layer"], look["head"])
        from mechviz.tracing.schema import ANALYSES

        wanted = {s for n in names for s in SCENE_NEEDS.get(n, ()) if s in ANALYSES}
        if wanted:  # the analyses these scenes draw, from the model just loaded
            from mechviz.api import analyze as run_analyses

            made = run_analyses(
                made,
                model=kwargs.get("model"),  # type: ignore[arg-type]
                device=str(kwargs.get("device", "cpu")),
                **{s: s in wanted for s in ANALYSES},
            )
        trace_file.parent.mkdir(exist_ok=True)
        save_trace(made, trace_file)
    trace = load_trace(trace_file)
    check_layer_head(trace, look["layer"], look["head"])
    query = look["query"]
    if query is not None and not -trace.n_positions <= query < trace.n_positions:
        raise MechvizError(
            f"--query {query} is out of range; this prompt has positions 0 to "
            f"{trace.n_positions - 1}."
        )
    if layers is not None:
        from mechviz.analyses.readouts import table_rows

        table_rows(trace, 3, layers)  # checks the range
    if name == "all":  # scenes that need a newer trace are left out, and said so
        lacking = [
            n for n in names if any(getattr(trace, s) is None for s in SCENE_NEEDS.get(n, ()))
        ]
        learned_only = [n for n in lacking if set(SCENE_NEEDS[n]) <= set(LEARNED)]
        others = [n for n in lacking if n not in learned_only]
        if others:
            say(
                f"Skipping {', '.join(others)}: this trace (schema {trace.schema_version}) "
                "lacks what they draw; trace it again, and add the analyses with "
                "`mechviz analyze`, to draw them."
            )
        if learned_only:
            say(
                f"Skipping {', '.join(learned_only)}: they draw a tuned lens or SAE features; "
                "train them (`mechviz train-lens`, `mechviz train-sae`) and trace with "
                "--tuned-lens --sae to draw them."
            )
            outputs = [o for n, o in zip(names, outputs) if n not in lacking]
            names = [n for n in names if n not in lacking]
    else:
        for section in SCENE_NEEDS.get(name, ()):
            trace.require(section)
    if other is not None:
        load_trace(other)  # a bad file: one sentence before rendering
    settings = SceneSettings(
        trace=trace_file,
        other=other,
        layer=look["layer"],
        head=look["head"],
        query=query,
        layers=layers,
        aspect=look["aspect"],
        theme=look["theme"],
        transparent=look["transparent"],
        fps=look["fps"],
        beats=beats,
        speed=look["speed"],
        hold=look["hold"] if look["hold"] is not None else 1.5,
        fade=fmt == "gif",
        width=look["width"],
        cmap=look["cmap"] or "default",
    )
    gif = GifOptions(fps=None, width=look["gif_width"], max_mb=look["max_mb"])
    for n, path in zip(names, outputs):
        start = time.perf_counter()
        notes: list[str] = []
        written = render_scene(
            n,
            settings,
            quality,
            fmt,
            path,
            progress=sys.stderr.isatty(),
            make_parents=make_parents,
            gif=gif,
            notes=notes,
            captions=look["captions"],
            still=still,
        )
        for note in notes:
            say(note)
        extra = f" and {written.with_suffix('.srt').name}" if look["captions"] else ""
        say(
            f"Wrote {written}{extra} ({written.stat().st_size / 1024:.0f} KiB, "
            f"{time.perf_counter() - start:.1f} s)."
        )


_SCENE_KEYS = {
    "aspect",
    "theme",
    "transparent",
    "fps",
    "gif_width",
    "max_mb",
    "beats",
    "list_beats",
    "speed",
    "hold",
    "captions",
    "layer",
    "head",
    "query",
    "layers",
    "width",
    "cmap",
}


def _trained(section: str, kwargs: dict) -> bool:
    """Whether the tuned lens (or SAE, middle layer) a section reads is trained for the model."""
    from mechviz.api import loaded_model

    loaded = loaded_model(kwargs.get("model"), device=str(kwargs.get("device", "cpu")))
    try:
        if section == "tuned_lens":
            from mechviz.learned.tuned_lens import load_tuned_lens

            load_tuned_lens(loaded)
        else:
            from mechviz.learned.sae import load_sae

            load_sae(loaded)
    except MechvizError:
        return False
    return True


@click.command(name="scenes")
def list_scenes() -> None:
    """List the scenes, one line each."""
    from mechviz.scenes import SCENES

    width = max(map(len, SCENES))
    for name, (_, line) in SCENES.items():
        click.echo(f"{name:<{width}}  {line}")
