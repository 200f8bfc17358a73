"""The ``mechviz`` command line: trace, inspect, scene and scenes."""

from __future__ import annotations

import hashlib
import signal
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource
from rich.console import Console
from rich.markup import escape

from mechviz import __version__
from mechviz.errors import MechvizError, Stopped, quiet_unraisable, request_stop
from mechviz.tokens import check_prompt

err = Console(stderr=True)


def fail(message: str) -> None:
    """Print one red sentence (user text shown as typed) and exit with code 2."""
    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


class Group(click.Group):
    """Turns a :class:`MechvizError` or a usage error into one sentence and exit code 2.

    SIGINT and SIGTERM unwind the stack (temporary files and render folders are
    removed on the way) and exit with 130 and 143.
    """

    def main(self, *args: object, **kwargs: object) -> object:
        kwargs["standalone_mode"] = False
        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        sys.unraisablehook = quiet_unraisable
        try:
            return super().main(*args, **kwargs)  # type: ignore[arg-type]
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            err.print("Interrupted; nothing was written.")
            sys.exit(130)
        except click.ClickException as exc:
            fail(exc.format_message().rstrip(".") + "." + _hint(exc))
        except MechvizError as exc:
            fail(str(exc))
        except (KeyboardInterrupt, Stopped) as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            word = "Terminated" if signum == signal.SIGTERM else "Interrupted"
            err.print(f"{word}; nothing was written.")
            sys.exit(128 + signum)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return None


def _hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return ""
    takes_prompt = any(p.name == "prompt" for p in ctx.command.params)
    if isinstance(exc, click.NoSuchOption) and takes_prompt:
        return (
            " If that is the start of your prompt, put -- before the prompt: "
            f"`{ctx.command_path} -- '-1 is less than'`."
        )
    return f" (see `{ctx.command_path} --help`)"


@click.group(cls=Group)
@click.version_option(__version__, prog_name="mechviz")
def main() -> None:
    """Explainer animations from one real forward pass of a language model."""


