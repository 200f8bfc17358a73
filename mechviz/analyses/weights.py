"""Statistics of the weights themselves (seed 004, sections 1, 3 and 4).

:func:`weight_stats` reads a model's attention matrices, its parameter list
and its embedding, and returns the trace's ``weights`` section
(:class:`mechviz.tracing.schema.Weights`):

* ``sigma / mean(|w|)`` of W_Q, W_K, W_V and W_O in every layer, each matrix
  oriented as ``[d_model, n * d_head]`` (``x @ W``; W_O transposed): its
  columns run along the model dimension, its rows cut across the heads.
  ``sigma`` is the population standard deviation (``ddof = 0``) of one
  vector around that vector's own mean; the ratio of each vector is
  averaged over the vectors (vectors of all zeros are skipped). A
  zero-centred Gaussian gives ``sqrt(pi / 2) = 1.2533``; a vector of +-1 with
  as many of each sign gives exactly 1.
* the parameter tally by component, classified by each parameter's name and
  owning module, so that the counts add up exactly to ``sum(p.numel() for p in
  model.parameters())`` (a tied W_E/W_U counted once, as torch does).
* layer 0's head tokens: for head ``h``, every vocabulary token ``t`` scored by
  ``|W_Q[h]^T n(e_t)|``, ``e_t`` the token's input to layer 0 without any
  position embedding (its W_E row, times Gemma's embedding scale) and ``n``
  layer 0's own input norm; likewise keys with W_K (grouped-query attention:
  head ``h`` reads KV group ``h // (n_heads // n_kv)``). Biases and any
  per-head query/key norm are left out: the score is the length of what the
  token alone writes into the head's query (key) space.

The fused projections are split by :meth:`mechviz.model.adapter.Adapter.W_QKV`, as the
models split them: GPT-2's ``c_attn``
(a Conv1D, ``[d_model, 3 * d_model]``, columns Q | K | V), GPT-NeoX's
``query_key_value`` (rows interleaved per head: ``[H, 3, d_head]``) and Phi-3's
``qkv_proj`` (rows Q | K | V with ``n_kv`` heads for K and V).

Like :mod:`mechviz.tracing.record`, this module touches torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from mechviz.errors import MechvizError
from mechviz.model.load import LoadedModel
from mechviz.tracing.schema import Weights

RATIO_NAMES = ["W_Q", "W_K", "W_V", "W_O"]
GAUSSIAN_RATIO = math.sqrt(math.pi / 2)  # sigma / mean(|w|) of a zero-centred Gaussian
DEFAULT_TOP = 8
VOCAB_CHUNK = 4096  # tokens normed and projected at once: 4096 x d_model floats per step

# Tally groups, in the order they are listed (a group with no parameters is left out).
EMBEDDING = "embedding W_E"
TIED_EMBEDDING = "embedding W_E = W_U (tied)"
POSITION = "position embedding"
ATTENTION = "attention"
MLP = "MLP"
NORMS = "norms"
UNEMBEDDING = "unembedding W_U"
OTHER = "other"
TALLY_ORDER = [EMBEDDING, TIED_EMBEDDING, POSITION, ATTENTION, MLP, NORMS, UNEMBEDDING, OTHER]


class _Heads:
    """One loaded model's attention geometry and its Q, K, V, O matrices (from the adapter)."""

    def __init__(self, loaded: LoadedModel) -> None:
        adapter = loaded.adapter
        config = loaded.model.config
        self.adapter = adapter
        self.n_heads = int(config.num_attention_heads)
        self.n_kv = int(getattr(config, "num_key_value_heads", None) or self.n_heads)
        self.d_head = adapter.W_O(0).shape[0] // self.n_heads
        # The attention module: the parent of W_O (``self_attn``, ``attn``, ``attention``).
        self.attn_path = adapter.family.attn_proj.rpartition(".")[0]

    def qkv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """W_Q ``[D, H * d_head]``, W_K and W_V ``[D, n_kv * d_head]``, heads side by side."""
        return self.adapter.W_QKV(layer)

    def matrices(self, layer: int) -> list[torch.Tensor]:
        """W_Q, W_K, W_V and W_O of ``layer``, each ``[d_model, n * d_head]``."""
        return [*self.qkv(layer), self.adapter.W_O(layer).T]

    def input_norm(self) -> nn.Module:
        return self.adapter.attn_input_norm_module(0)


def ratio(w: torch.Tensor, dim: int) -> float:
    """Sigma / mean(|w|) of the vectors of ``w`` that run along ``dim``, averaged.

    ``sigma`` is the population standard deviation (``ddof = 0``) of each
    vector around its own mean. Vectors of all zeros are skipped.
    """
    w = w.detach().double()
    mean_abs = w.abs().mean(dim)
    sigma = w.std(dim, correction=0)
    keep = mean_abs > 0
    if not bool(keep.any()):
        raise MechvizError("A weight matrix is all zeros, so sigma / mean(|w|) is undefined.")
    return float((sigma[keep] / mean_abs[keep]).mean())


