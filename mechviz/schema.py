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

Terms follow TransformerLens: ``resid_pre``/``resid_mid``/``resid_post``,
``attn_out``/``mlp_out`` (what a block adds to the stream), ``pattern[head,
query_pos, key_pos]``, ``W_E``/``W_U``. The lens distribution at a boundary is
``softmax(W_U @ final_norm(resid))`` with the model's own output transform.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mechviz.errors import MechvizError

SCHEMA_VERSION = 1


def _arr(*dims: str, dtype: str = "float", optional: bool = False) -> Any:
    """Declare an array field with its dimension names (validated on load)."""
    return field(metadata={"dims": dims, "dtype": dtype, "optional": optional})


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
    pooled: np.ndarray = _arr("B", "P", "R")
    sample_dims: np.ndarray = _arr("S", dtype="int")
    sample: np.ndarray = _arr("B", "P", "S")
    full: np.ndarray | None = _arr("B", "P", "D", optional=True)


@dataclass(frozen=True)
class Blocks:
    attn_out_norm: np.ndarray = _arr("L", "P")
    mlp_out_norm: np.ndarray = _arr("L", "P")


@dataclass(frozen=True)
class Attention:
    pattern: np.ndarray = _arr("L", "H", "P", "P")


@dataclass(frozen=True)
class Mlp:
    top_neurons: np.ndarray = _arr("L", "N", dtype="int")
    top_values: np.ndarray = _arr("L", "N", "P")
    pooled: np.ndarray = _arr("L", "P", "R")


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


SECTIONS: dict[str, type] = {
    "tokens": Tokens,
    "resid": Resid,
    "blocks": Blocks,
    "attention": Attention,
    "mlp": Mlp,
    "embedding": Embedding,
    "lens": Lens,
    "output": Output,
}


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

    def __post_init__(self) -> None:
        _check_shapes(self)

    # --- convenience readers for scenes ---------------------------------
    @property
    def n_layers(self) -> int:
        return self.model.n_layers

    @property
    def n_positions(self) -> int:
        return len(self.tokens.text)

    def token_text(self, token_id: int) -> str:
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
        return 2 * layer + 1

    def resid_post(self, layer: int) -> int:
        return 2 * layer + 2

    @property
    def prediction(self) -> tuple[int, float]:
        """The model's top-1 next token at the last position and its probability."""
        return int(self.output.top_ids[-1, 0]), float(self.output.top_probs[-1, 0])

    # --- (de)serialisation ------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": self.schema_version,
            "mechviz_version": self.mechviz_version,
            "model": dataclasses.asdict(self.model),
            "prompt": self.prompt,
            "vocab": {str(k): v for k, v in sorted(self.vocab.items())},
        }
        for name in SECTIONS:
            section = getattr(self, name)
            out[name] = {
                f.name: _to_json(getattr(section, f.name)) for f in dataclasses.fields(section)
            }
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Trace:
        if not isinstance(data, dict) or "schema_version" not in data:
            raise MechvizError("This file is not a mechviz trace (no 'schema_version' field).")
        version = data["schema_version"]
        if not isinstance(version, int):
            raise MechvizError("Field 'schema_version' must be an integer.")
        if version > SCHEMA_VERSION:
            raise MechvizError(
                f"This trace has schema version {version}, newer than this mechviz "
                f"understands ({SCHEMA_VERSION}); upgrade mechviz to read it."
            )
        if version < SCHEMA_VERSION:
            raise MechvizError(
                f"This trace has old schema version {version}; re-create it with `mechviz trace`."
            )
        model = _build(ModelInfo, _require(data, "model", dict), "model")
        _check_model_types(model)
        sections = {
            name: _build(kind, _require(data, name, dict), name) for name, kind in SECTIONS.items()
        }
        vocab_raw = _require(data, "vocab", dict)
        try:
            vocab = {int(k): str(v) for k, v in vocab_raw.items()}
        except ValueError:
            raise MechvizError("Field 'vocab' must map token ids to text.") from None
        return cls(
            schema_version=version,
            mechviz_version=str(_require(data, "mechviz_version", str)),
            model=model,
            prompt=_require(data, "prompt", str),
            vocab=vocab,
            **sections,
        )


_MODEL_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "str": (str,),
    "bool": (bool,),
    "str | None": (str, type(None)),
    "float | None": (float, int, type(None)),
}


def _check_model_types(model: ModelInfo) -> None:
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        kinds = _MODEL_TYPES[str(f.type)]
        if not isinstance(value, kinds) or (f.type == "int" and isinstance(value, bool)):
            raise MechvizError(f"Field 'model.{f.name}' must be of type {f.type}; got {value!r}.")
        if f.type == "int" and value < 1:
            raise MechvizError(f"Field 'model.{f.name}' must be a positive integer; got {value}.")