def model_options(func):  # type: ignore[no-untyped-def]
    """Options shared by every command that loads a model."""
    options = [
        click.option(
            "--model",
            "-m",
            default=None,
            metavar="MODEL",
            help="Hugging Face id, local folder or .gguf file "
            "[default: SmolLM2-135M-Instruct, offline].",
        ),
        click.option(
            "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
        ),
        click.option(
            "--dtype",
            default="float32",
            show_default=True,
            type=click.Choice(["float32", "bfloat16", "float16"]),
        ),
        click.option(
            "--device-map",
            default=None,
            type=click.Choice(["auto"]),
            help="Shard a model too large for one GPU across all of them (accelerate).",
        ),
        click.option(
            "--top-k", default=10, show_default=True, type=int, help="Tokens kept per distribution."
        ),
        click.option(
            "--max-tokens",
            default=64,
            show_default=True,
            type=int,
            help="Refuse prompts longer than this many tokens.",
        ),
        click.option("--full", is_flag=True, help="Also store full residual vectors (large)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_trace(prompt: str | list[str], *, model: str | None, **options: object):  # type: ignore[no-untyped-def]
    """Load the model (once per process) and trace ``prompt`` (imports torch only when called)."""
    from mechviz.api import trace as api_trace

    for name in ("max_tokens", "top_k"):
        if int(options[name]) < 1:  # type: ignore[call-overload]
            flag = "--" + name.replace("_", "-")
            raise MechvizError(f"{flag} must be at least 1; got {options[name]}.")
    return api_trace(prompt, model, **options)  # type: ignore[arg-type]


def read_prompts(source: Path) -> list[str]:
    """One prompt per line of ``source`` (``-`` for stdin); empty lines are skipped."""
    try:
        if str(source) == "-":
            text = sys.stdin.read()
        else:
            text = source.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MechvizError(f"Prompt file {source} does not exist.") from None
    except IsADirectoryError:
        raise MechvizError(f"{source} is a directory, not a prompt file.") from None
    except UnicodeDecodeError:
        raise MechvizError(f"Prompt file {source} is not UTF-8 text.") from None
    except OSError as exc:
        raise MechvizError(f"Cannot read {source}: {exc.strerror or exc}.") from None
    prompts = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not prompts:
        raise MechvizError(f"Prompt file {source} holds no prompts (one per line).")
    return prompts


def trace_file_names(prompts: list[str]) -> list[str]:
    """``01-the-capital-of-france.json``...: numbered in order, a slug of each prompt."""
    import re
    import unicodedata

    width = max(2, len(str(len(prompts))))
    names = []
    for i, prompt in enumerate(prompts, 1):
        ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
        if len(slug) > 40:  # cut at a word's end
            slug = slug[:41].rsplit("-", 1)[0] if "-" in slug[:41] else slug[:40]
        names.append(f"{i:0{width}d}-{slug or 'prompt'}.json")
    return names


@main.command()
@click.argument("prompt", nargs=-1)
@click.option(
    "-f",
    "--file",
    "prompt_file",
    type=click.Path(dir_okay=True, path_type=Path, allow_dash=True),
    default=None,
    help="Trace every line of this file (- for stdin), one model load for all.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write: a file for one prompt [default: trace.json]; a folder for "
    "several [default: traces/].",
)
@model_options
@click.option(
    "--width",
    default=1000,
    show_default=True,
    type=int,
    metavar="PX",
    help="Width of the whole-model picture: pooled values kept per row.",
)
@click.option(
    "--neuron-above",
    default=3.0,
    show_default=True,
    type=float,
    help="Neurons above this on some token are selected.",
)
@click.option(
    "--neuron-below",
    default=0.0,
    show_default=True,
    type=float,
    help="Neurons below this on some token are selected.",
)
@click.option(
    "--relative",
    "neuron_relative",
    is_flag=True,
    help="Neuron thresholds in units of each layer's standard deviation.",
)
@click.option(
    "--ablate",
    multiple=True,
    metavar="L.H",
    help="Remove a head's output (5.3; 7.* for every head of layer 7); repeatable.",
)
@click.option(
    "--ablate-mlp", multiple=True, type=int, metavar="L", help="Remove layer L's MLP output."
)
@click.option(
    "--ablate-mode",
    default="zero",
    show_default=True,
    type=click.Choice(["zero", "mean"]),
    help="Ablate to zero, or to the output's mean over positions.",
)
@click.option(
    "--freeze",
    multiple=True,
    metavar="L.H",
    help="Fix a head's attention pattern to the one it has on --freeze-from; repeatable.",
)
@click.option(
    "--freeze-from",
    default=None,
    metavar="PROMPT",
    help="The prompt (same length in tokens) the frozen patterns come from.",
)
@click.option(
    "--tuned-lens",
    is_flag=True,
    help="Also read every layer with the tuned lens (train it first: mechviz train-lens).",
)
@click.option(
    "--sae",
    is_flag=True,
    help="Also record the sparse-autoencoder features of a layer (mechviz train-sae).",
)
@click.option(
    "--sae-layer",
    type=int,
    default=None,
    metavar="L",
    help="The layer --sae reads [default: the middle one]; implies --sae.",
)
def trace(
    prompt: tuple[str, ...], prompt_file: Path | None, output: Path | None, **kwargs: object
) -> None:
    """Trace PROMPT through the model and write a JSON trace.

    Several prompts (as arguments, or one per line with -f) load the model once
    and write one trace each into the -o folder, numbered in order. With
    --ablate, --ablate-mlp or --freeze the trace records the changed run, and
    what changed with the run before it.
    """
    from mechviz.files import check_writable
    from mechviz.io import save_trace
    from mechviz.specs import Changes

    sae_layer = kwargs.pop("sae_layer")
    if sae_layer is not None:
        kwargs["sae"] = sae_layer
    asked = {k: kwargs[k] for k in ("ablate", "ablate_mlp", "freeze", "freeze_from")}
    Changes(mode=kwargs["ablate_mode"], **asked).check()  # type: ignore[arg-type]

    prompts = list(prompt) + (read_prompts(prompt_file) if prompt_file is not None else [])
    if not prompts:
        raise MechvizError("Give a prompt to trace, or -f FILE with one prompt per line.")
    for i, text in enumerate(prompts):
        try:
            check_prompt(text)
        except MechvizError as exc:
            raise MechvizError(f"Prompt {i + 1}: {exc}" if len(prompts) > 1 else str(exc)) from None
    start = time.perf_counter()
    if len(prompts) == 1 and prompt_file is None:
        output = output or Path("trace.json")
        if output.is_dir():
            raise MechvizError(f"{output} is a folder; give a file name for the trace.")
        check_writable(output)  # before the slow part
        result = make_trace(prompts[0], **kwargs)  # type: ignore[arg-type]
        save_trace(result, output)
        token, prob = result.prediction
        n = result.n_positions
        say(
            f"Wrote {output} ({output.stat().st_size / 1024:.0f} KiB, {n} token{'s' * (n != 1)}, "
            f"{time.perf_counter() - start:.1f} s); next token: {result.token_text(token)!r} "
            f"({prob:.2f})."
        )
        return
    folder = output or Path("traces")
    if folder.exists() and not folder.is_dir():
        raise MechvizError(f"{folder} is a file; with several prompts -o names a folder.")
    names = trace_file_names(prompts)
    check_writable(folder / names[0], make_parents=True)  # the folder is made once traced
    results = make_trace(prompts, **kwargs)  # type: ignore[arg-type]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MechvizError(f"Cannot make folder {folder}: {exc.strerror or exc}.") from None
    for name, result in zip(names, results):
        save_trace(result, folder / name)
        token, prob = result.prediction
        say(f"Wrote {folder / name}; next token: {result.token_text(token)!r} ({prob:.2f}).")
    say(
        f"Traced {len(prompts)} prompts into {folder} in {time.perf_counter() - start:.1f} s "
        "(one model load)."
    )


def say(message: str) -> None:
    """A progress or result line on stderr, printed exactly as written."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


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


@main.command()
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
    from mechviz.io import load_trace, save_trace
    from mechviz.rendering import FORMATS, GifOptions, default_output, render_scene, scene_class
    from mechviz.scenes import SCENES
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
    beats = _csv(look["beats"], str, "--beats")
    if beats is not None and len(names) > 1:
        raise MechvizError("--beats names the beats of one scene; give a scene name, not all.")
    layers = _csv(look["layers"], int, "--layers")
    if name == "all":
        fmt = fmt or "gif"
        if output is not None and output.suffix:
            raise MechvizError(f"With `all`, -o names a folder, not a file: {output}.")
    else:
        fmt = _format(fmt, output, FORMATS)
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
        trace_file = Path("renders") / f"{_slug(prompt)}.json"
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
        _check_layer_head(made, look["layer"], look["head"])
        from mechviz.schema import ANALYSES

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
    _check_layer_head(trace, look["layer"], look["head"])
    query = look["query"]
    if query is not None and not -trace.n_positions <= query < trace.n_positions:
        raise MechvizError(
            f"--query {query} is out of range; this prompt has positions 0 to "
            f"{trace.n_positions - 1}."
        )
    if layers is not None:
        from mechviz.readouts import table_rows

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
            from mechviz.tuned_lens import load_tuned_lens

            load_tuned_lens(loaded)
        else:
            from mechviz.sae import load_sae

            load_sae(loaded)
    except MechvizError:
        return False
    return True


def _csv(value: str | None, kind: type, flag: str) -> tuple | None:
    """A comma-separated option as a tuple (``None`` when not given)."""
    if value is None:
        return None
    try:
        items = tuple(kind(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise MechvizError(f"{flag} takes a comma-separated list; got {value!r}.") from None
    if not items:
        raise MechvizError(f"{flag} is empty.")
    return items


def _format(fmt: str | None, output: Path | None, formats: tuple[str, ...]) -> str:
    """The format: --format, else the extension of -o, else gif; they must agree."""
    ext = output.suffix.lower().lstrip(".") if output is not None else ""
    if fmt and ext and ext != fmt:
        raise MechvizError(f"--format {fmt} does not match the extension of {output}.")
    if not fmt and ext and ext not in formats:
        raise MechvizError(
            f"Cannot tell the format from {output}; use a .gif, .mp4, .png, .mov, .webm or .svg "
            "name "
            "or --format."
        )
    return fmt or ext or "gif"


@main.command(name="scenes")
def list_scenes() -> None:
    """List the scenes, one line each."""
    from mechviz.scenes import SCENES

    width = max(map(len, SCENES))
    for name, (_, line) in SCENES.items():
        click.echo(f"{name:<{width}}  {line}")


def _slug(text: str) -> str:
    """A file name for a prompt's trace: its words, and a hash so prompts never collide."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{'_'.join(words)[:40] or 'trace'}-{digest}"


def _check_layer_head(trace: object, layer: int | None, head: int | None) -> None:
    L, H = trace.model.n_layers, trace.model.n_heads  # type: ignore[attr-defined]
    if layer is not None and not 0 <= layer < L:
        raise MechvizError(f"--layer {layer} is out of range; this model has layers 0 to {L - 1}.")
    if head is not None and not 0 <= head < H:
        raise MechvizError(f"--head {head} is out of range; this model has heads 0 to {H - 1}.")


@main.command()
@click.option("--clean", required=True, metavar="PROMPT", help="The run patched from.")
@click.option(
    "--corrupt",
    required=True,
    metavar="PROMPT",
    help="The run patched into; the same number of tokens.",
)
@click.option("--answer", default=None, metavar="TOKEN", help="Default: the clean top-1.")
@click.option("--wrong", default=None, metavar="TOKEN", help="Default: the corrupt top-1.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=Path("patch.json"),
    show_default=True,
    help="Where to write the patching trace.",
)
@model_options
def patch(
    clean: str,
    corrupt: str,
    answer: str | None,
    wrong: str | None,
    output: Path,
    model: str | None,
    **kwargs: object,
) -> None:
    """Activation patching: restore the clean run, one site at a time, inside the corrupt run.

    Patches the residual stream at every layer and position, every head and
    every MLP, and records the logit difference ANSWER - WRONG at the last
    position, normalised: 1 = the clean run's, 0 = the corrupt run's. Draw it
    with `mechviz scene Patching --trace patch.json`.
    """
    from mechviz.api import patch as run_patch
    from mechviz.files import check_writable
    from mechviz.io import save_trace

    for name in ("max_tokens", "top_k"):
        if int(kwargs[name]) < 1:  # type: ignore[call-overload]
            raise MechvizError(
                f"--{name.replace('_', '-')} must be at least 1; got {kwargs[name]}."
            )
    if output.is_dir():
        raise MechvizError(f"{output} is a folder; give a file name for the patching trace.")
    check_writable(output)
    start = time.perf_counter()
    result = run_patch(
        clean,
        corrupt,
        model,
        answer=answer,
        wrong=wrong,
        device=str(kwargs["device"]),
        dtype=str(kwargs["dtype"]),
        top_k=int(kwargs["top_k"]),  # type: ignore[call-overload]
        max_tokens=int(kwargs["max_tokens"]),  # type: ignore[call-overload]
    )
    save_trace(result, output)
    pt = result.patching
    say(
        f"Wrote {output} ({time.perf_counter() - start:.1f} s): "
        f"{result.token_text(pt.answer)!r} - {result.token_text(pt.wrong)!r} is "
        f"{pt.clean_diff:.2f} clean, {pt.corrupt_diff:.2f} corrupt; draw it with "
        f"`mechviz scene Patching --trace {output}`."
    )


@main.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option("--attribution", is_flag=True, help="Direct logit attribution of every position.")
@click.option(
    "--versus",
    default=None,
    metavar="TOKEN",
    help='With --attribution: also split logit(top-1) - logit(TOKEN), e.g. " London".',
)
@click.option("--dictionaries", is_flag=True, help="Decode every layer with W_E, W_U, middle.")
@click.option(
    "--middle-layers",
    default=3,
    show_default=True,
    type=int,
    help="Layers each prompt token runs through to make the middle dictionary.",
)
@click.option("--similarity", is_flag=True, help="Cosines of W_E rows for --words.")
@click.option(
    "--words",
    default=None,
    metavar="W1,W2,...",
    help="Comma-separated words for --similarity, each one token [default: the seed's ten].",
)
@click.option("--weights", is_flag=True, help="sigma/mean of W_Q..W_O, parameter tally, heads.")
@click.option(
    "--model",
    "-m",
    default=None,
    metavar="MODEL",
    help="The model that made the trace [default: the one it records].",
)
@click.option(
    "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
)
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the analysed trace here [default: over TRACE_FILE].",
)
def analyze(
    trace_file: Path,
    attribution: bool,
    versus: str | None,
    dictionaries: bool,
    middle_layers: int,
    similarity: bool,
    words: str | None,
    weights: bool,
    model: str | None,
    device: str,
    output: Path | None,
) -> None:
    """Add analyses that read the model again to a trace; no flag means all of them.

    Loads the model the trace names and refuses when its weights differ from
    the ones recorded. `mechviz inspect` prints the results; the scenes
    LogitAttribution, Dictionaries, EmbeddingSimilarity and WeightStats draw them.
    """
    from mechviz.api import analyze as run
    from mechviz.io import load_trace, save_trace

    if versus is not None and not attribution and (dictionaries or similarity or weights):
        raise MechvizError("--versus needs --attribution (or no analysis flag, for all).")
    chosen = {"attribution": attribution, "dictionaries": dictionaries}
    chosen |= {"similarity": similarity, "weights": weights}
    if not any(chosen.values()):
        chosen = dict.fromkeys(chosen, True)
    word_list = None
    if words is not None:
        word_list = [w for w in words.split(",") if w != ""]
        if not word_list:
            raise MechvizError("--words is empty; give comma-separated words.")
    trace = load_trace(trace_file)
    done = run(
        trace,
        model=model,
        device=device,
        versus=versus,
        middle_layers=middle_layers,
        words=word_list,
        **chosen,
    )
    target = output or trace_file
    save_trace(done, target)
    added = ", ".join(name for name, on in chosen.items() if on)
    say(f"Added {added} to {target}; print them with `mechviz inspect {target}`.")


@main.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option(
    "--position",
    "-p",
    type=int,
    default=-1,
    show_default=True,
    help="Position read by the attribution and dictionary tables (-1: the last).",
)
def inspect(trace_file: Path, position: int) -> None:
    """Print the logit lens of a trace, and every analysis it holds, as tables."""
    from mechviz.io import load_trace
    from mechviz.report import print_report

    print_report(load_trace(trace_file), Console(), position=position)


@main.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option("--layer", type=int, default=None, help="Only this layer [default: every layer].")
@click.option(
    "--above", type=float, default=None, help="Upper threshold [default: the trace's, 3]."
)
@click.option(
    "--below", type=float, default=None, help="Lower threshold [default: the trace's, 0]."
)
@click.option(
    "--relative/--absolute",
    default=None,
    help="Thresholds in standard deviations of each layer, or in activation units "
    "[default: as traced].",
)
@click.option("--top", default=5, show_default=True, type=int, help="Neurons shown per layer.")
def neurons(
    trace_file: Path,
    layer: int | None,
    above: float | None,
    below: float | None,
    relative: bool | None,
    top: int,
) -> None:
    """Per layer, how many MLP neurons fire above or below the thresholds, and on which tokens."""
    from mechviz.io import load_trace
    from mechviz.report import print_neurons

    print_neurons(
        load_trace(trace_file),
        Console(),
        layer=layer,
        above=above,
        below=below,
        relative=relative,
        top=top,
    )


@main.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option(
    "--criterion",
    "-c",
    default=None,
    help="direct, against, from-last, previous or peaked [default: every one].",
)
@click.option("-n", default=10, show_default=True, type=int, help="Heads per table.")
def heads(trace_file: Path, criterion: str | None, n: int) -> None:
    """List the top heads of a trace under each criterion, with what each attends to."""
    from mechviz.heads import print_heads
    from mechviz.io import load_trace

    print_heads(load_trace(trace_file), Console(), criterion=criterion, n=n)


def _learning_model(model: str | None, device: str):  # type: ignore[no-untyped-def]
    from mechviz.api import loaded_model

    return loaded_model(model, device=device, progress=sys.stderr.isatty())


@main.command(name="train-lens")
@click.option(
    "--tokens",
    type=int,
    default=None,
    help="Stop after this many training tokens (a quick lens: 2000, about 2 minutes).",
)
@click.option(
    "--minutes",
    type=float,
    default=None,
    help="Stop after this many minutes of training [default: 25, without --tokens].",
)
@click.option(
    "--eval-tokens",
    type=int,
    default=2048,
    show_default=True,
    help="Held-out tokens for the per-layer table of both lenses.",
)
@click.option("--fresh", is_flag=True, help="Start again from the identity, not the last run.")
@click.option(
    "--model", "-m", default=None, metavar="MODEL", help="[default: SmolLM2-135M-Instruct]"
)
@click.option(
    "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
)
def train_lens(
    tokens: int | None,
    minutes: float | None,
    eval_tokens: int,
    fresh: bool,
    model: str | None,
    device: str,
) -> None:
    """Train a tuned lens on real text (fetched once from Debian), then compare both lenses.

    One affine translator per layer (Belrose et al. 2023), trained to make each
    layer's readout match the model's final distribution. A second run
    continues the first unless --fresh. Prints, per layer, the logit lens and
    the tuned lens on held-out text (bits per byte against the true next token,
    and KL to the final distribution); `mechviz trace --tuned-lens` records it.
    """
    from mechviz.corpus import load_corpus
    from mechviz.tuned_lens import evaluate, save_tuned_lens, train_tuned_lens

    if eval_tokens < 64:
        raise MechvizError(f"--eval-tokens must be at least 64; got {eval_tokens}.")
    loaded = _learning_model(model, device)
    progress = True  # a line rewritten in place on a terminal, else one every 30 s
    corpus = load_corpus(loaded.tokenizer, "train", progress=True)
    lens, state = train_tuned_lens(
        loaded, corpus, tokens=tokens, minutes=minutes, resume=not fresh, progress=progress
    )
    held = load_corpus(loaded.tokenizer, "eval", progress=True)
    evaluation = evaluate(loaded, lens, held, tokens=eval_tokens, progress=progress)
    folder = save_tuned_lens(loaded, lens, state, corpus, evaluation)
    click.echo(evaluation.table())
    say(
        f"Trained on {state.tokens:,} tokens in {state.seconds / 60:.1f} min; saved in {folder}. "
        "Record it in a trace with `mechviz trace PROMPT --tuned-lens`."
    )


@main.command(name="train-sae")
@click.option(
    "--layer", type=int, default=None, help="Read the residual after this layer [default: middle]."
)
@click.option(
    "--tokens",
    type=int,
    default=1 << 20,
    show_default=True,
    help="Activations gathered for training (a quick SAE: 20000).",
)
@click.option("--features", type=int, default=None, help="Dictionary size [default: 8 x d_model].")
@click.option("--k", type=int, default=32, show_default=True, help="Active features per token.")
@click.option(
    "--minutes", type=float, default=None, help="Bound the whole run to this many minutes."
)
@click.option(
    "--model", "-m", default=None, metavar="MODEL", help="[default: SmolLM2-135M-Instruct]"
)
@click.option(
    "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
)
def train_sae(
    layer: int | None,
    tokens: int,
    features: int | None,
    k: int,
    minutes: float | None,
    model: str | None,
    device: str,
) -> None:
    """Train a sparse autoencoder on one layer's residual stream, over real text.

    A TopK SAE (Gao et al. 2024): each token's residual vector written as a sum
    of k features from a dictionary of 8 x d_model, plus an error ("dark
    matter"). Prints its held-out quality and saves feature dashboards (top
    contexts, promoted tokens); `mechviz trace --sae` records the features.
    """
    from mechviz.corpus import load_corpus
    from mechviz.sae import check_layer
    from mechviz.sae import train_sae as run

    if features is not None and features < 1:
        raise MechvizError(f"--features must be at least 1; got {features}.")
    loaded = _learning_model(model, device)
    layer = check_layer(loaded, layer)
    corpus = load_corpus(loaded.tokenizer, "train", progress=True)
    sae = run(
        loaded,
        corpus,
        layer=layer,
        tokens=tokens,
        features=features,
        k=k,
        minutes=minutes,
        progress=True,
    )
    ev = sae.meta["evaluation"]
    click.echo(
        f"layer {layer}: {sae.features} features, k = {sae.k}; held out: variance explained "
        f"{ev['fve']:.3f}, mean L0 {ev['l0']:.1f}, dead {ev['dead_share']:.1%}; next-token loss "
        f"{ev['ce_clean']:.3f} nats clean, {ev['ce_sae']:.3f} with the SAE "
        f"(+{ev['ce_sae'] - ev['ce_clean']:.3f}), {ev['ce_zero']:.3f} with the layer zeroed."
    )
    say(f"Record it in a trace with `mechviz trace PROMPT --sae --sae-layer {layer}`.")


@main.command()
@click.argument("trace_file", type=click.Path(path_type=Path))
@click.option(
    "--position", "-p", type=int, default=None, help="Only this position [default: every one]."
)
@click.option("--top", default=5, show_default=True, type=int, help="Features shown per position.")
def features(trace_file: Path, position: int | None, top: int) -> None:
    """Print each position's most active SAE features, with what each one responds to."""
    from mechviz.io import load_trace
    from mechviz.report import print_features

    if top < 1:
        raise MechvizError(f"--top must be at least 1; got {top}.")
    print_features(load_trace(trace_file), Console(), position=position, top=top)
