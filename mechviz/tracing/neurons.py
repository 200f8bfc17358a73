"""The Neuroscope selection: which MLP neurons fire above or below a threshold.

A neuron's activation is the input of the MLP's down projection (after the
activation function; for gated MLPs ``act(gate(x)) * up(x)``). A neuron of a
layer is *selected* when, at one position of the prompt at least, its
activation exceeds the upper threshold (strictly) or falls below the lower one
(strictly). Thresholds are absolute (in the activation's own units), or with
``relative`` in units of the layer's standard deviation (``trace.neurons.std``).

Tracing applies the rule (:func:`thresholds` and :func:`passes`) to the
per-neuron peaks as the trace stores them, so :func:`select` re-counts any
other thresholds from ``trace.neurons.peak`` exactly. NumPy only: scenes and
the terminal view import this module without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mechviz.errors import MechvizError

if TYPE_CHECKING:
    from mechviz.tracing.schema import Trace

ABOVE = 3.0  # the seed's upper threshold (GPT-J's GELU MLP)
BELOW = 0.0  # the seed's lower threshold
MARGIN = 0.5  # red above ``above + MARGIN`` (3.5 in the seed), orange between
CLASSES = ("high", "mid", "low", "neg")  # red, orange, grey, blue


def check_rule(above: float, below: float, flags: tuple[str, str] = ("--above", "--below")) -> None:
    """Refuse thresholds that select nothing sensible, in one sentence.

    ``flags`` names the two options in the message (``mechviz trace`` calls
    them ``--neuron-above`` and ``--neuron-below``).

    Raises:
        MechvizError: ``above`` or ``below`` is not finite, or ``above <= below``.

    """
    if not (np.isfinite(above) and np.isfinite(below)):
        raise MechvizError(f"Thresholds must be finite numbers; got above {above}, below {below}.")
    if above <= below:
        raise MechvizError(
            f"The upper threshold ({flags[0]} {above:g}) must be greater than the lower one "
            f"({flags[1]} {below:g})."
        )


def thresholds(
    std: np.ndarray, above: float, below: float, relative: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The absolute thresholds of each layer.

    Args:
        std: ``[L]`` standard deviation of each layer's activations (float32).
        above: Upper threshold, in activation units, or in standard deviations
            when ``relative``.
        below: Lower threshold, in the same units.
        relative: Whether the thresholds are in units of ``std``.

    Returns:
        ``(hi, lo)``, each ``[L]`` float32, in activation units.

    """
    std = np.asarray(std, dtype=np.float32)
    ones = std if relative else np.ones_like(std)
    return np.float32(above) * ones, np.float32(below) * ones


def passes(peak: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Which neurons the rule selects.

    Args:
        peak: ``[L, F, 2]`` each neuron's (max, min) activation over positions.
        hi: ``[L]`` upper thresholds (activation units).
        lo: ``[L]`` lower thresholds.

    Returns:
        ``[L, F]`` bool: ``max > hi`` or ``min < lo``.

    """
    peak = np.asarray(peak, dtype=np.float32)
    return (peak[..., 0] > hi[:, None]) | (peak[..., 1] < lo[:, None])


def extremity(peak: np.ndarray) -> np.ndarray:
    """``[L, F]`` each neuron's largest |activation| over positions: the order of display."""
    return np.abs(np.asarray(peak, dtype=np.float32)).max(axis=-1)


@dataclass(frozen=True)
class Selection:
    """The neurons a rule selects in each layer of a trace.

    Attributes:
        above: Upper threshold as given (activation units, or stds when ``relative``).
        below: Lower threshold as given.
        relative: Whether the thresholds are in units of each layer's std.
        hi: ``[L]`` upper threshold of each layer, in activation units.
        lo: ``[L]`` lower threshold of each layer, in activation units.
        margin: ``[L]`` the orange band's width above ``hi`` (0.5, times the
            layer's std when ``relative``): red is above ``hi + margin``.
        count: ``[L]`` neurons selected per layer, re-counted from ``peak``.
        d_mlp: Neurons per layer (F).
        ids: Per layer, the stored neurons the rule selects, most extreme
            first (int64 ``[n_l]``; at most ``J`` of ``count[l]``: the trace
            stores only the neurons its own rule selected, up to a cap).
        values: Per layer, their activations at every position, ``[n_l, P]``.

    """

    above: float
    below: float
    relative: bool
    hi: np.ndarray
    lo: np.ndarray
    margin: np.ndarray
    count: np.ndarray
    d_mlp: int
    ids: list[np.ndarray]
    values: list[np.ndarray]


def select(
    trace: Trace,
    above: float | None = None,
    below: float | None = None,
    relative: bool | None = None,
) -> Selection:
    """Apply a selection rule to a trace's ``neurons`` section.

    Args:
        trace: A trace with a ``neurons`` section (schema 4).
        above: Upper threshold; ``None`` keeps the one used at trace time.
        below: Lower threshold; ``None`` keeps the one used at trace time.
        relative: Thresholds in units of each layer's std; ``None`` keeps the
            trace's setting.

    Returns:
        The :class:`Selection`: counts out of d_mlp from ``peak`` and the
        stored neurons that pass, with their activations.

    Raises:
        MechvizError: The trace has no ``neurons`` section, or ``above <= below``.

    """
    n = trace.require("neurons")
    above = n.above if above is None else above
    below = n.below if below is None else below
    relative = n.relative if relative is None else relative
    check_rule(above, below)
    hi, lo = thresholds(n.std, above, below, relative)
    ok = passes(n.peak, hi, lo)
    ids, values = [], []
    for layer in range(n.ids.shape[0]):
        stored = n.ids[layer]
        keep = (stored >= 0) & ok[layer, np.maximum(stored, 0)]
        ids.append(stored[keep].astype(np.int64))
        values.append(n.values[layer][keep])
    margin = np.float32(MARGIN) * (n.std if relative else np.ones_like(n.std))
    return Selection(
        above=float(above),
        below=float(below),
        relative=bool(relative),
        hi=hi,
        lo=lo,
        margin=margin.astype(np.float32),
        count=ok.sum(axis=-1).astype(np.int64),
        d_mlp=int(n.peak.shape[1]),
        ids=ids,
        values=values,
    )


def activation_class(value: float, above: float, below: float, margin: float = MARGIN) -> str:
    """The colour class of one activation, as in the seed (Neuroscope, GPT-J).

    Args:
        value: An activation (activation units).
        above: Upper threshold (activation units; a layer's ``Selection.hi``).
        below: Lower threshold (``Selection.lo``).
        margin: Width of the orange band (``Selection.margin``; 0.5 by default).

    Returns:
        ``"high"`` (red) above ``above + margin``; ``"mid"`` (orange) above
        ``above`` up to ``above + margin``; ``"low"`` (grey) from ``below`` to
        ``above``; ``"neg"`` (blue) below ``below``.

    """
    if value > above + margin:
        return "high"
    if value > above:
        return "mid"
    if value < below:
        return "neg"
    return "low"
