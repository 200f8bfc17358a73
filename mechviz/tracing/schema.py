"""The trace: a versioned, validated record of one forward pass.

Dimension glossary (used in every shape below and in docs/trace-format.md):

    L  n_layers      transformer blocks
    H  n_heads       attention heads per block
    P  n_positions   prompt tokens
    B  n_boundaries  residual-stream boundaries = 2 * L + 1:
                     ``embed``, then ``{l}_mid`` and ``{l}_post`` for each layer l.
                     ``resid_pre`` of layer l is ``embed`` for l = 0, else ``{l-1}_post``.
    Y  n_lens        layer boundaries read by the logit lens = L + 1: ``embed``,
                     then ``{l}_post`` for each layer (``lens.labels``; the
                     boundaries ``resid.labels[0::2]``)
    K  top_k         tokens kept per distribution
    R  pool_width    width of the max-pooled compact view of a vector
    S  n_sample      residual dimensions kept verbatim (``resid.sample_dims``)
    N  n_neurons     MLP neurons kept per layer (largest |activation|)
    D  d_model       only in ``resid.full``, written with ``--full``
    Q  n_rows        residual rows of the whole-model picture = L + 1: ``embed``,
                     then ``{l}_post`` for each layer (the boundaries ``resid.labels[0::2]``)
    C  resid_width   values per token in ``whole.resid`` = min(d_model, ceil(width / P))
    M  mlp_width     values per token in ``whole.mlp`` = min(d_mlp, ceil(width / P))
    F  d_mlp         MLP neurons per layer (``neurons.peak``)
    J  n_stored      selected neurons stored per layer (``neurons.ids``; a cap,
                     ``TraceOptions.neuron_cap``; -1 pads a layer with fewer)
    T  n_targets     logits split by ``attribution``: 1 (each position's top-1), or 2
                     with ``versus`` (then row 1 is the difference top-1 - versus)
    E  n_entries     matches kept per state by ``dictionaries`` (default 5)
    U  n_middle      matches kept by the middle dictionary: min(E, unique prompt tokens)
    W  n_words       words of ``similarity``
    G  n_groups      components of the parameter tally (``weights.tally_names``)
    Z  n_head_tokens tokens kept per layer-0 head (``weights.query_ids``)
    A  n_active      active sparse-autoencoder features per position (``features.k``)
    X  n_cards       features with a dashboard card in ``features``
    I  n_contexts    top-activating contexts per card
    O  context_len   tokens per context (-1 pads a context cut by its window's edge)
    V  n_promoted    tokens each card's feature promotes through ``W_U``

"The neuron" (``mlp``, ``whole.mlp``, ``neurons``) is the input of the MLP's
down projection: the activation function's output, for gated MLPs the product
``act(gate(x)) * up(x)`` (GELU MLPs: ``act(fc1(x))``).

Units: logits (``heads``) are the model's pre-softmax scores, before any
final soft cap; probabilities in [0, 1]; entropies and KL in nats.

Terms follow TransformerLens: ``resid_pre``/``resid_mid``/``resid_post``,
``attn_out``/``mlp_out`` (what a block adds to the stream), ``pattern[head,
query_pos, key_pos]``, ``W_E``/``W_U``. The lens distribution at a boundary is
``softmax(W_U @ final_norm(resid))`` with the model's own output transform.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mechviz.errors import MechvizError
from mechviz.tracing.encoding import decode, encode, round_significant
from mechviz.tracing.sections import (  # the sections, read through the Trace
    ANALYSES,
    MADE_BY,
    OPTIONAL_SECTIONS,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    SECTION_SINCE,
    SECTIONS,
    Attention,
    AttributionTable,
    Blocks,
    Dictionaries,
    Embedding,
    Features,
    HeadEffects,
    Interventions,
    Lens,
    MidLens,
    Mlp,
    ModelInfo,
    Neurons,
    Output,
    Patching,
    Resid,
    Similarity,
    Tokens,
    TunedLensReadout,
    Weights,
    Whole,
    boundary_labels,
)


@dataclass(frozen=True)
class Trace:
    """One forward pass, reduced to what explainers draw. Built once, then read."""

    schema_version: int
    mechviz_version: str
    model: ModelInfo
    prompt: str
    vocab: dict[int, str]  # display text of every token id the trace mentions
    tokens: Tokens
    resid: Resid
    blocks: Blocks
    attention: Attention
    mlp: Mlp
    embedding: Embedding
    lens: Lens
    output: Output
    heads: HeadEffects | None = None
    whole: Whole | None = None
    neurons: Neurons | None = None
    lens_mid: MidLens | None = None
    attribution: AttributionTable | None = None
    dictionaries: Dictionaries | None = None
    similarity: Similarity | None = None
    weights: Weights | None = None
    interventions: Interventions | None = None
    patching: Patching | None = None
    tuned_lens: TunedLensReadout | None = None
    features: Features | None = None

    def __post_init__(self) -> None:
        from mechviz.tracing.validate import check_meaning, check_shapes

        check_shapes(self)
        check_meaning(self)

    # --- convenience readers for scenes ---------------------------------
    @property
    def n_layers(self) -> int:
        """Transformer blocks in the model (L)."""
        return self.model.n_layers

    @property
    def n_positions(self) -> int:
        """Tokens in the prompt (P), the beginning-of-text token included if the model adds one."""
        return len(self.tokens.text)

    def token_text(self, token_id: int) -> str:
        """The text of a token id the trace mentions (raw: a leading space is a space)."""
        return self.vocab[int(token_id)]

    def boundary(self, label: str) -> int:
        """Index of a boundary label such as ``embed``, ``3_mid``, ``29_post``."""
        try:
            return self.resid.labels.index(label)
        except ValueError:
            raise MechvizError(f"No boundary named '{label}' in this trace.") from None

    def lens_row(self, layer: int | None) -> int:
        """Row of ``lens`` after ``layer`` (``None`` for the embedding)."""
        return 0 if layer is None else layer + 1

    def resid_pre(self, layer: int) -> int:
        """Boundary index of ``resid_pre`` for ``layer``."""
        return 0 if layer == 0 else 2 * layer

    def resid_mid(self, layer: int) -> int:
        """Boundary index of ``resid_mid`` for ``layer`` (after attention, before the MLP)."""
        return 2 * layer + 1

    def resid_post(self, layer: int) -> int:
        """Boundary index of ``resid_post`` for ``layer`` (after its MLP)."""
        return 2 * layer + 2

    @property
    def prediction(self) -> tuple[int, float]:
        """The model's top-1 next token at the last position and its probability."""
        return int(self.output.top_ids[-1, 0]), float(self.output.top_probs[-1, 0])

    def require(self, section: str) -> Any:
        """The optional ``section`` of the trace, or one sentence saying how to get it.

        Raises:
            MechvizError: The section is absent: a trace made before the schema that
                introduced it (trace again), or an analysis not yet run (``mechviz analyze``).

        """
        import shlex

        from mechviz import __version__

        value = getattr(self, section, None)
        if value is None and section in MADE_BY:
            raise MechvizError(f"This trace has no `{section}` section; {MADE_BY[section]}")
        if value is None and section in ANALYSES:
            raise MechvizError(
                f"This trace has no `{section}` section; add it with "
                f"`mechviz analyze TRACE --{section}` (it loads the model that made the trace)."
            )
        if value is None:
            raise MechvizError(
                f"This trace has no `{section}` section (schema version {self.schema_version}); "
                f"trace it again with this version (mechviz {__version__}): "
                f"`mechviz trace {shlex.quote(self.prompt)}`."
            )
        return value

    # --- (de)serialisation ------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the trace as JSON to ``path`` atomically (a temporary file, then a rename).

        Returns:
            The path written.

        """
        from mechviz.files import atomic_write

        path = Path(path)
        text = self.to_json()
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        return path

    def to_json(self) -> str:
        """The canonical JSON text (packed arrays, sorted keys, so byte-stable)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    def to_dict(self, packed: bool = True) -> dict[str, Any]:
        """The JSON form; ``packed=False`` writes every array as a nested list."""
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "mechviz_version": self.mechviz_version,
            "model": dataclasses.asdict(self.model),
            "prompt": self.prompt,
            "vocab": {str(k): v for k, v in sorted(self.vocab.items())},
        }
        for name in SECTIONS:
            section = getattr(self, name)
            if section is None:
                continue  # an optional section this trace lacks
            out[name] = {
                f.name: _to_json(getattr(section, f.name), f, packed)
                for f in dataclasses.fields(section)
            }
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Trace:
        """Validate JSON data (schema version 1 to 5) and build the trace.

        The structure and exact types are checked against :func:`json_schema`
        (with ``jsonschema``), the arrays by :mod:`mechviz.tracing.encoding`, and their
        shapes and meaning (ranges, sums, orderings) by :mod:`mechviz.tracing.validate`.
        Every problem is one sentence naming the field.
        """
        if not isinstance(data, dict) or "schema_version" not in data:
            raise MechvizError("This file is not a mechviz trace (no 'schema_version' field).")
        version = data["schema_version"]
        if type(version) is not int:
            from mechviz.tracing.validate import json_text

            raise MechvizError(
                f"Field 'schema_version' must be an integer; got {json_text(version)}."
            )
        if version > SCHEMA_VERSION:
            raise MechvizError(
                f"This trace has schema version {version}, newer than this mechviz "
                f"understands ({SCHEMA_VERSION}); upgrade mechviz to read it."
            )
        if version not in READABLE_VERSIONS:
            raise MechvizError(
                f"This trace has old schema version {version}; re-create it with `mechviz trace`."
            )
        from mechviz.tracing.validate import check_structure

        check_structure(data)
        for name, since in SECTION_SINCE.items():
            if version < since and name in data:
                raise MechvizError(
                    f"This trace has schema version {version} but a '{name}' section, which "
                    f"version {since} introduced; re-create it with `mechviz trace`."
                )
        sections = {
            name: _build(kind, data[name], name) if data.get(name) is not None else None
            for name, kind in SECTIONS.items()
        }
        return cls(
            schema_version=version,
            mechviz_version=data["mechviz_version"],
            model=ModelInfo(**data["model"]),
            prompt=data["prompt"],
            vocab={int(k): v for k, v in data["vocab"].items()},
            **sections,
        )


