"""The trace's sections: one frozen dataclass per JSON object, and the version table.

:mod:`mechviz.tracing.schema` puts them together as the :class:`~mechviz.tracing.schema.Trace`
(its docstring describes the format); :mod:`mechviz.tracing.validate` checks them. This
module imports neither, so the checks can read the format without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# 6: the optional ``tuned_lens`` (``mechviz trace --tuned-lens``) and
# ``features`` (``mechviz trace --sae``) sections;
# 5: the optional ``lens_mid`` section (every trace), the analyses that
# ``mechviz analyze`` adds (``attribution``, ``dictionaries``, ``similarity``,
# ``weights``), ``interventions`` (a changed run) and ``patching`` (``mechviz
# patch``); 4: the optional ``whole`` and ``neurons`` sections; 3: the optional
# ``heads`` section; 2: large arrays packed (mechviz.tracing.encoding); 1: nested lists only.
# Older versions load with the sections they lack set to ``None``.
SCHEMA_VERSION = 6
READABLE_VERSIONS = (1, 2, 3, 4, 5, 6)
SECTION_SINCE = {  # the version that introduced each optional section
    "heads": 3,
    "whole": 4,
    "neurons": 4,
    "lens_mid": 5,
    "attribution": 5,
    "dictionaries": 5,
    "similarity": 5,
    "weights": 5,
    "interventions": 5,
    "patching": 5,
    "tuned_lens": 6,
    "features": 6,
}
ANALYSES = ("attribution", "dictionaries", "similarity", "weights")  # added by `mechviz analyze`
MADE_BY = {  # sections made by their own commands, not by `mechviz trace` or `analyze`
    "interventions": "make one with `mechviz trace PROMPT --ablate 5.3` (or --freeze, "
    "--ablate-mlp).",
    "patching": "make one with `mechviz patch --clean PROMPT --corrupt PROMPT`.",
    "tuned_lens": "make one with `mechviz trace PROMPT --tuned-lens` (after `mechviz train-lens`).",
    "features": "make one with `mechviz trace PROMPT --sae` (after `mechviz train-sae`).",
}


def _arr(
    *dims: str, dtype: str = "float", optional: bool = False, storage: str | None = None
) -> Any:
    """Declare an array field with its dimension names (validated on load).

    ``storage``: how a large array is packed in the file (:mod:`mechviz.tracing.encoding`):
    ``"float16"`` for pooled views, ``"unit16"`` for attention weights; read
    back as float32 either way.
    """
    meta = {"dims": dims, "dtype": dtype, "optional": optional, "storage": storage}
    return field(metadata=meta)


def boundary_labels(n_layers: int) -> list[str]:
    """``embed``, ``0_mid``, ``0_post``, ``1_mid``, ... (the B residual boundaries)."""
    labels = ["embed"]
    for layer in range(n_layers):
        labels += [f"{layer}_mid", f"{layer}_post"]
    return labels


@dataclass(frozen=True)
class ModelInfo:
    """Provenance: which weights produced every number in the trace."""

    id: str
    source: str  # "default" | "gguf" | "huggingface" | "local"
    file_sha256: str | None
    revision: str | None
    architecture: str
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    d_vocab: int
    dtype: str
    attn_implementation: str
    tied_embeddings: bool
    final_logit_softcap: float | None
    unembedding_hash: str


@dataclass(frozen=True)
class Tokens:
    ids: np.ndarray = _arr("P", dtype="int")
    text: list[str] = field(metadata={})  # [P] display text
    offsets: np.ndarray = _arr("P", "2", dtype="int")  # [P, 2] char start, end


@dataclass(frozen=True)
class Resid:
    labels: list[str] = field(metadata={})  # [B]
    norm: np.ndarray = _arr("B", "P")
    pooled: np.ndarray = _arr("B", "P", "R", storage="float16")
    sample_dims: np.ndarray = _arr("S", dtype="int")
    sample: np.ndarray = _arr("B", "P", "S")
    full: np.ndarray | None = _arr("B", "P", "D", optional=True)


@dataclass(frozen=True)
class Blocks:
    attn_out_norm: np.ndarray = _arr("L", "P")
    mlp_out_norm: np.ndarray = _arr("L", "P")


@dataclass(frozen=True)
class Attention:
    pattern: np.ndarray = _arr("L", "H", "P", "P", storage="unit16")


@dataclass(frozen=True)
class Mlp:
    top_neurons: np.ndarray = _arr("L", "N", dtype="int")
    top_values: np.ndarray = _arr("L", "N", "P")
    pooled: np.ndarray = _arr("L", "P", "R", storage="float16")


@dataclass(frozen=True)
class Embedding:
    W_E_sample: np.ndarray = _arr("P", "S")
    W_E_norm: np.ndarray = _arr("P")
    cosine: np.ndarray = _arr("P", "P")


@dataclass(frozen=True)
class Lens:
    labels: list[str] = field(metadata={})  # [Y]
    top_ids: np.ndarray = _arr("Y", "P", "K", dtype="int")
    top_probs: np.ndarray = _arr("Y", "P", "K")
    entropy: np.ndarray = _arr("Y", "P")
    kl_to_final: np.ndarray = _arr("Y", "P")
    final_token_rank: np.ndarray = _arr("Y", "P", dtype="int")
    final_token_prob: np.ndarray = _arr("Y", "P")


@dataclass(frozen=True)
class Output:
    top_ids: np.ndarray = _arr("P", "K", dtype="int")
    top_probs: np.ndarray = _arr("P", "K")
    entropy: np.ndarray = _arr("P")


@dataclass(frozen=True)
class HeadEffects:
    """Each attention head's direct effect on the logit of the model's answer.

    Head ``h`` of layer ``l`` writes ``z_h @ W_O[h]`` at ``position`` (its slice
    of the attention output before ``W_O``, times its rows of ``W_O``). Its
    direct effect is that vector through the final norm with the norm's scale
    frozen at the real final residual at ``position`` (LayerNorm's centring
    kept, its bias left out; Gemma 2/3's norm after ``W_O`` frozen likewise),
    dotted with ``W_U``'s row of ``answer``. Summed over heads, plus ``bias``,
    it is what layer ``l``'s attention adds to the answer's logit.
    """

    answer: int  # token id: the model's own top-1 next token at ``position``
    position: int  # the position read: the last, P - 1
    direct: np.ndarray = _arr("L", "H")  # logits, before any final soft cap
    bias: np.ndarray = _arr("L")  # W_O's bias read the same way; 0 where W_O has none


@dataclass(frozen=True)
class Whole:
    """Rows of the whole-model picture (every internal state of one forward pass).

    Each token's vector is max-|x| pooled (:func:`mechviz.tracing.record.pool`, the
    sign kept) into ``C`` (residual) or ``M`` (MLP) columns: ``ceil(width / P)``
    per token, at most the vector's length, so a row of P tokens has about
    ``width`` values, one per pixel of a ``width``-pixel picture.
    """

    width: int  # picture width in px the rows were pooled for (``--width``)
    resid: np.ndarray = _arr("Q", "P", "C", storage="float16")  # embed, then each {l}_post
    mlp: np.ndarray = _arr("L", "P", "M", storage="float16")  # each layer's neuron activations


@dataclass(frozen=True)
class Neurons:
    """The Neuroscope selection: neurons above ``above`` or below ``below`` on some token.

    A neuron of layer ``l`` is selected when its activation exceeds ``hi[l]``
    at one position at least, or falls below ``lo[l]``; ``hi = above`` and
    ``lo = below``, or with ``relative`` ``hi = above * std[l]`` and
    ``lo = below * std[l]`` (float32, :func:`mechviz.tracing.neurons.thresholds`).
    ``count`` is that rule applied to ``peak`` as stored, so any other
    thresholds re-count exactly from ``peak`` (:func:`mechviz.tracing.neurons.select`).
    """

    above: float  # upper threshold used at trace time (default 3.0)
    below: float  # lower threshold (default 0.0)
    relative: bool  # thresholds in units of the layer's standard deviation
    std: np.ndarray = _arr("L")  # population std of each layer's activations, positions x neurons
    peak: np.ndarray = _arr("L", "F", "2", storage="float16")  # [L, d_mlp, (max, min) over P]
    count: np.ndarray = _arr("L", dtype="int")  # neurons selected per layer, of d_mlp
    ids: np.ndarray = _arr("L", "J", dtype="int")  # stored selected neurons, most extreme first
    values: np.ndarray = _arr("L", "J", "P")  # their activation at every position (0 where -1)


@dataclass(frozen=True)
class MidLens:
    """The logit lens at ``{l}_mid`` (after attention, before the MLP): ``lens`` between rows.

    Same fields and meaning as :class:`Lens`, one row per layer. With ``lens``
    it reads the stream at every boundary, so a viewer sees whether attention
    or the MLP of a layer moved the prediction.
    """

    labels: list[str] = field(metadata={})  # [L] '{l}_mid'
    top_ids: np.ndarray = _arr("L", "P", "K", dtype="int")
    top_probs: np.ndarray = _arr("L", "P", "K")
    entropy: np.ndarray = _arr("L", "P")
    kl_to_final: np.ndarray = _arr("L", "P")
    final_token_rank: np.ndarray = _arr("L", "P", dtype="int")
    final_token_prob: np.ndarray = _arr("L", "P")


@dataclass(frozen=True)
class AttributionTable:
    """Direct logit attribution of every position's own prediction (``mechviz analyze``).

    Row ``t = 0`` splits the logit of ``token[p]``, the model's top-1 next token
    at ``p``; with ``versus`` row ``t = 1`` splits ``logit(token[p]) -
    logit(versus)``. ``parts[t, p]`` follows the boundaries (dimension ``B``):
    ``embed``, then ``{l}_attn`` and ``{l}_mlp`` for each layer, each what that
    part wrote into the stream, read through the final norm with its scale
    frozen at the real final residual at ``p`` and dotted with ``W_U``. So

        parts[t, p].sum() + bias[t, p] == logit[t, p]
        heads[t, p, l].sum() + attn_bias[t, p, l] == parts[t, p, 1 + 2 l]

    ``logit`` is before any final soft cap; ``output`` is the model's own
    (after the cap). All in logits.
    """

    versus: int | None  # token id of the second token, or None
    token: np.ndarray = _arr("P", dtype="int")  # each position's top-1 (output.top_ids[:, 0])
    parts: np.ndarray = _arr("T", "P", "B")
    heads: np.ndarray = _arr("T", "P", "L", "H")
    attn_bias: np.ndarray = _arr("T", "P", "L")  # W_O's bias; 0 where it has none
    bias: np.ndarray = _arr("T", "P")  # the final norm's bias read by W_U, plus W_U's bias
    logit: np.ndarray = _arr("T", "P")  # the real logit (difference) before any soft cap
    output: np.ndarray = _arr("T", "P")  # the model's output logit (difference)


@dataclass(frozen=True)
class Dictionaries:
    """The stream at every layer boundary read with the model's own token dictionaries.

    For the state ``v`` at boundary ``y`` (``lens.labels``) and position ``p``
    and every row ``w`` of a dictionary, the normalised amplitude is ``A =
    <v|w> / sqrt(<v|v><w|w>)`` (a cosine); the ``E`` largest are kept with
    their token ids, largest first. ``input`` is ``W_E``, ``output`` is
    ``W_U`` (the same matrix when ``model.tied_embeddings``). ``middle`` is the
    seed's approximate middle dictionary: each unique token of the prompt (but
    a beginning-of-text token) run alone after ``middle_prefix``, a dummy start
    token as the seed's ``<s>`` (:func:`mechviz.analyses.dictionaries.start_prefix`),
    through the first ``middle_layers`` layers, its ``resid_post`` there as
    its entry.
    """

    middle_layers: int
    middle_prefix: list[int]  # the start token(s) each middle-dictionary prompt begins with
    input_ids: np.ndarray = _arr("Y", "P", "E", dtype="int")
    input_amp: np.ndarray = _arr("Y", "P", "E")
    output_ids: np.ndarray = _arr("Y", "P", "E", dtype="int")
    output_amp: np.ndarray = _arr("Y", "P", "E")
    middle_ids: np.ndarray = _arr("Y", "P", "U", dtype="int")
    middle_amp: np.ndarray = _arr("Y", "P", "U")


@dataclass(frozen=True)
class Similarity:
    """How the input dictionary ``W_E`` relates words (seed 004, section 2.A).

    ``cosine[i, j]`` is the cosine of ``W_E`` rows ``ids[i]`` and ``ids[j]``.
    ``positive_share`` is the share of positive inner products ``<W_E[a]|W_E[b]>``
    over all pairs ``a < b`` of ``sample`` token ids drawn without replacement
    with ``numpy.random.default_rng(seed)`` (81% for Llama-2 in the seed).
    """

    words: list[str]  # [W] as given, each one token
    sample: int
    seed: int
    positive_share: float
    ids: np.ndarray = _arr("W", dtype="int")
    cosine: np.ndarray = _arr("W", "W")


@dataclass(frozen=True)
class Weights:
    """Statistics of the weights (seed 004, sections 1, 3 and 4).

    ``ratio_model[l, m]`` is sigma / mean(|w|) of matrix ``m`` of
    ``ratio_names`` (W_Q, W_K, W_V, W_O) of layer ``l``, averaged over its
    vectors that run along the model dimension (length ``d_model``);
    ``ratio_heads`` over its vectors that cut across the heads (length
    ``n_heads * d_head``; ``n_kv_heads * d_head`` for W_K and W_V under
    grouped-query attention). sigma is the population standard deviation
    around the vector's own mean (:func:`mechviz.analyses.weights.ratio`). A zero-centred
    Gaussian gives sqrt(pi / 2) = 1.2533.

    ``tally_counts`` counts the parameters of each component of
    ``tally_names``; they add up to ``total``, the model's parameter count
    (a tied W_E/W_U counted once).

    ``query_ids[h]``: the tokens whose embeddings, through layer 0's input
    norm, give head ``h`` of layer 0 its largest queries (``|W_Q[h]^T n(e)|``,
    position encoding left out), largest first; ``key_ids`` likewise with
    the head's W_K (shared within a group under grouped-query attention).
    """

    ratio_names: list[str]  # [4] 'W_Q', 'W_K', 'W_V', 'W_O'
    tally_names: list[str]  # [G]
    total: int
    ratio_model: np.ndarray = _arr("L", "4")
    ratio_heads: np.ndarray = _arr("L", "4")
    tally_counts: np.ndarray = _arr("G", dtype="int")
    query_ids: np.ndarray = _arr("H", "Z", dtype="int")
    query_score: np.ndarray = _arr("H", "Z")
    key_ids: np.ndarray = _arr("H", "Z", dtype="int")
    key_score: np.ndarray = _arr("H", "Z")


@dataclass(frozen=True)
class Interventions:
    """What was changed in this forward pass (:mod:`mechviz.interventions.run`), and the run before.

    Heads are ``"layer.head"``. Ablated heads write nothing (``mode`` zero) or
    their mean over positions (mean); frozen heads use the attention pattern
    they have on ``freeze_from``, a prompt of the same length in tokens; an
    ablated MLP adds nothing (or its mean over positions). Every other
    section of the trace is the changed run; ``before_*`` keep the last
    position's logit lens and output of the same prompt without changes.
    """

    mode: str  # "zero" | "mean"
    ablate: list[str]  # heads, "layer.head", sorted
    ablate_mlp: list[int]  # layers
    freeze: list[str]  # heads, "layer.head", sorted
    freeze_from: str | None  # the prompt the frozen patterns come from
    before_lens_ids: np.ndarray = _arr("Y", "K", dtype="int")
    before_lens_probs: np.ndarray = _arr("Y", "K")
    before_output_ids: np.ndarray = _arr("K", dtype="int")
    before_output_probs: np.ndarray = _arr("K")


@dataclass(frozen=True)
class Patching:
    """Activation patching of this trace's (clean) run into ``corrupt_prompt``'s run.

    Each value is the logit difference ``answer - wrong`` at the last position
    of a corrupt run with one site patched from the clean run, normalised so
    that the clean run gives 1 and the corrupt run 0: ``(d - corrupt_diff) /
    (clean_diff - corrupt_diff)``. Sites: ``resid[y, p]`` the residual at layer
    boundary ``y`` (``lens.labels``) and position ``p``; ``heads[l, h]`` a head's
    output at every position; ``mlp[l]`` an MLP's output at every position.
    """

    corrupt_prompt: str
    answer: int
    wrong: int
    clean_diff: float
    corrupt_diff: float
    corrupt_ids: np.ndarray = _arr("P", dtype="int")
    resid: np.ndarray = _arr("Y", "P")
    heads: np.ndarray = _arr("L", "H")
    mlp: np.ndarray = _arr("L")


@dataclass(frozen=True)
class TunedLensReadout:
    """The tuned lens (Belrose et al. 2023) at the rows of ``lens``, beside the logit lens.

    Row ``y`` reads the state at ``lens.labels[y]`` through that boundary's
    trained affine translator ``h + A h + b``, then the final norm, the
    unembedding and the model's output transform, as the logit lens reads
    ``h`` itself. The last row has no translator (it is the model's output), so
    there both lenses agree. The translators come from ``mechviz train-lens``
    (:mod:`mechviz.learned.tuned_lens`), identified by ``lens_hash`` and trained on
    ``trained_tokens`` tokens of ``corpus``. The ``eval_*`` rows are their
    held-out figures per row: cross-entropy against the true next token in bits
    per byte, and ``KL(final || lens)`` in bits, for both lenses.
    """

    lens_hash: str  # sha256 of the translators' weights
    trained_tokens: int
    corpus: list[str]  # each source as "name version (licence)"
    eval_tokens: int  # held-out tokens behind the eval_* figures
    eval_bpb_model: float  # the model's own bits per byte on them
    labels: list[str] = field(metadata={})  # [Y], as ``lens.labels``
    top_ids: np.ndarray = _arr("Y", "P", "K", dtype="int")
    top_probs: np.ndarray = _arr("Y", "P", "K")
    entropy: np.ndarray = _arr("Y", "P")
    kl_to_final: np.ndarray = _arr("Y", "P")
    final_token_rank: np.ndarray = _arr("Y", "P", dtype="int")
    final_token_prob: np.ndarray = _arr("Y", "P")
    eval_bpb_logit: np.ndarray = _arr("Y")
    eval_bpb_tuned: np.ndarray = _arr("Y")
    eval_kl_logit: np.ndarray = _arr("Y")
    eval_kl_tuned: np.ndarray = _arr("Y")


@dataclass(frozen=True)
class Features:
    """Sparse-autoencoder features of the residual stream after block ``layer`` (``{layer}_post``).

    A TopK sparse autoencoder (:mod:`mechviz.learned.sae`, ``mechviz train-sae``)
    writes the state ``x`` at each position as ``sum_a acts[p, a] *
    W_dec[ids[p, a]] + b_dec + error``, with unit-length decoder rows, so an
    activation is the length of its feature's vector, in the residual's units.
    ``error_norm`` is the norm of what the features leave out (the "dark
    matter"), ``resid_norm`` that of ``x``. ``typical`` is 0 where ``x``'s norm
    is unlike the training tokens' (the attention sink at position 0, which
    training leaves out). The ``card_*`` fields are the dashboards of the most
    active features of every position (their top contexts in the training text,
    the activating token at ``card_marked``, and the tokens each promotes
    through ``W_U``). ``eval_*`` are the SAE's held-out figures: the fraction of
    variance explained, mean active features, the share of features that never
    fired, and the model's next-token loss in nats clean, with this layer's
    residual replaced by its reconstruction, and by zeros.
    """

    layer: int
    sae_hash: str  # sha256 of the SAE's weights
    n_features: int
    k: int  # active features per position
    trained_tokens: int
    corpus: list[str]  # each source as "name version (licence)"
    bias_norm: float  # norm of b_dec, the part every position shares
    eval_fve: float
    eval_l0: float
    eval_dead_share: float
    eval_ce_clean: float
    eval_ce_sae: float
    eval_ce_zero: float
    ids: np.ndarray = _arr("P", "A", dtype="int")  # most active first
    acts: np.ndarray = _arr("P", "A")  # model units; 0 where a feature is not active
    error_norm: np.ndarray = _arr("P")
    resid_norm: np.ndarray = _arr("P")
    typical: np.ndarray = _arr("P", dtype="int")  # 1, or 0 for an untypical norm
    card_ids: np.ndarray = _arr("X", dtype="int")  # feature ids, ascending
    card_descriptions: list[str] = field(metadata={})  # [X] one line each
    card_frequency: np.ndarray = _arr("X")  # share of training tokens where it fires
    card_contexts: np.ndarray = _arr("X", "I", "O", dtype="int")  # token ids, -1 none
    card_marked: np.ndarray = _arr("X", "I", dtype="int")  # index of the activating token
    card_acts: np.ndarray = _arr("X", "I")  # activation there; 0: no such context
    card_promoted: np.ndarray = _arr("X", "V", dtype="int")  # token ids, most promoted first


SECTIONS: dict[str, type] = {
    "tokens": Tokens,
    "resid": Resid,
    "blocks": Blocks,
    "attention": Attention,
    "mlp": Mlp,
    "embedding": Embedding,
    "lens": Lens,
    "output": Output,
    "heads": HeadEffects,
    "whole": Whole,
    "neurons": Neurons,
    "lens_mid": MidLens,
    "attribution": AttributionTable,
    "dictionaries": Dictionaries,
    "similarity": Similarity,
    "weights": Weights,
    "interventions": Interventions,
    "patching": Patching,
    "tuned_lens": TunedLensReadout,
    "features": Features,
}
OPTIONAL_SECTIONS = frozenset(SECTION_SINCE)  # absent from older traces (or left out)
