"""Analyses that read the model again: ``mechviz analyze`` adds them to a trace.

A trace holds one forward pass. The analyses of issue 10 need the model's
weights too (its token dictionaries, its attention matrices) or a second
look at the pass (direct logit attribution), so they run on a trace and the
model it names, and come back as the trace's optional sections
(:mod:`mechviz.tracing.schema`): ``attribution``, ``dictionaries``, ``similarity`` and
``weights``. Scenes read them from the trace like everything else.

The model must be the one that made the trace: :func:`check_same_weights`
compares the hash of its unembedding (and of its file, when both are known)
with the trace's and refuses in one sentence when they differ.

Like :mod:`mechviz.tracing.record`, this module touches torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mechviz.errors import MechvizError
from mechviz.model.load import LoadedModel, single_token
from mechviz.tracing.record import with_sections
from mechviz.tracing.schema import Trace

DEFAULT_MIDDLE_LAYERS = 3


def model_spec(trace: Trace) -> str | None:
    """The model to load for ``trace``: ``None`` for the default model, else its id or folder.

    A GGUF trace records only the file's name, so it needs ``--model PATH``.
    """
    m = trace.model
    if m.source == "default":
        return None
    if m.source == "gguf":
        raise MechvizError(
            f"This trace was made from the GGUF file {m.id}; give its path with --model."
        )
    return m.id


def check_same_weights(trace: Trace, loaded: LoadedModel) -> None:
    """Refuse (one sentence) when ``loaded`` is not the model whose weights made ``trace``."""
    m = trace.model
    same_file = m.file_sha256 is None or loaded.file_sha256 in (None, m.file_sha256)
    if loaded.unembedding_hash != m.unembedding_hash or not same_file:
        raise MechvizError(
            f"The model {loaded.id} has other weights than the trace records for {m.id} "
            f"(unembedding hash {loaded.unembedding_hash[:12]} vs {m.unembedding_hash[:12]}); "
            "analyse a trace with the model that made it."
        )


@torch.no_grad()
def analyze(
    trace: Trace,
    loaded: LoadedModel,
    *,
    attribution: bool = True,
    versus: str | None = None,
    dictionaries: bool = True,
    middle_layers: int = DEFAULT_MIDDLE_LAYERS,
    similarity: bool = True,
    words: Sequence[str] | None = None,
    weights: bool = True,
) -> Trace:
    """Add the chosen analyses to ``trace`` (made by ``loaded``; checked) and return it.

    Args:
        trace: The trace to analyse.
        loaded: The model that made it (:func:`check_same_weights`).
        attribution: Direct logit attribution of every position's own top-1.
        versus: Also split ``logit(top-1) - logit(versus)``; one token, e.g. ``" London"``.
        dictionaries: Decode every boundary with W_E, W_U and the middle dictionary.
        middle_layers: Layers each token runs through to make the middle dictionary.
        similarity: Cosines of W_E rows for ``words`` and the share of positive products.
        words: Words for ``similarity`` (default
            :data:`mechviz.analyses.dictionaries.DEFAULT_WORDS`).
        weights: sigma / mean(|w|) per layer, the parameter tally, layer 0's head tokens.

    """
    check_same_weights(trace, loaded)
    versus_id = None if versus is None else single_token(loaded, versus, "--versus token")
    if not 1 <= middle_layers <= trace.model.n_layers:
        raise MechvizError(
            f"--middle-layers must be between 1 and the model's {trace.model.n_layers} layers; "
            f"got {middle_layers}."
        )
    sections: dict[str, Any] = {}
    if attribution or dictionaries:
        from mechviz.tracing.record import record

        rec = record(loaded, torch.tensor(trace.tokens.ids, dtype=torch.long))
    if attribution:
        from mechviz.analyses.attribution import attribution_table

        sections["attribution"] = attribution_table(loaded.adapter, rec, versus=versus_id)
    if dictionaries:
        from mechviz.analyses.dictionaries import dictionaries as decode

        sections["dictionaries"] = decode(loaded, rec, middle_layers=middle_layers)
    if similarity:
        from mechviz.analyses.dictionaries import DEFAULT_WORDS
        from mechviz.analyses.dictionaries import similarity as similar

        sections["similarity"] = similar(loaded, DEFAULT_WORDS if words is None else words)
    if weights:
        from mechviz.analyses.weights import weight_stats

        sections["weights"] = weight_stats(loaded)
    return with_sections(trace, loaded, **sections)
