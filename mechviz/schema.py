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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mechviz.encoding import decode, encode, round_significant
from mechviz.errors import MechvizError

# 4: the optional ``whole`` and ``neurons`` sections; 3: the optional ``heads``
# section; 2: large arrays packed (mechviz.encoding); 1: nested lists only.
# Older versions load with the sections they lack set to ``None``.
SCHEMA_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
SECTION_SINCE = {"heads": 3, "whole": 4, "neurons": 4}  # the version that introduced each


def _arr(
    *dims: str, dtype: str = "float", optional: bool = False, storage: str | None = None
) -> Any:
    """Declare an array field with its dimension names (validated on load).

    ``storage``: how a large array is packed in the file (:mod:`mechviz.encoding`):
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

    Each token's vector is max-|x| pooled (:func:`mechviz.tracing.pool`, the
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
    ``lo = below * std[l]`` (float32, :func:`mechviz.neurons.thresholds`).
    ``count`` is that rule applied to ``peak`` as stored, so any other
    thresholds re-count exactly from ``peak`` (:func:`mechviz.neurons.select`).
    """

    above: float  # upper threshold used at trace time (default 3.0)
    below: float  # lower threshold (default 0.0)
    relative: bool  # thresholds in units of the layer's standard deviation
    std: np.ndarray = _arr("L")  # population std of each layer's activations, positions x neurons
    peak: np.ndarray = _arr("L", "F", "2", storage="float16")  # [L, d_mlp, (max, min) over P]
    count: np.ndarray = _arr("L", dtype="int")  # neurons selected per layer, of d_mlp
    ids: np.ndarray = _arr("L", "J", dtype="int")  # stored selected neurons, most extreme first
    values: np.ndarray = _arr("L", "J", "P")  # their activation at every position (0 where -1)


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
}
OPTIONAL_SECTIONS = frozenset(SECTION_SINCE)  # absent from older traces (or left out)


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

    def __post_init__(self) -> None:
        from mechviz.validate import check_meaning, check_shapes

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

    # --- (de)serialisation ------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the trace as JSON to ``path`` atomically (a temporary file, then a rename).

        Returns:
            The path written.

        """
        from mechviz.io import save_trace

        return save_trace(self, path)

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
        """Validate JSON data (schema version 1 to 4) and build the trace.

        The structure and exact types are checked against :func:`json_schema`
        (with ``jsonschema``), the arrays by :mod:`mechviz.encoding`, and their
        shapes and meaning (ranges, sums, orderings) by :mod:`mechviz.validate`.
        Every problem is one sentence naming the field.
        """
        if not isinstance(data, dict) or "schema_version" not in data:
            raise MechvizError("This file is not a mechviz trace (no 'schema_version' field).")
        version = data["schema_version"]
        if type(version) is not int:
            from mechviz.validate import json_text

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
        from mechviz.validate import check_structure

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
