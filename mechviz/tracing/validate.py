"""Validation of a trace: structure and exact types, shapes, then meaning.

Three layers, each with one-sentence messages that name the field:

1. :func:`check_structure`: the JSON document against :func:`json_schema`
   (``jsonschema``, Draft 2020-12; published as ``docs/trace.schema.json``).
   Types are exact: ``true`` is not a number and ``7.0`` is not an integer.
2. :func:`check_shapes`: every array against the dimension glossary of
   :mod:`mechviz.tracing.schema`.
3. :func:`check_meaning`: what the numbers mean: probabilities in [0, 1],
   top-k lists sorted and distinct, attention rows summing to 1 and causal,
   ids and indices in range, character offsets inside the prompt, head effects
   finite and read on the model's own answer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from mechviz.errors import MechvizError
from mechviz.tracing import sections

if TYPE_CHECKING:
    from mechviz.tracing.schema import Trace

ATTENTION_SUM_TOL = 1e-3  # rows sum to 1 within this (storage moves a sum by < 2**-16)
# A bfloat16 model rounds each weight itself (unit roundoff 2**-8), so its rows
# may miss 1 by up to 2**-8 before mechviz stores anything.
ATTENTION_SUM_TOL_BY_DTYPE = {"bfloat16": 2**-8 + 1e-4}
CAUSAL_TOL = 1e-6  # weights above the diagonal are exactly 0 in eager attention
STAT_TOL = 1e-3  # entropies and KL computed in float32 may miss their bounds by this
COSINE_TOL = 1e-4

# --- 1. structure and exact types ---------------------------------------------------------

_TOKEN_ID = re.compile(r"0|[1-9][0-9]{0,9}")
_SECTION_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "list[str]": {"type": "array", "items": {"type": "string"}},
    "int": {"type": "integer", "minimum": 0},
    "int | None": {"type": ["integer", "null"], "minimum": 0},
    "list[int]": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    "str": {"type": "string"},
    "str | None": {"type": ["string", "null"]},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
}
_MODEL_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": 1},
    "str": {"type": "string"},
    "bool": {"type": "boolean"},
    "str | None": {"type": ["string", "null"]},
    "float | None": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0}]},
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a trace file, from the dataclasses of :mod:`mechviz.tracing.sections`.

    Arrays are declared as nested lists or packed objects; their elements,
    shapes and ranges are checked by :mod:`mechviz.tracing.encoding` and the other
    layers, which a JSON Schema cannot express (and would be slow to walk).
    """
    model = {
        f.name: dict(_MODEL_FIELD_SCHEMAS[str(f.type)])
        for f in dataclasses.fields(sections.ModelInfo)
    }
    objects = {}
    for name, kind in sections.SECTIONS.items():
        props: dict[str, Any] = {}
        required = []
        for f in dataclasses.fields(kind):
            dims = f.metadata.get("dims")
            if dims is None:
                props[f.name] = dict(_SECTION_FIELD_SCHEMAS[str(f.type)])
            else:
                what = "integers" if f.metadata["dtype"] == "int" else "numbers"
                shape = ", ".join(dims)
                props[f.name] = {
                    "type": ["array", "object", "null"]
                    if f.metadata["optional"]
                    else ["array", "object"],
                    "description": f"[{shape}] {what}: a nested list or a packed object "
                    "(see docs/trace-format.md)",
                }
            if not f.metadata.get("optional"):
                required.append(f.name)
        objects[name] = _object(props, required)
    top = {
        "schema_version": {"type": "integer", "minimum": 1},
        "mechviz_version": {"type": "string"},
        "prompt": {"type": "string"},
        "vocab": {
            "type": "object",
            "propertyNames": {"pattern": f"^({_TOKEN_ID.pattern})$"},
            "additionalProperties": {"type": "string"},
        },
        "model": _object(model, list(model)),
        **objects,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mechviz trace",
        **_object(top, [k for k in top if k not in sections.OPTIONAL_SECTIONS]),
    }


def _object(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    base = jsonschema.Draft202012Validator
    # Exact types: a float is never an integer (JSON Schema lets 7.0 pass).
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _, x: isinstance(x, int) and not isinstance(x, bool)
    )
    strict = jsonschema.validators.extend(base, type_checker=checker)
    return strict(json_schema())


def check_structure(data: Any) -> None:
    """Check a decoded JSON document against :func:`json_schema`; one sentence on failure."""
    import jsonschema

    vocab = data.get("vocab") if isinstance(data, dict) else None
    if isinstance(vocab, dict):
        # The same rules as the schema's, without a validator object per entry
        # (jsonschema spends ~20 us on each; a trace can mention 20,000 ids).
        _check_vocab(vocab)
        data = {**data, "vocab": {}}
    error = jsonschema.exceptions.best_match(_validator().iter_errors(data))
    if error is not None:
        raise MechvizError(_sentence(error))


def _check_vocab(vocab: dict[str, Any]) -> None:
    for key, text in vocab.items():
        if not _TOKEN_ID.fullmatch(key):
            raise MechvizError(
                f"Field 'vocab' must map token ids to text; got key {json_text(key)}."
            )
        if type(text) is not str:
            raise MechvizError(f"Field 'vocab.{key}' must be a string; got {json_text(text)}.")