def _require(data: dict, key: str, kind: type, where: str = "") -> Any:
    name = f"{where}.{key}" if where else key
    if key not in data:
        raise MechvizError(f"The trace is missing field '{name}'.")
    value = data[key]
    if not isinstance(value, kind):
        raise MechvizError(f"Field '{name}' must be a {kind.__name__}.")
    return value


def _build(kind: type, data: dict, where: str) -> Any:
    """Make a section dataclass from JSON, turning arrays into NumPy."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        name = f"{where}.{f.name}"
        dims = f.metadata.get("dims")
        if f.name not in data:
            if f.metadata.get("optional"):
                values[f.name] = None
                continue
            raise MechvizError(f"The trace is missing field '{name}'.")
        value = data[f.name]
        if dims is None:
            if f.type == "list[str]" and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise MechvizError(f"Field '{name}' must be a list of strings.")
            values[f.name] = value
        elif value is None and f.metadata.get("optional"):
            values[f.name] = None
        else:
            values[f.name] = _to_array(value, f.metadata["dtype"], name)
    return kind(**values)


def _to_array(value: Any, dtype: str, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise MechvizError(f"Field '{name}' must be a rectangular array of numbers.") from None
    if not np.all(np.isfinite(arr)):
        raise MechvizError(f"Field '{name}' contains NaN or infinite values.")
    if dtype == "int":
        arr = arr.astype(np.int64)
    else:
        arr = arr.astype(np.float32)
    arr.setflags(write=False)
    return arr


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iu":
            return value.tolist()
        return round_significant(value).tolist()
    return value


def round_significant(value: np.ndarray, digits: int = 6) -> np.ndarray:
    """Round to ``digits`` significant digits, vectorised.

    Six digits sit far below every tolerance we test and keep the file small
    and byte-stable. Scaling by an exact power of ten and dividing back gives
    the double nearest the rounded decimal, which JSON prints in short form.
    """
    x = value.astype(np.float64)
    with np.errstate(divide="ignore"):
        exp10 = np.floor(np.log10(np.abs(x)))
    shift = np.where(np.isfinite(exp10), digits - 1 - exp10, 0).astype(np.int64)
    up = np.power(10.0, np.clip(shift, 0, None))
    down = np.power(10.0, np.clip(-shift, 0, None))
    return np.round(x * up / down) * down / up


def _check_shapes(trace: Trace) -> None:
    """Check every array against the dimensions the glossary gives it."""
    m = trace.model
    P = len(trace.tokens.text)
    sizes = {
        "L": m.n_layers,
        "H": m.n_heads,
        "P": P,
        "B": 2 * m.n_layers + 1,
        "Y": m.n_layers + 1,
        "D": m.d_model,
        "2": 2,
        "K": trace.lens.top_ids.shape[-1] if trace.lens.top_ids.ndim == 3 else -1,
        "R": trace.resid.pooled.shape[-1] if trace.resid.pooled.ndim == 3 else -1,
        "S": len(trace.resid.sample_dims),
        "N": trace.mlp.top_neurons.shape[-1] if trace.mlp.top_neurons.ndim == 2 else -1,
    }
    if P == 0:
        raise MechvizError("Field 'tokens.text' is empty: a trace needs at least one token.")
    if len(trace.resid.labels) != sizes["B"]:
        raise MechvizError(
            f"Field 'resid.labels' has {len(trace.resid.labels)} entries, expected "
            f"B = 2 * n_layers + 1 = {sizes['B']}."
        )
    for name in SECTIONS:
        section = getattr(trace, name)
        for f in dataclasses.fields(section):
            dims = f.metadata.get("dims")
            value = getattr(section, f.name)
            if dims is None or value is None:
                continue
            expected = tuple(sizes[d] for d in dims)
            if value.shape != expected:
                want = ", ".join(f"{d}={sizes[d]}" for d in dims)
                raise MechvizError(
                    f"Field '{name}.{f.name}' has shape {tuple(value.shape)}, expected ({want})."
                )
    if trace.lens.labels != trace.resid.labels[0::2]:
        raise MechvizError("Field 'lens.labels' must be 'embed' then '{l}_post' for each layer.")
    missing = _missing_vocab(trace)
    if missing:
        raise MechvizError(f"Field 'vocab' has no text for token id {missing}.")


def _missing_vocab(trace: Trace) -> int | None:
    ids = np.concatenate(
        [trace.tokens.ids.ravel(), trace.lens.top_ids.ravel(), trace.output.top_ids.ravel()]
    )
    for i in np.unique(ids):
        if int(i) not in trace.vocab:
            return int(i)
    return None
