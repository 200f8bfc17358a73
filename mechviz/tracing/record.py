"""Run one forward pass and reduce it to a :class:`~mechviz.tracing.schema.Trace`.

This is the only module (with ``models`` and ``adapter``) that touches torch.
Hooks on every block record ``resid_pre``/``resid_post``, what the MLP adds,
the MLP activation and the heads' outputs (the input of ``W_O``); attention
patterns come from the eager attention path; the logit lens reads every
boundary through the adapter's final norm and unembedding
(:meth:`Adapter.lens_norm`, then the unembedding's own matmul, or
:meth:`Adapter.logits_from_normed` where there is more than a matmul); each
head's direct effect on the answer reads through the final norm frozen at the
last position (:func:`head_effects`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mechviz import __version__
from mechviz.errors import MechvizError
from mechviz.model.adapter import Adapter
from mechviz.model.load import LoadedModel
from mechviz.model.tokens import check_prompt, display_text, token_offsets
from mechviz.tracing import neurons as rule
from mechviz.tracing.encoding import decode, encode
from mechviz.tracing.schema import (
    OPTIONAL_SECTIONS,
    SCHEMA_VERSION,
    Attention,
    Blocks,
    Embedding,
    HeadEffects,
    Lens,
    MidLens,
    Mlp,
    ModelInfo,
    Neurons,
    Output,
    Resid,
    Tokens,
    Trace,
    Whole,
    boundary_labels,
)
from mechviz.tracing.validate import section_token_ids

POOL_WIDTH = 64  # R: columns in the compact view; 576 / 64 = 9 dims per column
N_SAMPLE = 16  # S: residual dimensions kept verbatim, enough for a readable column
N_NEURONS = 16  # N: MLP neurons kept per layer, as many as a Neuroscope page shows
LENS_CHUNK = 1 << 26  # at most this many logits made by one matmul (256 MB of float32)
LENS_BLOCK = 1 << 20  # logits reduced at once (4 MB of float32, stays in cache)


@dataclass(frozen=True)
class TraceOptions:
    top_k: int = 10
    max_tokens: int = 64  # longer prompts make attention grids unreadable
    full: bool = False
    width: int = 1000  # px of the whole-model picture (seed 000): pooled rows of ~width values
    neuron_above: float = rule.ABOVE  # the seed's thresholds (GPT-J's GELU MLP)
    neuron_below: float = rule.BELOW
    neuron_relative: bool = False  # thresholds in units of each layer's std
    # J: selected neurons stored per layer, 32 * P values a layer (a Neuroscope page
    # shows 20-30); the counts cover every neuron of d_mlp whatever the cap.
    neuron_cap: int = 32
    # Learned readouts, loaded before tracing (so a missing one costs no forward pass):
    tuned_lens: Any = (
        None  # a mechviz.learned.tuned_lens.TunedLens: adds the ``tuned_lens`` section
    )
    sae: Any = None  # a mechviz.learned.sae.SparseAutoencoder: adds the ``features`` section

    def check(self) -> None:
        """Refuse options that cannot make a trace, in one sentence each."""
        if self.width < 1:
            raise MechvizError(f"--width must be at least 1 pixel; got {self.width}.")
        if self.neuron_cap < 1:
            raise MechvizError(f"neuron_cap must be at least 1; got {self.neuron_cap}.")
        rule.check_rule(self.neuron_above, self.neuron_below, ("--neuron-above", "--neuron-below"))


@dataclass
class Recording:
    """Raw tensors of one forward pass, before reduction (kept for tests)."""

    input_ids: torch.Tensor  # [P]
    resid_pre: list[torch.Tensor]  # L x [P, D]
    resid_post: list[torch.Tensor]  # L x [P, D]
    mlp_out: list[torch.Tensor]  # L x [P, D]
    mlp_act: list[torch.Tensor]  # L x [P, d_mlp]
    attn_z: list[torch.Tensor]  # L x [P, H * d_head], every head's output before W_O
    attentions: list[torch.Tensor]  # L x [H, P, P]
    logits: torch.Tensor  # [P, V], the model's own output

    def boundaries(self) -> torch.Tensor:
        """``embed``, then ``{l}_mid`` and ``{l}_post`` for each layer: [B, P, D]."""
        states = [self.resid_pre[0]]
        for post, mlp in zip(self.resid_post, self.mlp_out):
            states += [post - mlp, post]  # resid_mid = resid_post - mlp_out
        return torch.stack(states)


def tokenize(loaded: LoadedModel, prompt: str, max_tokens: int) -> torch.Tensor:
    check_prompt(prompt)  # empty, or not valid UTF-8: one sentence, before the tokenizer
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"][0]
    if len(ids) > max_tokens:
        raise MechvizError(
            f"The prompt is {len(ids)} tokens long, more than --max-tokens {max_tokens}; "
            "shorten it or raise --max-tokens."
        )
    return ids


@torch.no_grad()
def record(loaded: LoadedModel, input_ids: torch.Tensor) -> Recording:
    """Run the model once with hooks and keep what the trace needs."""
    adapter = loaded.adapter
    L = adapter.n_layers
    rec: dict[str, list[Any]] = {k: [None] * L for k in ("pre", "post", "mlp_out", "act", "z")}
    handles = []

    def keep(kind: str, layer: int, value: Any) -> None:
        tensor = value[0] if isinstance(value, tuple) else value
        # float32 for the statistics; the lens casts back to the model's dtype.
        rec[kind][layer] = tensor[0].detach().float()

    for layer, block in enumerate(adapter.layers):
        handles += [
            block.register_forward_pre_hook(
                lambda m, a, kw, layer=layer: keep(
                    "pre", layer, a[0] if a else kw["hidden_states"]
                ),
                with_kwargs=True,
            ),
            block.register_forward_hook(lambda m, a, o, layer=layer: keep("post", layer, o)),
            adapter.mlp_out_module(layer).register_forward_hook(
                lambda m, a, o, layer=layer: keep("mlp_out", layer, o)
            ),
            adapter.mlp_in_module(layer).register_forward_pre_hook(
                lambda m, a, layer=layer: keep("act", layer, a[0])
            ),
            adapter.attn_proj_module(layer).register_forward_pre_hook(
                lambda m, a, kw, layer=layer: keep(
                    "z", layer, a[0] if a else next(iter(kw.values()))
                ),
                with_kwargs=True,
            ),
        ]
    device = adapter.embed.weight.device
    try:
        out = loaded.model(input_ids[None].to(device), output_attentions=True, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    attentions = out.attentions
    if not attentions or len(attentions) != adapter.n_layers or any(a is None for a in attentions):
        raise MechvizError(
            "This model returned no attention weights; load it with eager attention."
        )
    return Recording(
        input_ids=input_ids,
        resid_pre=rec["pre"],
        resid_post=rec["post"],
        mlp_out=rec["mlp_out"],
        mlp_act=rec["act"],
        attn_z=rec["z"],
        attentions=[a[0].float().cpu() for a in out.attentions],
        logits=out.logits[0].float(),
    )


def trace_prompt(loaded: LoadedModel, prompt: str, options: TraceOptions = TraceOptions()) -> Trace:
    """Tokenize, run one forward pass and reduce it to a validated trace."""
    vocab_size = loaded.adapter.W_U.shape[0]
    if not 1 <= options.top_k <= vocab_size:
        raise MechvizError(
            f"--top-k must be between 1 and the vocabulary size ({vocab_size}); "
            f"got {options.top_k}."
        )
    options.check()
    input_ids = tokenize(loaded, prompt, options.max_tokens)
    rec = record(loaded, input_ids)
    return build_trace(loaded, prompt, rec, options)


@torch.no_grad()
def build_trace(loaded: LoadedModel, prompt: str, rec: Recording, options: TraceOptions) -> Trace:
    adapter = loaded.adapter
    resid = rec.boundaries()  # [B, P, D]
    # One lens pass over every boundary; ``lens`` keeps the layer boundaries
    # (embed, then each resid_post, as TransformerLens' accumulated_resid) and
    # ``lens_mid`` the half-steps after each attention block.
    labels = boundary_labels(adapter.n_layers)
    stats = {
        k: numpy_of(v)
        for k, v in lens_statistics(adapter, resid, rec.logits, options.top_k).items()
    }
    lens = Lens(labels=labels[0::2], **{k: v[0::2] for k, v in stats.items()})
    lens_mid = MidLens(labels=labels[1::2], **{k: v[1::2] for k, v in stats.items()})
    output = output_of(rec.logits, options.top_k)
    mlp = _mlp(rec.mlp_act)
    ids = rec.input_ids.tolist()
    used = set(ids) | set(np.unique(stats["top_ids"]).tolist())
    used |= set(np.unique(output.top_ids).tolist())
    tokenizer = loaded.tokenizer
    trace = Trace(
        schema_version=SCHEMA_VERSION,
        mechviz_version=__version__,
        model=_model_info(loaded, rec, mlp_width=rec.mlp_act[0].shape[-1]),
        prompt=prompt,
        vocab={i: display_text(tokenizer, i) for i in sorted(used)},
        tokens=Tokens(
            ids=np.asarray(ids, dtype=np.int64),
            text=[display_text(tokenizer, i) for i in ids],
            offsets=np.asarray(token_offsets(tokenizer, prompt, ids), dtype=np.int64),
        ),
        resid=_resid(resid, labels, options.full),
        blocks=Blocks(
            attn_out_norm=numpy_of(
                torch.stack(
                    [
                        post - pre - mlp
                        for pre, post, mlp in zip(rec.resid_pre, rec.resid_post, rec.mlp_out)
                    ]
                ).norm(dim=-1)
            ),
            mlp_out_norm=numpy_of(torch.stack(rec.mlp_out).norm(dim=-1)),
        ),
        attention=Attention(pattern=numpy_of(torch.stack(rec.attentions))),
        mlp=mlp,
        embedding=_embedding(adapter.W_E, rec.input_ids),
        lens=lens,
        output=output,
        heads=head_effects(adapter, rec, answer=int(output.top_ids[-1, 0])),
        whole=_whole(resid[0::2], rec.mlp_act, options.width),
        neurons=_neurons(rec.mlp_act, options),
        lens_mid=lens_mid,
    )
    learned = {}
    if options.tuned_lens is not None:  # the learned readouts make their own sections
        learned["tuned_lens"] = options.tuned_lens.section(
            loaded, resid[0::2], rec.logits, options.top_k
        )
    if options.sae is not None:
        learned["features"] = options.sae.section(rec)
    if not learned:
        return trace
    return with_sections(trace, loaded, **learned)


@torch.no_grad()
def head_effects(adapter: Adapter, rec: Recording, answer: int, position: int = -1) -> HeadEffects:
    """Each head's direct effect on the logit of ``answer`` at ``position`` (default: last).

    Head ``h`` of layer ``l`` writes ``z_h @ W_O[h]`` into the stream (``z_h``
    its slice of W_O's input, ``[d_head]``; ``W_O[h]`` its rows, ``[d_head,
    d_model]``). That vector is read like the final residual: through the
    final norm with its scale frozen at the real final residual at
    ``position`` (:meth:`Adapter.frozen_norm`; LayerNorm's centring kept, its
    bias left out), then dotted with ``W_U``'s row of ``answer``. Gemma 2/3's
    norm after ``W_O`` is frozen the same way, at W_O's real output. The sum
    over heads plus ``bias[l]`` (W_O's bias, read the same way) is what layer
    ``l``'s attention output adds to the answer's logit (before any soft cap).

    Returns:
        ``direct`` ``[L, H]`` and ``bias`` ``[L]``, float32, in logits.

    """
    L, H = adapter.n_layers, rec.attentions[0].shape[0]
    P = len(rec.input_ids)
    pos = position % P
    final = adapter.frozen_norm(adapter.final_norm, rec.resid_post[-1][pos])
    device = final.gain.device
    d = final.readout(adapter.W_U[answer].to(device))  # [D]
    direct, bias = torch.zeros(L, H), torch.zeros(L)
    for layer in range(L):
        z = rec.attn_z[layer][pos].to(device)  # [H * d_head]
        W_O = adapter.W_O(layer).detach().to(device=device, dtype=torch.float32)
        b_O = adapter.b_O(layer)
        b_O = None if b_O is None else b_O.detach().to(device=device, dtype=torch.float32)
        d_layer = d
        post = adapter.attn_post_norm_module(layer)
        if post is not None:  # Gemma 2/3: frozen at what W_O really wrote
            written = z @ W_O if b_O is None else z @ W_O + b_O
            d_layer = adapter.frozen_norm(post, written).readout(d)
        per_dim = z * (W_O @ d_layer)  # [H * d_head]: z_h . (W_O[h] @ d), head-major
        direct[layer] = per_dim.view(H, -1).sum(-1).cpu()
        if b_O is not None:
            bias[layer] = (b_O @ d_layer).cpu()
    return HeadEffects(answer=answer, position=pos, direct=numpy_of(direct), bias=numpy_of(bias))


@torch.no_grad()
def lens_statistics(
    adapter: Any,
    resid: torch.Tensor,
    final_logits: torch.Tensor,
    top_k: int,
    *,
    affine: bool | None = None,
) -> dict[str, torch.Tensor]:
    """The logit lens at every boundary and position, reduced to statistics.

    Entropy and KL are in nats; KL is ``KL(final || lens)``, as tuned-lens
    reports it; the "final token" is the model's own top-1 at that position and
    its rank is the number of lens logits strictly above its lens logit.

    The ``[B, P, V]`` logits are the bulk of the trace's cost (a ``d_model x
    d_vocab`` matmul per row). They are made ``LENS_CHUNK`` at a time into one
    reused float32 buffer, in base 2 (``y = logits * log2(e)``, so that the
    cheaper ``exp2`` serves), and reduced ``LENS_BLOCK`` at a time, few enough
    to stay in the CPU's cache across the passes torch makes over them: a
    grouped top-k (its first value is the row's max ``m``), one comparison for
    the rank, ``x = y - m`` in place, ``sum f x`` for the final distribution
    ``f``, ``e = exp2(x)``, ``Z = sum e`` and ``sum e x``. Then, in float64 on
    ``[B, P]``, ``entropy = ln Z - ln 2 * sum(e x) / Z`` and
    ``KL = sum f ln f + ln Z - ln 2 * sum f x``.

    When ``affine`` (default: ``adapter.affine_lens`` with float32 weights) the
    matmul writes straight into the buffer; otherwise (Gemma 2's softcap, half
    precision, or ``affine=False``) the logits come from the adapter's own
    modules, as :meth:`Adapter.logit_lens` computes them. Every value is clamped
    to its mathematical range (probabilities at most 1, entropy in
    ``[0, ln V]``, KL at least 0) against float32 rounding.
    """
    B, P, D = resid.shape
    weight = adapter.W_U
    device = weight.device
    V = weight.shape[0]
    fast = adapter.affine_lens and weight.dtype == torch.float32
    if affine is None:
        affine = fast
    elif affine and not fast:
        raise ValueError("affine=True needs a float32 nn.Linear unembedding and no softcap")
    final = _final(final_logits.to(device))
    target = final_logits.argmax(dim=-1).to(device)  # [P]
    normed = adapter.lens_norm(resid)  # [B, P, D], the model's dtype
    bias = adapter.unembed.bias
    if affine:  # base 2 from the matmul itself: scale the [B, P, D] input, not the logits
        normed = normed * LOG2E
        bias = None if bias is None else bias * LOG2E

    rows = B * P
    acc = _Accumulators(rows, top_k, device)
    chunks = list(_boxes((0, B, 0, P), max(1, LENS_CHUNK // V)))
    chunk_rows = max((b1 - b0) * (p1 - p0) for b0, b1, p0, p1 in chunks)
    block_rows = max(1, min(chunk_rows, LENS_BLOCK // V))
    y_buf = torch.empty(chunk_rows, V, device=device)
    e_buf = torch.empty(block_rows, V, device=device)
    for chunk in chunks:
        b0, b1, p0, p1 = chunk
        n = (b1 - b0) * (p1 - p0)
        first = b0 * P + p0  # boxes are contiguous runs of the [B * P] rows
        x_in = normed[b0:b1, p0:p1].reshape(n, D)
        y = y_buf[:n]
        if not affine:
            torch.mul(adapter.logits_from_normed(x_in), LOG2E, out=y)
        elif bias is None:
            torch.mm(x_in, weight.T, out=y)
        else:
            torch.addmm(bias, x_in, weight.T, out=y)
        for box in _boxes(chunk, block_rows):
            start = (box[0] * P + box[2]) - first
            size = (box[1] - box[0]) * (box[3] - box[2])
            acc.reduce(y[start : start + size], e_buf[:size], box, P, final.f, target)

    top_x = acc.top_y.double() - acc.top_y[:, :1].double()  # log2 of probability * Z
    Z = acc.Z.double()  # >= 1
    ln_Z = Z.log()
    stats = {
        "top_ids": acc.top_ids,
        "top_probs": top_x.exp2() / Z[:, None],
        "entropy": ln_Z - LN2 * acc.e_x.double() / Z,
        "kl_to_final": ln_Z - final.entropy.repeat(B) - LN2 * acc.f_x.double(),
        "final_token_rank": acc.rank.long(),
        "final_token_prob": (acc.target_y[:, 0].double() - acc.top_y[:, 0].double()).exp2() / Z,
    }
    stats["top_probs"].clamp_(max=1.0)
    stats["final_token_prob"].clamp_(max=1.0)
    stats["entropy"].clamp_(0.0, math.log(V))
    stats["kl_to_final"].clamp_(min=0.0)
    return {
        k: (v.float() if v.is_floating_point() else v).view(B, P, *v.shape[1:])
        for k, v in stats.items()
    }


LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)
# exp2(-115) = 2.4e-35 is still a normal float32; below it exp2's subnormal
# results are several times slower, and they add less than 1e-30 to Z >= 1.
MIN_X = -115.0


class _Accumulators:
    """Per-row sums of the lens, float32, filled block by block."""

    def __init__(self, rows: int, top_k: int, device: torch.device) -> None:
        empty = lambda *shape, dtype=torch.float32: torch.empty(  # noqa: E731
            *shape, dtype=dtype, device=device
        )
        self.top_y = empty(rows, top_k)  # base-2 logits of the top k, largest first
        self.top_ids = empty(rows, top_k, dtype=torch.int64)
        self.target_y = empty(rows, 1)  # base-2 logit of the model's own top-1
        self.rank = empty(rows)
        self.f_x = empty(rows)  # sum f x, x = y - max y
        self.Z = empty(rows)  # sum exp2(x)
        self.e_x = empty(rows)  # sum exp2(x) x

    def reduce(
        self,
        y: torch.Tensor,  # [n, V] base-2 logits, overwritten
        e: torch.Tensor,  # [n, V] scratch
        box: tuple[int, int, int, int],
        P: int,
        f32: torch.Tensor,  # [P, V] final distribution
        target: torch.Tensor,  # [P] the model's own top-1
    ) -> None:
        b0, b1, p0, p1 = box
        nb, npos = b1 - b0, p1 - p0
        rows = slice(b0 * P + p0, b0 * P + p0 + nb * npos)
        top_y = self.top_y[rows]
        _topk(y, top_y, self.top_ids[rows])
        target_y = self.target_y[rows]
        torch.gather(
            y.view(nb, npos, -1),
            -1,
            target[p0:p1, None].expand(nb, npos, 1),
            out=target_y.view(nb, npos, 1),
        )
        # Comparing into the float buffer and summing 0.0/1.0 is several times
        # faster than summing bools, and exact up to 2**24 tokens.
        torch.sum(torch.gt(y, target_y, out=e), -1, out=self.rank[rows])
        x = y.sub_(top_y[:, :1])  # <= 0, and 0 at the max
        e3 = e.view(nb, npos, -1)
        torch.mul(x.view(nb, npos, -1), f32[p0:p1], out=e3)
        torch.sum(e3, -1, out=self.f_x[rows].view(nb, npos))
        torch.exp2(x.clamp_(min=MIN_X), out=e)
        torch.sum(e, -1, out=self.Z[rows])
        torch.sum(torch.mul(e, x, out=e), -1, out=self.e_x[rows])


def _boxes(box: tuple[int, int, int, int], rows: int) -> Iterator[tuple[int, int, int, int]]:
    """Split ``[b0:b1, p0:p1]`` of a ``[B, P]`` grid into boxes of at most ``rows`` cells.

    Each box spans either whole position ranges of the parent or one boundary,
    so its cells are contiguous in the parent's row-major layout; the boxes are
    as even as that allows (a larger matmul is a faster one).
    """
    b0, b1, p0, p1 = box
    width = p1 - p0
    if width <= rows:
        step = _even(b1 - b0, rows // width)
        for b in range(b0, b1, step):
            yield b, min(b + step, b1), p0, p1
    else:
        step = _even(width, rows)
        for b in range(b0, b1):
            for p in range(p0, p1, step):
                yield b, b + 1, p, min(p + step, p1)


def _even(total: int, most: int) -> int:
    """The step that cuts ``total`` into as few pieces of at most ``most`` as possible, evenly."""
    pieces = -(-total // most)
    return -(-total // pieces)


TOPK_GROUP = 64  # the grouped top-k reads each row once, then k groups of this many


def _topk(x: torch.Tensor, values: torch.Tensor, ids: torch.Tensor) -> None:
    """``x.topk(k, dim=-1)`` of a ``[n, V]`` tensor into ``values`` and ``ids``, largest first.

    Token ``v`` of the first ``G * TOPK_GROUP`` belongs to group ``v mod G``;
    the k largest entries lie in the k groups with the largest maxima (ties
    aside, which ``topk`` resolves arbitrarily too), so one elementwise ``amax``
    over ``[TOPK_GROUP, G]`` and a top-k over the ``k * TOPK_GROUP`` candidates
    replace a top-k over the whole row (several times faster). Tokens past the
    last whole group are candidates too.
    """
    n, V = x.shape
    k = values.shape[-1]
    g = TOPK_GROUP
    G = V // g
    if k * g * 4 > V:
        torch.topk(x, k, dim=-1, out=(values, ids))
        return
    main = x[:, : G * g].unflatten(-1, (g, G))  # [n, g, G]
    groups = main.amax(1).topk(k, dim=-1).indices  # [n, k]
    cand_ids = (torch.arange(g, device=x.device)[:, None] * G + groups[:, None, :]).flatten(1)
    if G * g < V:
        tail = torch.arange(G * g, V, device=x.device).expand(n, -1)
        cand_ids = torch.cat([cand_ids, tail], dim=1)
    _, idx = torch.topk(x.gather(1, cand_ids), k, dim=-1, out=(values, ids))
    torch.gather(cand_ids, 1, idx.clone(), out=ids)


@dataclass
class _Final:
    """The model's own next-token distribution, ``[P, V]``."""

    x: torch.Tensor  # float32 logits minus each row's max (<= 0)
    f: torch.Tensor  # float32 probabilities, those below 1e-30 set to 0
    ln_Z: torch.Tensor  # float64 log of sum exp(x), so log f = x - ln_Z
    entropy: torch.Tensor  # float64, nats


def _final(logits: torch.Tensor) -> _Final:
    """Softmax statistics of the model's logits, in float32 with care.

    Shifting by the row's max first, then ``exp`` (correct to one float32 ulp)
    and torch's cascaded sums keep every probability within ~1e-7 of float64
    (float32's fused ``log_softmax`` over a 49k vocabulary is only good to ~2e-5
    on some CPUs; the trace promises 1e-5). Probabilities below 1e-30 add less
    than 1e-23 nats to any sum here and would be slow float32 subnormals.
    """
    logits = logits.float()
    x = logits - logits.amax(-1, keepdim=True)
    e = torch.exp(x.clamp(min=-80.0))
    Z = e.sum(-1, keepdim=True)
    f = e.div_(Z)
    f.masked_fill_(f < 1e-30, 0.0)
    ln_Z = Z[:, 0].double().log()
    return _Final(x=x, f=f, ln_Z=ln_Z, entropy=ln_Z - (f * x).sum(-1).double())


def output_of(logits: torch.Tensor, top_k: int) -> Output:
    """The ``output`` section of ``logits`` ``[P, V]``: each row's top ``top_k`` and entropy."""
    final = _final(logits)
    top_x, top_ids = final.x.topk(top_k, dim=-1)
    top_probs = (top_x.double() - final.ln_Z[:, None]).exp()
    return Output(
        top_ids=numpy_of(top_ids),
        top_probs=numpy_of(top_probs.clamp_(max=1.0)),
        entropy=numpy_of(final.entropy.clamp_(0.0, math.log(logits.shape[-1]))),
    )


def pool(x: torch.Tensor, width: int = POOL_WIDTH) -> torch.Tensor:
    """Max-|x| pooling of the last axis into ``width`` columns, keeping the sign.

    Column ``c`` of ``width`` (at most the axis length ``D``) pools the entries
    ``[floor(c D / width), floor((c + 1) D / width))``: contiguous groups of
    ``ceil(D / width)`` or one fewer, none empty (equal groups when ``width``
    divides ``D``). A tie keeps the first entry.
    """
    D = x.shape[-1]
    width = min(width, D)
    per = -(-D // width)
    cols = torch.arange(width + 1, device=x.device) * D // width  # group edges
    idx = (cols[:-1, None] + torch.arange(per, device=x.device)).minimum(cols[1:, None] - 1)
    groups = x[..., idx]  # [..., width, per]; a short group repeats its last entry
    best = groups.abs().argmax(dim=-1, keepdim=True)
    return groups.gather(-1, best)[..., 0]


def _whole(rows: torch.Tensor, acts: list[torch.Tensor], width: int) -> Whole:
    """Rows for the whole-model picture: ``ceil(width / P)`` pooled values per token."""
    P = rows.shape[1]
    per_token = -(-width // P)
    act = torch.stack([a.float().cpu() for a in acts])  # [L, P, d_mlp]
    return Whole(
        width=width,
        resid=numpy_of(pool(rows.float().cpu(), per_token)),
        mlp=numpy_of(pool(act, per_token)),
    )


def _as_stored(value: np.ndarray, kind: str, storage: str | None, name: str) -> np.ndarray:
    """``value`` as a saved trace will read it back (float16 or 6-digit rounding)."""
    return np.array(decode(encode(value, kind=kind, storage=storage), kind, name))


def _neurons(acts: list[torch.Tensor], options: TraceOptions) -> Neurons:
    """The Neuroscope selection, decided on the values as the trace stores them.

    ``std`` and ``peak`` are rounded as the file will hold them before the rule
    is applied, so re-counting from a loaded trace gives ``count`` exactly.
    """
    act = torch.stack([a.float().cpu() for a in acts]).numpy()  # [L, P, F]
    L, P, F = act.shape
    std = act.reshape(L, -1).astype(np.float64).std(axis=-1).astype(np.float32)
    std = _as_stored(std, "float", None, "neurons.std")
    peak = np.stack([act.max(axis=1), act.min(axis=1)], axis=-1)  # [L, F, 2]
    peak = _as_stored(peak, "float", "float16", "neurons.peak")
    o = options
    hi, lo = rule.thresholds(std, o.neuron_above, o.neuron_below, o.neuron_relative)
    ok = rule.passes(peak, hi, lo)
    cap = min(options.neuron_cap, F)
    ids = np.full((L, cap), -1, dtype=np.int64)
    values = np.zeros((L, cap, P), dtype=np.float32)
    score = rule.extremity(peak)
    for layer in range(L):
        chosen = np.flatnonzero(ok[layer])
        # most extreme first; equal peaks by neuron id, so the order is reproducible
        chosen = chosen[np.lexsort((chosen, -score[layer, chosen]))][:cap]
        ids[layer, : len(chosen)] = chosen
        values[layer, : len(chosen)] = act[layer][:, chosen].T
    return Neurons(
        above=float(options.neuron_above),
        below=float(options.neuron_below),
        relative=bool(options.neuron_relative),
        std=std,
        peak=peak,
        count=ok.sum(axis=-1).astype(np.int64),
        ids=ids,
        values=values,
    )


def _resid(resid: torch.Tensor, labels: list[str], full: bool) -> Resid:
    resid = resid.float().cpu()
    n_sample = min(N_SAMPLE, resid.shape[-1])
    return Resid(
        labels=labels,
        norm=numpy_of(resid.norm(dim=-1)),
        pooled=numpy_of(pool(resid)),
        sample_dims=np.arange(n_sample, dtype=np.int64),
        sample=numpy_of(resid[..., :n_sample]),
        full=numpy_of(resid) if full else None,
    )


def _mlp(acts: list[torch.Tensor]) -> Mlp:
    act = torch.stack([a.float().cpu() for a in acts])  # [L, P, d_mlp]
    n = min(N_NEURONS, act.shape[-1])
    top = act.abs().amax(dim=1).topk(n, dim=-1).indices  # [L, N]
    values = act.gather(-1, top[:, None, :].expand(-1, act.shape[1], -1))  # [L, P, N]
    return Mlp(
        top_neurons=numpy_of(top),
        top_values=numpy_of(values.transpose(1, 2)),
        pooled=numpy_of(pool(act)),
    )


def _embedding(W_E: torch.Tensor, ids: torch.Tensor) -> Embedding:
    rows = W_E[ids.to(W_E.device)].float().cpu()  # [P, D]
    unit = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n_sample = min(N_SAMPLE, rows.shape[-1])
    return Embedding(
        W_E_sample=numpy_of(rows[:, :n_sample]),
        W_E_norm=numpy_of(rows.norm(dim=-1)),
        cosine=numpy_of(unit @ unit.T),
    )


def _model_info(loaded: LoadedModel, rec: Recording, mlp_width: int) -> ModelInfo:
    adapter = loaded.adapter
    return ModelInfo(
        id=loaded.id,
        source=loaded.source,
        file_sha256=loaded.file_sha256,
        revision=loaded.revision,
        architecture=adapter.architecture,
        n_layers=adapter.n_layers,
        n_heads=rec.attentions[0].shape[0],
        d_model=rec.resid_pre[0].shape[-1],
        d_mlp=mlp_width,
        d_vocab=adapter.W_U.shape[0],
        dtype=loaded.dtype,
        attn_implementation=loaded.attn_implementation,
        tied_embeddings=adapter.tied_embeddings,
        final_logit_softcap=adapter.final_logit_softcap,
        unembedding_hash=loaded.unembedding_hash,
    )


def numpy_of(x: torch.Tensor) -> np.ndarray:
    """``x`` as a NumPy array for a trace: float32 (bfloat16 too), or int64 for integers."""
    x = x.detach().cpu()
    if x.is_floating_point():
        x = x.float()  # numpy has no bfloat16
    return x.numpy().astype(np.int64 if not x.is_floating_point() else np.float32)


def with_sections(trace: Trace, loaded: LoadedModel, **sections: Any) -> Trace:
    """``trace`` with optional ``sections`` set, its ``vocab`` extended to every id they name.

    Any optional section of the schema (:data:`mechviz.tracing.schema.SECTION_SINCE`)
    may be given; the token ids each names are those validation asks ``vocab``
    for (:func:`mechviz.tracing.validate.section_token_ids`). The result is validated
    (it is a :class:`Trace`) and has the current schema version; the sections
    not given are kept.
    """
    unknown = set(sections) - OPTIONAL_SECTIONS
    if unknown:
        raise ValueError(f"Not optional sections: {', '.join(sorted(unknown))}.")
    ids: set[int] = set()
    for name, section in sections.items():
        if section is None:
            continue
        for array in section_token_ids(name, section):
            ids |= {int(i) for i in np.asarray(array).ravel().tolist() if i >= 0}
    vocab = dict(trace.vocab)
    vocab.update({i: display_text(loaded.tokenizer, i) for i in sorted(ids - set(vocab))})
    return dataclasses.replace(
        trace, schema_version=SCHEMA_VERSION, vocab=dict(sorted(vocab.items())), **sections
    )