_ARTICLES = {
    "integer": "an integer",
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _sentence(error: Any) -> str:
    parts = list(error.absolute_path)
    items = ""
    while parts and isinstance(parts[-1], int):
        items = f"[{parts.pop()}]" + items
    path = ".".join(str(p) for p in parts)
    kind = error.validator
    if items and kind == "type":
        return (
            f"Field '{path}' must hold {_ARTICLES[error.validator_value]} at every index; "
            f"item {items} is {json_text(error.instance)}."
        )
    path += items
    if kind == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return f"The trace is missing field '{path + '.' if path else ''}{missing}'."
    if kind == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = f"Field '{path}'" if path else "The trace"
        return (
            f"{where} has an unknown key {extra[0]!r} "
            f"(not part of schema version {sections.SCHEMA_VERSION})."
        )
    if kind == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        if wanted == ["array", "object"] or wanted == ["array", "object", "null"]:
            text = "an array (a nested list or a packed object)"
        else:
            text = " or ".join(_ARTICLES[w] for w in wanted)
        return f"Field '{path}' must be {text}; got {json_text(error.instance)}."
    if kind in ("propertyNames", "pattern"):
        return f"Field '{path}' must map token ids to text; got key {json_text(error.instance)}."
    if kind in ("minimum", "exclusiveMinimum"):
        return (
            f"Field '{path}' must be {'above' if 'exclusive' in kind else 'at least'} "
            f"{error.validator_value}; got {json_text(error.instance)}."
        )
    return f"Field '{path}' is invalid: {error.message}."


def json_text(value: Any, limit: int = 40) -> str:
    """A short JSON rendering of a value for an error message."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- 2. shapes ---------------------------------------------------------------------------


def dimension_sizes(trace: Trace) -> dict[str, int]:
    """The size of every dimension symbol of the glossary in this trace."""
    m = trace.model
    return {
        "L": m.n_layers,
        "H": m.n_heads,
        "P": len(trace.tokens.text),
        "B": 2 * m.n_layers + 1,
        "Y": m.n_layers + 1,
        "D": m.d_model,
        "2": 2,
        "K": trace.lens.top_ids.shape[-1] if trace.lens.top_ids.ndim == 3 else -1,
        "R": trace.resid.pooled.shape[-1] if trace.resid.pooled.ndim == 3 else -1,
        "S": trace.resid.sample_dims.shape[0] if trace.resid.sample_dims.ndim == 1 else -1,
        "N": trace.mlp.top_neurons.shape[-1] if trace.mlp.top_neurons.ndim == 2 else -1,
        "Q": m.n_layers + 1,
        "F": m.d_mlp,
        **_whole_sizes(trace),
        "J": _last_size(trace.neurons.ids, 2) if trace.neurons is not None else -1,
        "4": 4,
        **_analysis_sizes(trace),
        **_feature_sizes(trace),
    }


def _feature_sizes(trace: Trace) -> dict[str, int]:
    """A, X, I, O, V: sizes the ``features`` section chooses, read from its own arrays."""
    f = trace.features
    if f is None:
        return {"A": -1, "X": -1, "I": -1, "O": -1, "V": -1}
    return {
        "A": _last_size(f.ids, 2),
        "X": len(f.card_descriptions),
        "I": f.card_contexts.shape[1] if f.card_contexts.ndim == 3 else -1,
        "O": _last_size(f.card_contexts, 3),
        "V": _last_size(f.card_promoted, 2),
    }


def _analysis_sizes(trace: Trace) -> dict[str, int]:
    """T, E, U, W, G, Z: sizes the analysis sections choose, read from their own arrays."""
    a, d, s, w = trace.attribution, trace.dictionaries, trace.similarity, trace.weights
    return {
        "T": 1 if a is None or a.versus is None else 2,
        "E": _last_size(d.input_ids, 3) if d is not None else -1,
        "U": _last_size(d.middle_ids, 3) if d is not None else -1,
        "W": len(s.words) if s is not None else -1,
        "G": len(w.tally_names) if w is not None else -1,
        "Z": _last_size(w.query_ids, 2) if w is not None else -1,
    }


def _last_size(value: np.ndarray, ndim: int) -> int:
    return value.shape[-1] if value.ndim == ndim else -1


def _whole_sizes(trace: Trace) -> dict[str, int]:
    """C and M as the ``width`` option makes them: min(vector length, ceil(width / P))."""
    if trace.whole is None:
        return {"C": -1, "M": -1}
    per_token = -(-max(trace.whole.width, 1) // max(len(trace.tokens.text), 1))
    return {"C": min(trace.model.d_model, per_token), "M": min(trace.model.d_mlp, per_token)}


def check_shapes(trace: Trace) -> None:
    """Check every array against the dimensions the glossary gives it."""
    sizes = dimension_sizes(trace)
    if trace.whole is not None and trace.whole.width < 1:
        raise MechvizError(
            f"Field 'whole.width' holds {trace.whole.width}; a picture is at least 1 pixel wide."
        )
    if sizes["P"] == 0:
        raise MechvizError("Field 'tokens.text' is empty: a trace needs at least one token.")
    if len(trace.resid.labels) != sizes["B"]:
        raise MechvizError(
            f"Field 'resid.labels' has {len(trace.resid.labels)} entries, expected "
            f"B = 2 * n_layers + 1 = {sizes['B']}."
        )
    for symbol, field, least, most in [
        ("K", "lens.top_ids", 1, trace.model.d_vocab),
        ("R", "resid.pooled", 1, None),
        ("S", "resid.sample_dims", 1, trace.model.d_model),
        ("N", "mlp.top_neurons", 1, trace.model.d_mlp),
    ]:
        if sizes[symbol] < least or (most is not None and sizes[symbol] > most):
            bound = f"between {least} and {most}" if most is not None else f"at least {least}"
            raise MechvizError(
                f"Field '{field}' has {symbol} = {sizes[symbol]}; it must be {bound}."
            )
    for name in sections.SECTIONS:
        section = getattr(trace, name)
        if section is None:
            continue  # an optional section this trace lacks (checked by the JSON Schema)
        for f in dataclasses.fields(section):
            dims = f.metadata.get("dims")
            value = getattr(section, f.name)
            if dims is None or value is None:
                continue
            expected = tuple(sizes[d] for d in dims)
            want = ", ".join(f"{d}={sizes[d]}" for d in dims)
            if value.ndim != len(dims):
                raise MechvizError(
                    f"Field '{name}.{f.name}' has {value.ndim} dimensions, expected "
                    f"{len(dims)} ({want})."
                )
            if value.shape != expected:
                raise MechvizError(
                    f"Field '{name}.{f.name}' has shape {tuple(value.shape)}, expected ({want})."
                )
    if trace.neurons is not None and not 1 <= sizes["J"] <= trace.model.d_mlp:
        raise MechvizError(
            f"Field 'neurons.ids' has J = {sizes['J']}; it must be between 1 and "
            f"{trace.model.d_mlp}."
        )
    boundary = sections.boundary_labels(trace.model.n_layers)
    if trace.resid.labels != boundary:
        raise MechvizError("Field 'resid.labels' must be 'embed', then '{l}_mid', '{l}_post'.")
    if trace.lens.labels != boundary[0::2]:
        raise MechvizError("Field 'lens.labels' must be 'embed' then '{l}_post' for each layer.")
    if trace.lens_mid is not None and trace.lens_mid.labels != boundary[1::2]:
        raise MechvizError("Field 'lens_mid.labels' must be '{l}_mid' for each layer.")
    for symbol, field, least in [("E", "dictionaries.input_ids", 1), ("Z", "weights.query_ids", 1)]:
        if sizes[symbol] != -1 and sizes[symbol] < least:
            raise MechvizError(f"Field '{field}' has {symbol} = 0; it must keep at least 1.")
    if trace.weights is not None and len(trace.weights.ratio_names) != 4:
        raise MechvizError("Field 'weights.ratio_names' must name 4 matrices (W_Q, W_K, W_V, W_O).")


# --- 3. meaning -----------------------------------------------------------------------------


def check_meaning(trace: Trace) -> None:
    """Ranges, sums and orderings that every honest trace satisfies."""
    m = trace.model
    ids_rule = f"token ids lie in [0, d_vocab) = [0, {m.d_vocab})"
    for field in ("tokens.ids", "output.top_ids"):
        _in_range(field, _get(trace, field), 0, m.d_vocab - 1, ids_rule)
    _check_lens(trace, "lens", ids_rule)
    for key in trace.vocab:
        if not 0 <= key < m.d_vocab:
            raise MechvizError(f"Field 'vocab' has token id {key}; {ids_rule}.")
    missing = sorted(set(_mentioned_ids(trace).tolist()) - set(trace.vocab))
    if missing:
        raise MechvizError(f"Field 'vocab' has no text for token id {missing[0]}.")
    _in_range(
        "mlp.top_neurons",
        trace.mlp.top_neurons,
        0,
        m.d_mlp - 1,
        f"neuron indices lie in [0, d_mlp) = [0, {m.d_mlp})",
    )
    _in_range(
        "resid.sample_dims",
        trace.resid.sample_dims,
        0,
        m.d_model - 1,
        f"dimensions lie in [0, d_model) = [0, {m.d_model})",
    )
    for field in ("resid.sample_dims", "mlp.top_neurons", "output.top_ids"):
        _distinct(field, _get(trace, field))
    _check_offsets(trace)
    _check_attention(
        trace.attention.pattern, ATTENTION_SUM_TOL_BY_DTYPE.get(m.dtype, ATTENTION_SUM_TOL)
    )
    _in_range("output.top_probs", trace.output.top_probs, 0.0, 1.0, "probabilities lie in [0, 1]")
    _sorted("output.top_probs", trace.output.top_probs)
    max_entropy = math.log(m.d_vocab) + STAT_TOL
    _in_range(
        "output.entropy",
        trace.output.entropy,
        -STAT_TOL,
        max_entropy,
        f"entropies lie in [0, ln d_vocab] = [0, {max_entropy - STAT_TOL:.3f}] nats",
    )
    for field in (
        "resid.norm",
        "blocks.attn_out_norm",
        "blocks.mlp_out_norm",
        "embedding.W_E_norm",
    ):
        _in_range(field, _get(trace, field), 0.0, math.inf, "a norm is never negative")
    _in_range(
        "embedding.cosine",
        trace.embedding.cosine,
        -1 - COSINE_TOL,
        1 + COSINE_TOL,
        "cosine similarities lie in [-1, 1]",
    )
    if trace.heads is not None:
        _check_heads(trace)
    if trace.whole is not None:
        for field in ("whole.resid", "whole.mlp"):
            _finite(field, _get(trace, field), "pooled activations are finite")
    if trace.neurons is not None:
        _check_neurons(trace)
    if trace.lens_mid is not None:
        _check_lens(trace, "lens_mid", f"token ids lie in [0, {trace.model.d_vocab})")
    if trace.attribution is not None:
        _check_attribution(trace)
    if trace.dictionaries is not None:
        _check_dictionaries(trace)
    if trace.similarity is not None:
        _check_similarity(trace)
    if trace.weights is not None:
        _check_weights(trace)
    if trace.interventions is not None:
        _check_interventions(trace)
    if trace.patching is not None:
        _check_patching(trace)
    if trace.tuned_lens is not None:
        _check_tuned_lens(trace)
    if trace.features is not None:
        _check_features(trace)


def _check_interventions(trace: Trace) -> None:
    """Heads and layers in range and sorted; a mode; the run before like ``lens``/``output``."""
    from mechviz.tracing.specs import MODES, parse_heads

    iv, m = trace.interventions, trace.model
    if iv.mode not in MODES:
        raise MechvizError(
            f"Field 'interventions.mode' holds {iv.mode!r}; it is one of {', '.join(MODES)}."
        )
    for name in ("ablate", "freeze"):
        specs = getattr(iv, name)
        try:
            heads = parse_heads(specs, m.n_layers, m.n_heads, flag=f"interventions.{name}")
        except MechvizError as exc:
            raise MechvizError(f"Field {exc}") from None
        if [f"{layer}.{head}" for layer, head in heads] != list(specs):
            raise MechvizError(
                f"Field 'interventions.{name}' must list distinct heads as 'layer.head', sorted."
            )
    if any(not 0 <= layer < m.n_layers for layer in iv.ablate_mlp) or iv.ablate_mlp != sorted(
        set(iv.ablate_mlp)
    ):
        raise MechvizError(
            f"Field 'interventions.ablate_mlp' must list distinct layers in [0, {m.n_layers}), "
            "sorted."
        )
    if bool(iv.freeze) != (iv.freeze_from is not None):
        raise MechvizError(
            "Fields 'interventions.freeze' and 'interventions.freeze_from' go together: frozen "
            "heads need the prompt their patterns come from."
        )
    if not (iv.ablate or iv.ablate_mlp or iv.freeze):
        raise MechvizError(
            "Field 'interventions' names no head or MLP; a run without changes has no "
            "'interventions' section."
        )
    V = m.d_vocab
    for field in ("before_lens_ids", "before_output_ids"):
        _in_range(
            f"interventions.{field}", getattr(iv, field), 0, V - 1, f"token ids lie in [0, {V})"
        )
        _distinct(f"interventions.{field}", getattr(iv, field))
    for field in ("before_lens_probs", "before_output_probs"):
        values = getattr(iv, field)
        _in_range(f"interventions.{field}", values, 0.0, 1.0, "probabilities lie in [0, 1]")
        _sorted(f"interventions.{field}", values)


PATCH_TOL = 1e-3  # the restoring sites give 1 (or 0) up to float32 rounding of the differences


def _check_patching(trace: Trace) -> None:
    """Answer and wrong token distinct; the clean run restored by its own final residual."""
    pt, V = trace.patching, trace.model.d_vocab
    for name in ("answer", "wrong"):
        value = getattr(pt, name)
        if not 0 <= value < V:
            raise MechvizError(
                f"Field 'patching.{name}' holds token id {value}; token ids lie in [0, {V})."
            )
    if pt.answer == pt.wrong:
        raise MechvizError("Fields 'patching.answer' and 'patching.wrong' are the same token.")
    _in_range("patching.corrupt_ids", pt.corrupt_ids, 0, V - 1, f"token ids lie in [0, {V})")
    for name in ("clean_diff", "corrupt_diff"):
        if not math.isfinite(getattr(pt, name)):
            raise MechvizError(f"Field 'patching.{name}' must be a finite logit difference.")
    if abs(pt.clean_diff - pt.corrupt_diff) < 1e-6:
        raise MechvizError(
            "Fields 'patching.clean_diff' and 'patching.corrupt_diff' are equal; patching "
            "normalises by their difference."
        )
    for name in ("resid", "heads", "mlp"):
        _finite(f"patching.{name}", getattr(pt, name), "normalised logit differences are finite")
    if abs(float(pt.resid[-1, -1]) - 1.0) > PATCH_TOL:
        raise MechvizError(
            f"Field 'patching.resid' holds {float(pt.resid[-1, -1]):.4g} at the last layer and "
            "position; patching the clean run's final residual there restores it (1)."
        )
    same = np.cumprod(pt.corrupt_ids == trace.tokens.ids).astype(bool)  # the shared prefix
    if (np.abs(pt.resid[:, same]) > PATCH_TOL).any():
        raise MechvizError(
            "Field 'patching.resid' is not 0 before the first token where the prompts differ; "
            "there the clean and corrupt runs are the same."
        )


def _check_lens(trace: Trace, name: str, ids_rule: str) -> None:
    """The logit lens checks of ``lens`` or ``lens_mid`` (the same fields, other rows).

    ``ids_rule`` ends the sentence of a token id out of range.
    """
    lens, V = getattr(trace, name), trace.model.d_vocab
    _in_range(f"{name}.top_ids", lens.top_ids, 0, V - 1, ids_rule)
    _in_range(
        f"{name}.final_token_rank",
        lens.final_token_rank,
        0,
        V - 1,
        f"ranks lie in [0, d_vocab) = [0, {V})",
    )
    _distinct(f"{name}.top_ids", lens.top_ids)
    for field in ("top_probs", "final_token_prob"):
        _in_range(f"{name}.{field}", getattr(lens, field), 0.0, 1.0, "probabilities lie in [0, 1]")
    _sorted(f"{name}.top_probs", lens.top_probs)
    top = math.log(V) + STAT_TOL
    _in_range(
        f"{name}.entropy",
        lens.entropy,
        -STAT_TOL,
        top,
        f"entropies lie in [0, ln d_vocab] = [0, {top - STAT_TOL:.3f}] nats",
    )
    _in_range(
        f"{name}.kl_to_final",
        lens.kl_to_final,
        -STAT_TOL,
        math.inf,
        "a KL divergence is never negative",
    )


TUNED_LAST_TOL = 1e-5  # the last row of both lenses is one computation on one state


def _check_tuned_lens(trace: Trace) -> None:
    """The lens checks, the rows of ``lens``, held-out figures, and the last row the output."""
    t = trace.tuned_lens
    if t.labels != trace.lens.labels:
        raise MechvizError("Field 'tuned_lens.labels' must be the rows of 'lens.labels'.")
    _check_lens(trace, "tuned_lens", f"token ids lie in [0, {trace.model.d_vocab})")
    if (t.top_ids[-1] != trace.lens.top_ids[-1]).any() or not np.allclose(
        t.top_probs[-1], trace.lens.top_probs[-1], rtol=0, atol=TUNED_LAST_TOL
    ):
        raise MechvizError(
            "Field 'tuned_lens' differs from 'lens' in its last row; there both read the "
            "model's output, with no translator."
        )
    for name in ("eval_bpb_logit", "eval_bpb_tuned", "eval_kl_logit", "eval_kl_tuned"):
        _in_range(
            f"tuned_lens.{name}",
            getattr(t, name),
            -STAT_TOL,
            math.inf,
            "cross-entropies and KL divergences are never negative",
        )
    if not t.eval_bpb_model >= 0 or not math.isfinite(t.eval_bpb_model):
        raise MechvizError(
            "Field 'tuned_lens.eval_bpb_model' must be a finite, non-negative number."
        )


def _check_features(trace: Trace) -> None:
    """Feature ids in range, activations sorted and non-negative, cards that make sense."""
    f, m = trace.features, trace.model
    if not 0 <= f.layer < m.n_layers:
        raise MechvizError(
            f"Field 'features.layer' holds {f.layer}; layers lie in [0, {m.n_layers})."
        )
    if not 1 <= f.k <= f.n_features or f.ids.shape[-1] != f.k:
        raise MechvizError(
            f"Field 'features.k' holds {f.k}; it must be between 1 and n_features "
            f"({f.n_features}) and the width of 'features.ids' ({f.ids.shape[-1]})."
        )
    rule = f"feature ids lie in [0, n_features) = [0, {f.n_features})"
    _in_range("features.ids", f.ids, 0, f.n_features - 1, rule)
    _distinct("features.ids", f.ids)
    _in_range("features.acts", f.acts, 0.0, math.inf, "an activation of a TopK SAE is >= 0")
    _sorted("features.acts", f.acts)
    for name in ("error_norm", "resid_norm", "card_acts", "card_frequency"):
        _in_range(f"features.{name}", getattr(f, name), 0.0, math.inf, "it is never negative")
    _in_range("features.typical", f.typical, 0, 1, "it is 1 or 0")
    _in_range("features.card_ids", f.card_ids, 0, f.n_features - 1, rule)
    if (np.diff(f.card_ids) <= 0).any():
        raise MechvizError("Field 'features.card_ids' must be ascending and distinct.")
    V = m.d_vocab
    _in_range(
        "features.card_contexts",
        f.card_contexts,
        -1,
        V - 1,
        f"token ids lie in [0, {V}), or -1 for none",
    )
    _in_range("features.card_promoted", f.card_promoted, 0, V - 1, f"token ids lie in [0, {V})")
    width = f.card_contexts.shape[-1]
    _in_range(
        "features.card_marked",
        f.card_marked,
        -1,
        width - 1,
        f"it indexes the context's {width} tokens, or is -1 for none",
    )
    _in_range(
        "features.eval_fve",
        np.asarray([f.eval_fve]),
        -math.inf,
        1.0,
        "a fraction of variance explained is at most 1",
    )
    _in_range(
        "features.eval_dead_share",
        np.asarray([f.eval_dead_share]),
        0.0,
        1.0,
        "a share lies in [0, 1]",
    )


# Stored floats are float32 (mechviz.tracing.encoding), so a sum of 2L + 1 parts
# re-adds to its total within a few float32 roundings of the largest part.
ATTRIBUTION_TOL = 1e-4


def _check_attribution(trace: Trace) -> None:
    """Each position's own top-1; the parts add up to the logit; the heads to their layer."""
    a, V = trace.attribution, trace.model.d_vocab
    if a.versus is not None and not 0 <= a.versus < V:
        raise MechvizError(
            f"Field 'attribution.versus' holds token id {a.versus}; token ids lie in [0, {V})."
        )
    top = trace.output.top_ids[:, 0]
    if (a.token != top).any():
        p = int(np.argmax(a.token != top))
        raise MechvizError(
            f"Field 'attribution.token' holds {int(a.token[p])} at position {p}, but the model's "
            f"top-1 there ('output.top_ids') is {int(top[p])}."
        )
    for field in ("parts", "heads", "attn_bias", "bias", "logit", "output"):
        _finite(f"attribution.{field}", getattr(a, field), "contributions are finite logits")
    scale = np.abs(a.parts).max(-1) + np.abs(a.bias) + 1.0
    miss = np.abs(a.parts.sum(-1, dtype=np.float64) + a.bias - a.logit)
    if (miss > ATTRIBUTION_TOL * scale).any():
        t, p = _first_bad(miss > ATTRIBUTION_TOL * scale)
        raise MechvizError(
            f"Fields 'attribution.parts' and 'attribution.bias' add up to "
            f"{float(a.parts[t, p].sum() + a.bias[t, p]):.6g} at target {t}, position {p}, but "
            f"'attribution.logit' holds {float(a.logit[t, p]):.6g}; the parts must sum to the "
            "logit."
        )
    attn = a.parts[..., 1::2]
    miss = np.abs(a.heads.sum(-1, dtype=np.float64) + a.attn_bias - attn)
    scale = np.abs(a.heads).max(-1) + np.abs(a.attn_bias) + 1.0
    if (miss > ATTRIBUTION_TOL * scale).any():
        t, p, layer = _first_bad(miss > ATTRIBUTION_TOL * scale)
        raise MechvizError(
            f"Field 'attribution.heads' of layer {layer} (target {t}, position {p}) does not add "
            "up, with 'attribution.attn_bias', to that layer's attention part."
        )


def _check_dictionaries(trace: Trace) -> None:
    d, V = trace.dictionaries, trace.model.d_vocab
    if not 1 <= d.middle_layers <= trace.model.n_layers:
        raise MechvizError(
            f"Field 'dictionaries.middle_layers' holds {d.middle_layers}; it must be between 1 "
            f"and n_layers = {trace.model.n_layers}."
        )
    for name in ("input", "output", "middle"):
        ids, amp = getattr(d, f"{name}_ids"), getattr(d, f"{name}_amp")
        _in_range(f"dictionaries.{name}_ids", ids, 0, V - 1, f"token ids lie in [0, {V})")
        _distinct(f"dictionaries.{name}_ids", ids)
        _in_range(
            f"dictionaries.{name}_amp",
            amp,
            -1 - COSINE_TOL,
            1 + COSINE_TOL,
            "normalised amplitudes lie in [-1, 1]",
        )
        _sorted(f"dictionaries.{name}_amp", amp)
    if any(i >= V for i in d.middle_prefix):
        raise MechvizError(f"Field 'dictionaries.middle_prefix' holds a token id outside [0, {V}).")
    stray = set(np.unique(d.middle_ids).tolist()) - set(trace.tokens.ids.tolist())
    if stray:
        raise MechvizError(
            f"Field 'dictionaries.middle_ids' holds token id {min(stray)}, which is not in the "
            "prompt; the middle dictionary holds the prompt's own tokens."
        )


def _check_similarity(trace: Trace) -> None:
    s, V = trace.similarity, trace.model.d_vocab
    _in_range("similarity.ids", s.ids, 0, V - 1, f"token ids lie in [0, {V})")
    _in_range(
        "similarity.cosine",
        s.cosine,
        -1 - COSINE_TOL,
        1 + COSINE_TOL,
        "cosine similarities lie in [-1, 1]",
    )
    if not 0.0 <= s.positive_share <= 1.0:
        raise MechvizError(
            f"Field 'similarity.positive_share' holds {s.positive_share}; a share lies in [0, 1]."
        )
    if not 2 <= s.sample <= V:
        raise MechvizError(
            f"Field 'similarity.sample' holds {s.sample}; it must be between 2 and d_vocab = {V}."
        )


def _check_weights(trace: Trace) -> None:
    w, V = trace.weights, trace.model.d_vocab
    for field in ("ratio_model", "ratio_heads"):
        values = getattr(w, field)
        _finite(f"weights.{field}", values, "ratios are finite")
        _in_range(f"weights.{field}", values, 0.0, math.inf, "a ratio of spreads is not negative")
    _in_range("weights.tally_counts", w.tally_counts, 0, math.inf, "a count is never negative")
    if int(w.tally_counts.sum()) != w.total:
        raise MechvizError(
            f"Field 'weights.tally_counts' adds up to {int(w.tally_counts.sum())}, but "
            f"'weights.total' holds {w.total}; the tally must add up to the parameter count."
        )
    for name in ("query", "key"):
        _in_range(
            f"weights.{name}_ids", getattr(w, f"{name}_ids"), 0, V - 1, f"token ids lie in [0, {V})"
        )
        _distinct(f"weights.{name}_ids", getattr(w, f"{name}_ids"))
        _finite(f"weights.{name}_score", getattr(w, f"{name}_score"), "scores are finite")


NEURON_VALUE_TOL = 2**-10  # relative: a float16 peak is within 2**-11 of the float32 values


def _check_neurons(trace: Trace) -> None:
    """Thresholds ordered, statistics finite, counts re-counted from ``peak``, ids selected."""
    from mechviz.tracing.neurons import passes, thresholds

    n, F = trace.neurons, trace.model.d_mlp
    if not (math.isfinite(n.above) and math.isfinite(n.below) and n.above > n.below):
        raise MechvizError(
            f"Fields 'neurons.above' ({n.above}) and 'neurons.below' ({n.below}) must be "
            "finite with above > below."
        )
    _finite("neurons.std", n.std, "a standard deviation is finite")
    _in_range("neurons.std", n.std, 0.0, math.inf, "a standard deviation is never negative")
    _finite("neurons.peak", n.peak, "peak activations are finite")
    low = n.peak[..., 0] < n.peak[..., 1]
    if low.any():
        raise MechvizError(
            f"Field 'neurons.peak' has a max below its min at index {_first_bad(low)}; "
            "the last axis holds (max, min) over positions."
        )
    _in_range("neurons.count", n.count, 0, F, f"a count lies in [0, d_mlp] = [0, {F}]")
    ok = passes(n.peak, *thresholds(n.std, n.above, n.below, n.relative))
    recount = ok.sum(axis=-1)
    if (recount != n.count).any():
        layer = int(np.argmax(recount != n.count))
        raise MechvizError(
            f"Field 'neurons.count' holds {int(n.count[layer])} for layer {layer}, but the rule "
            f"selects {int(recount[layer])} neurons from 'neurons.peak'."
        )
    _in_range("neurons.ids", n.ids, -1, F - 1, f"neuron ids lie in [0, d_mlp) = [0, {F}) or -1")
    _finite("neurons.values", n.values, "activations are finite")
    for layer, ids in enumerate(n.ids):
        stored = int((ids >= 0).sum())
        if (ids[:stored] < 0).any() or stored != min(int(n.count[layer]), len(ids)):
            raise MechvizError(
                f"Field 'neurons.ids' of layer {layer} must hold the first "
                f"min(count, {len(ids)}) selected neurons, then -1 padding."
            )
        if len(set(ids[:stored].tolist())) != stored or not ok[layer, ids[:stored]].all():
            raise MechvizError(
                f"Field 'neurons.ids' of layer {layer} must hold distinct neurons that the "
                "rule selects."
            )
        values = n.values[layer]
        if (values[stored:] != 0).any():
            raise MechvizError(
                f"Field 'neurons.values' of layer {layer} must be 0 where 'neurons.ids' is -1."
            )
        peak = n.peak[layer, ids[:stored]]
        rows = values[:stored]
        tol = NEURON_VALUE_TOL * np.abs(peak) + 1e-6
        if rows.size and (
            (np.abs(rows.max(-1) - peak[:, 0]) > tol[:, 0]).any()
            or (np.abs(rows.min(-1) - peak[:, 1]) > tol[:, 1]).any()
        ):
            raise MechvizError(
                f"Field 'neurons.values' of layer {layer} disagrees with 'neurons.peak' "
                "(the max and min of each stored neuron over positions)."
            )


def _finite(field: str, values: np.ndarray, rule: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        at = _first_bad(bad)
        raise MechvizError(f"Field '{field}' holds {values[tuple(at)]} at index {at}; {rule}.")


def _check_heads(trace: Trace) -> None:
    """The answer is the model's own top-1 at a real position; every effect is finite."""
    heads, m = trace.heads, trace.model
    P = len(trace.tokens.text)
    if not 0 <= heads.answer < m.d_vocab:
        raise MechvizError(
            f"Field 'heads.answer' holds token id {heads.answer}; token ids lie in "
            f"[0, d_vocab) = [0, {m.d_vocab})."
        )
    if not 0 <= heads.position < P:
        raise MechvizError(
            f"Field 'heads.position' holds {heads.position}; positions lie in [0, {P})."
        )
    top = int(trace.output.top_ids[heads.position, 0])
    if heads.answer != top:
        raise MechvizError(
            f"Field 'heads.answer' holds token id {heads.answer}, but the model's top-1 next "
            f"token at position {heads.position} ('output.top_ids') is {top}; direct effects "
            "are read on the model's own answer."
        )
    for field in ("heads.direct", "heads.bias"):
        values = _get(trace, field)
        bad = ~np.isfinite(values)
        if bad.any():
            raise MechvizError(
                f"Field '{field}' holds {values[tuple(_first_bad(bad))]} at index "
                f"{_first_bad(bad)}; direct effects are finite logits."
            )


def _get(trace: Trace, field: str) -> np.ndarray:
    section, name = field.split(".")
    return getattr(getattr(trace, section), name)


def section_token_ids(name: str, section: Any) -> list[np.ndarray]:
    """The token ids that optional section ``name`` names (``vocab`` must give their text)."""
    if name == "lens_mid":
        return [section.top_ids]
    if name == "attribution":
        return [] if section.versus is None else [np.asarray([section.versus])]
    if name == "dictionaries":
        return [
            section.input_ids,
            section.output_ids,
            section.middle_ids,
            np.asarray(section.middle_prefix, int),
        ]
    if name == "similarity":
        return [section.ids]
    if name == "weights":
        return [section.query_ids, section.key_ids]
    if name == "interventions":
        return [section.before_lens_ids, section.before_output_ids]
    if name == "patching":
        return [section.corrupt_ids, np.asarray([section.answer, section.wrong])]
    if name == "tuned_lens":
        return [section.top_ids]
    if name == "features":
        contexts = np.asarray(section.card_contexts)
        return [contexts[contexts >= 0], section.card_promoted]
    return []  # heads, whole, neurons: no token ids of their own


def _mentioned_ids(trace: Trace) -> np.ndarray:
    """Every token id the trace names, so that ``vocab`` must give its text."""
    arrays = [trace.tokens.ids, trace.lens.top_ids, trace.output.top_ids]
    for name in sections.SECTION_SINCE:
        section = getattr(trace, name)
        if section is not None:
            arrays += section_token_ids(name, section)
    return np.unique(np.concatenate([np.asarray(a).ravel() for a in arrays]))


def _first_bad(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.argwhere(mask)[0]]


def _in_range(field: str, values: np.ndarray, low: float, high: float, rule: str) -> None:
    bad = (values < low) | (values > high)
    if bad.any():
        at = _first_bad(bad)
        value = values[tuple(at)]
        shown = f"{value:g}" if values.dtype.kind == "f" else str(int(value))
        raise MechvizError(f"Field '{field}' holds {shown} at index {at}; {rule}.")


def _distinct(field: str, values: np.ndarray) -> None:
    rows = values.reshape(-1, values.shape[-1])
    ordered = np.sort(rows, axis=-1)
    dup = (ordered[:, 1:] == ordered[:, :-1]).any(axis=-1)
    if dup.any():
        row = int(np.argmax(dup))
        raise MechvizError(
            f"Field '{field}' repeats an entry in list {row}; each list must hold distinct values."
        )


def _sorted(field: str, probs: np.ndarray) -> None:
    rising = np.diff(probs, axis=-1) > 0
    if rising.any():
        at = _first_bad(rising)
        raise MechvizError(
            f"Field '{field}' is not sorted at index {at}; a top-k list runs from the most "
            "probable token down."
        )


def _check_attention(pattern: np.ndarray, tolerance: float) -> None:
    P = pattern.shape[-1]
    q_idx, k_idx = np.triu_indices(P, k=1)
    leak = np.abs(pattern[..., q_idx, k_idx]) > CAUSAL_TOL  # [L, H, pairs]
    if leak.any():
        layer, head, pair = _first_bad(leak)
        q, k = int(q_idx[pair]), int(k_idx[pair])
        raise MechvizError(
            f"Field 'attention.pattern' has weight {pattern[layer, head, q, k]:g} from query "
            f"{q} to the later key {k} (layer {layer}, head {head}); a causal model's pattern "
            "is zero above the diagonal."
        )
    sums = pattern.sum(axis=-1)
    off = np.abs(sums - 1.0) > tolerance
    if off.any():
        layer, head, q = _first_bad(off)
        raise MechvizError(
            f"Field 'attention.pattern' has a row summing to {sums[layer, head, q]:.4g} "
            f"(layer {layer}, head {head}, query {q}); each row must sum to 1 "
            f"within {tolerance:.2g}."
        )
    _in_range("attention.pattern", pattern, 0.0, 1.0, "attention weights lie in [0, 1]")


def _check_offsets(trace: Trace) -> None:
    offsets = trace.tokens.offsets
    n = len(trace.prompt)
    bad = (offsets[:, 0] < 0) | (offsets[:, 0] > offsets[:, 1]) | (offsets[:, 1] > n)
    if bad.any():
        p = int(np.argmax(bad))
        start, end = (int(v) for v in offsets[p])
        raise MechvizError(
            f"Field 'tokens.offsets' gives token {p} the span [{start}, {end}), outside the "
            f"{n}-character prompt."
        )


if __name__ == "__main__":  # python -m mechviz.tracing.validate > docs/trace.schema.json
    print(json.dumps(json_schema(), indent=2))