@torch.no_grad()
def ratios(loaded: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    """``(ratio_model, ratio_heads)``, each ``[L, 4]`` for W_Q, W_K, W_V, W_O."""
    heads = _Heads(loaded)
    L = loaded.adapter.n_layers
    model, across = np.zeros((L, 4)), np.zeros((L, 4))
    for layer in range(L):
        for m, w in enumerate(heads.matrices(layer)):
            model[layer, m] = ratio(w, dim=0)  # columns: length d_model
            across[layer, m] = ratio(w, dim=1)  # rows: length n * d_head
    return model, across


def _group(
    name: str, module: nn.Module, loaded: LoadedModel, embed_id: int, unembed_ids: set[int]
) -> str:
    """The tally group of one named parameter (``module`` is its owner)."""
    adapter = loaded.adapter
    param = getattr(module, name.rpartition(".")[2])
    if id(param) == embed_id:
        return TIED_EMBEDDING if adapter.tied_embeddings else EMBEDDING
    if id(param) in unembed_ids:
        return UNEMBEDDING
    if "norm" in type(module).__name__.lower():
        return NORMS
    if isinstance(module, nn.Embedding):
        return POSITION
    family = adapter.family
    layers = family.layers + "."
    if name.startswith(layers):
        inner = name[len(layers) :].partition(".")[2]  # drop the layer number
        if inner.startswith(family.attn_proj.rpartition(".")[0] + "."):
            return ATTENTION
        if inner.startswith(family.mlp_in.rpartition(".")[0] + "."):
            return MLP
    return OTHER


def tally(loaded: LoadedModel) -> tuple[list[str], np.ndarray, int]:
    """``(names, counts, total)``: every parameter in exactly one group; counts add to total.

    Groups: the token embedding (named tied when it is also W_U), a position
    embedding, attention (Q, K, V, O and their biases), the MLP, every norm
    (LayerNorm/RMSNorm weights and biases, per-head query/key norms too), the
    unembedding (weight and bias; absent when tied) and ``other`` for anything
    else. Groups with no parameters are left out.
    """
    model, adapter = loaded.model, loaded.adapter
    modules = dict(model.named_modules())
    embed_id = id(adapter.embed.weight)
    unembed_ids = {id(p) for p in adapter.unembed.parameters(recurse=False)}
    counts = dict.fromkeys(TALLY_ORDER, 0)
    # named_parameters() yields a shared (tied) tensor once, as parameters() does.
    for name, p in model.named_parameters():
        owner = modules[name.rpartition(".")[0]]
        counts[_group(name, owner, loaded, embed_id, unembed_ids)] += p.numel()
    total = sum(p.numel() for p in model.parameters())
    names = [g for g in TALLY_ORDER if counts[g] > 0]
    return names, np.array([counts[g] for g in names], dtype=np.int64), int(total)


@torch.no_grad()
def layer0_inputs(loaded: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    """``n(e_t)`` for the tokens ``ids``: embedding (Gemma's scale included), then layer 0's norm.

    No position embedding is added. Returned as float32 ``[len(ids), d_model]``.
    """
    adapter = loaded.adapter
    embed = adapter.embed
    # The module's own forward: Gemma's embedding multiplies by sqrt(d_model) there.
    e = embed(ids.to(embed.weight.device))
    norm = _Heads(loaded).input_norm()
    return norm(e).float()


@torch.no_grad()
def head_tokens(
    loaded: LoadedModel, top: int = DEFAULT_TOP
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(query_ids, query_score, key_ids, key_score)``, each ``[H, top]``, largest first.

    Head ``h``'s query score of token ``t`` is ``|n(e_t) @ W_Q[:, h]|`` (its
    ``d_head`` columns), the key score likewise with the head's KV group of W_K.
    """
    heads = _Heads(loaded)
    H, dh, group = heads.n_heads, heads.d_head, heads.n_heads // heads.n_kv
    W_Q, W_K, _ = (w.detach().float() for w in heads.qkv(0))
    V = loaded.adapter.W_E.shape[0]
    top = min(top, V)
    kv_of = torch.arange(H) // group
    best = {"q": (torch.full((H, 0), -1.0), torch.zeros((H, 0), dtype=torch.long))}
    best["k"] = best["q"]
    for start in range(0, V, VOCAB_CHUNK):
        ids = torch.arange(start, min(start + VOCAB_CHUNK, V))
        x = layer0_inputs(loaded, ids).to(W_Q.device)  # [C, D]
        q = (x @ W_Q).view(len(ids), H, dh).norm(dim=-1).T  # [H, C]
        k = (x @ W_K).view(len(ids), heads.n_kv, dh).norm(dim=-1).T[kv_of]  # [H, C]
        for key, score in (("q", q.cpu()), ("k", k.cpu())):
            old_score, old_ids = best[key]
            s = torch.cat([old_score, score], dim=1)
            i = torch.cat([old_ids, ids.expand(H, -1)], dim=1)
            keep = s.topk(min(top, s.shape[1]), dim=1)
            best[key] = (keep.values, i.gather(1, keep.indices))
    (qs, qi), (ks, ki) = best["q"], best["k"]
    return qi.numpy(), qs.double().numpy(), ki.numpy(), ks.double().numpy()


@torch.no_grad()
def weight_stats(loaded: LoadedModel, *, top: int = DEFAULT_TOP) -> Weights:
    """The ``weights`` section: sigma / mean(|w|) by layer, the parameter tally, head tokens.

    Args:
        loaded: Any model of a family mechviz supports.
        top: Tokens kept per layer-0 head, for queries and for keys.

    """
    if top < 1:
        raise MechvizError(f"--top must be at least 1; got {top}.")
    ratio_model, ratio_heads = ratios(loaded)
    names, counts, total = tally(loaded)
    query_ids, query_score, key_ids, key_score = head_tokens(loaded, top)
    return Weights(
        ratio_names=list(RATIO_NAMES),
        tally_names=names,
        total=total,
        ratio_model=ratio_model,
        ratio_heads=ratio_heads,
        tally_counts=counts,
        query_ids=query_ids,
        query_score=query_score,
        key_ids=key_ids,
        key_score=key_score,
    )