def _build(kind: type, data: dict, where: str) -> Any:
    """Make a section dataclass from JSON, turning arrays into NumPy."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        value = data.get(f.name)
        if "dims" not in f.metadata:
            values[f.name] = value
        elif value is None:
            values[f.name] = None  # only optional fields may be absent (checked by the schema)
        else:
            values[f.name] = decode(value, f.metadata["dtype"], f"{where}.{f.name}")
    return kind(**values)


def _to_json(value: Any, f: dataclasses.Field, packed: bool) -> Any:
    if not isinstance(value, np.ndarray):
        return list(value) if isinstance(value, list) else value
    kind = f.metadata["dtype"]
    if not packed:
        return (
            value.astype(np.int64).tolist() if kind == "int" else round_significant(value).tolist()
        )
    return encode(value, kind=kind, storage=f.metadata["storage"])


__all__ = [
    "ANALYSES",
    "Attention",
    "AttributionTable",
    "Blocks",
    "boundary_labels",
    "Dictionaries",
    "Embedding",
    "Features",
    "HeadEffects",
    "Interventions",
    "Lens",
    "MADE_BY",
    "MidLens",
    "Mlp",
    "ModelInfo",
    "Neurons",
    "OPTIONAL_SECTIONS",
    "Output",
    "Patching",
    "READABLE_VERSIONS",
    "Resid",
    "SCHEMA_VERSION",
    "SECTION_SINCE",
    "SECTIONS",
    "Similarity",
    "Tokens",
    "Trace",
    "TunedLensReadout",
    "Weights",
    "Whole",
]
