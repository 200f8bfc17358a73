"""Run one forward pass and reduce it to a :class:`~mechviz.schema.Trace`.

This is the only module (with ``models`` and ``adapter``) that touches torch.
Hooks on every block record ``resid_pre``/``resid_post``, what the MLP adds and
the MLP activation; attention patterns come from the eager attention path; the
logit lens reads every boundary through :meth:`Adapter.logit_lens`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mechviz import __version__
from mechviz.errors import MechvizError
from mechviz.models import LoadedModel
from mechviz.schema import (
    SCHEMA_VERSION,
    Attention,
    Blocks,
    Embedding,
    Lens,
    Mlp,
    ModelInfo,
    Output,
    Resid,
    Tokens,
    Trace,
)
from mechviz.tokens import display_text, token_offsets

POOL_WIDTH = 64  # R: columns in the compact view; 576 / 64 = 9 dims per column
N_SAMPLE = 16  # S: residual dimensions kept verbatim, enough for a readable column
N_NEURONS = 16  # N: MLP neurons kept per layer, as many as a Neuroscope page shows
LENS_CHUNK = 1 << 24  # logits computed at once by the lens (~64 MB of float32)


@dataclass(frozen=True)
class TraceOptions:
    top_k: int = 10
    max_tokens: int = 64  # longer prompts make attention grids unreadable
    full: bool = False


@dataclass
class Recording:
    """Raw tensors of one forward pass, before reduction (kept for tests)."""

    input_ids: torch.Tensor  # [P]
    resid_pre: list[torch.Tensor]  # L x [P, D]
    resid_post: list[torch.Tensor]  # L x [P, D]
    mlp_out: list[torch.Tensor]  # L x [P, D]
    mlp_act: list[torch.Tensor]  # L x [P, d_mlp]
    attentions: list[torch.Tensor]  # L x [H, P, P]
    logits: torch.Tensor  # [P, V], the model's own output

    def boundaries(self) -> torch.Tensor:
        """``embed``, then ``{l}_mid`` and ``{l}_post`` for each layer: [B, P, D]."""
        states = [self.resid_pre[0]]
        for post, mlp in zip(self.resid_post, self.mlp_out):
            states += [post - mlp, post]  # resid_mid = resid_post - mlp_out
        return torch.stack(states)


def boundary_labels(n_layers: int) -> list[str]:
    """``embed``, ``0_mid``, ``0_post``, ``1_mid``, ... (the B residual boundaries)."""
    labels = ["embed"]
    for layer in range(n_layers):
        labels += [f"{layer}_mid", f"{layer}_post"]
    return labels


def tokenize(loaded: LoadedModel, prompt: str, max_tokens: int) -> torch.Tensor:
    if not prompt.strip():
        raise MechvizError("The prompt is empty; give some text to trace.")
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
    rec: dict[str, list[Any]] = {k: [None] * L for k in ("pre", "post", "mlp_out", "act")}
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
    input_ids = tokenize(loaded, prompt, options.max_tokens)
    rec = record(loaded, input_ids)
    return build_trace(loaded, prompt, rec, options)


@torch.no_grad()
def build_trace(loaded: LoadedModel, prompt: str, rec: Recording, options: TraceOptions) -> Trace:
    adapter = loaded.adapter
    resid = rec.boundaries()  # [B, P, D]
    # The lens reads the layer boundaries (embed, then each resid_post), as
    # TransformerLens' accumulated_resid does; resid_mid would double its cost.
    labels = boundary_labels(adapter.n_layers)
    stats = lens_statistics(adapter, resid[0::2], rec.logits, options.top_k)
    lens = Lens(labels=labels[0::2], **{k: _np(v) for k, v in stats.items()})
    output = _output(rec.logits, options.top_k)
    mlp = _mlp(rec.mlp_act)
    ids = rec.input_ids.tolist()
    used = (
        set(ids) | set(np.unique(lens.top_ids).tolist()) | set(np.unique(output.top_ids).tolist())
    )
    tokenizer = loaded.tokenizer
    return Trace(
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
            attn_out_norm=_np(
                torch.stack(
                    [
                        post - pre - mlp
                        for pre, post, mlp in zip(rec.resid_pre, rec.resid_post, rec.mlp_out)
                    ]
                ).norm(dim=-1)
            ),
            mlp_out_norm=_np(torch.stack(rec.mlp_out).norm(dim=-1)),
        ),
        attention=Attention(pattern=_np(torch.stack(rec.attentions))),
        mlp=mlp,
        embedding=_embedding(adapter.W_E, rec.input_ids),
        lens=lens,
        output=output,
    )


def lens_statistics(
    adapter: Any, resid: torch.Tensor, final_logits: torch.Tensor, top_k: int
) -> dict[str, torch.Tensor]:
    """The logit lens at every boundary and position, reduced to statistics.

    Entropy and KL are in nats; KL is ``KL(final || lens)``, as tuned-lens
    reports it; the "final token" is the model's own top-1 at that position.
    Each statistic is one pass over the ``[B, P, V]`` logits (the bulk of the
    trace's cost), using ``log p = logits - logsumexp(logits)``.
    """
    B, P, _ = resid.shape
    final_logp = log_probs(final_logits).float()  # [P, V]
    final_p = final_logp.exp()
    final_neg_entropy = (final_p * final_logp).sum(-1)  # [P]
    target = final_logits.argmax(dim=-1)[None, :, None]  # [1, P, 1]
    V = final_logits.shape[-1]
    step = max(1, LENS_CHUNK // (P * V))
    parts: list[dict[str, torch.Tensor]] = []
    for start in range(0, B, step):
        logits = adapter.logit_lens(resid[start : start + step]).float().to(final_p.device)
        lse = torch.logsumexp(logits, dim=-1)  # [b, P]
        top_logits, top_ids = logits.topk(top_k, dim=-1)
        target_logit = logits.gather(-1, target.expand(logits.shape[0], P, 1))[..., 0]
        p = torch.exp(logits - lse[..., None])
        parts.append(
            {
                "top_ids": top_ids,
                "top_probs": torch.exp(top_logits - lse[..., None]),
                "entropy": lse - torch.linalg.vecdot(p, logits),
                "kl_to_final": final_neg_entropy + lse - torch.linalg.vecdot(final_p, logits),
                "final_token_rank": (logits > target_logit[..., None]).sum(-1),
                "final_token_prob": torch.exp(target_logit - lse),
            }
        )
    return {k: torch.cat([part[k] for part in parts]) for k in parts[0]}


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax in float64.

    float32's ``log_softmax`` over a 49k vocabulary is off by ~2e-5 in
    probability on some CPUs, above what we promise (1e-5).
    """
    logits = logits.double()
    return logits - torch.logsumexp(logits, dim=-1, keepdim=True)


def _output(logits: torch.Tensor, top_k: int) -> Output:
    logp = log_probs(logits)
    top_logp, top_ids = logp.topk(top_k, dim=-1)
    return Output(
        top_ids=_np(top_ids),
        top_probs=_np(top_logp.exp()),
        entropy=_np(-(logp.exp() * logp).sum(-1)),
    )


def pool(x: torch.Tensor, width: int = POOL_WIDTH) -> torch.Tensor:
    """Max-|x| pooling of the last axis into ``width`` columns, keeping the sign."""
    D = x.shape[-1]
    per = -(-D // width)
    padded = torch.nn.functional.pad(x, (0, per * width - D))
    groups = padded.reshape(*x.shape[:-1], width, per)
    idx = groups.abs().argmax(dim=-1, keepdim=True)
    return groups.gather(-1, idx)[..., 0]


def _resid(resid: torch.Tensor, labels: list[str], full: bool) -> Resid:
    resid = resid.float().cpu()
    n_sample = min(N_SAMPLE, resid.shape[-1])
    return Resid(
        labels=labels,
        norm=_np(resid.norm(dim=-1)),
        pooled=_np(pool(resid)),
        sample_dims=np.arange(n_sample, dtype=np.int64),
        sample=_np(resid[..., :n_sample]),
        full=_np(resid) if full else None,
    )


def _mlp(acts: list[torch.Tensor]) -> Mlp:
    act = torch.stack([a.float().cpu() for a in acts])  # [L, P, d_mlp]
    n = min(N_NEURONS, act.shape[-1])
    top = act.abs().amax(dim=1).topk(n, dim=-1).indices  # [L, N]
    values = act.gather(-1, top[:, None, :].expand(-1, act.shape[1], -1))  # [L, P, N]
    return Mlp(top_neurons=_np(top), top_values=_np(values.transpose(1, 2)), pooled=_np(pool(act)))


def _embedding(W_E: torch.Tensor, ids: torch.Tensor) -> Embedding:
    rows = W_E[ids.to(W_E.device)].float().cpu()  # [P, D]
    unit = rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    n_sample = min(N_SAMPLE, rows.shape[-1])
    return Embedding(
        W_E_sample=_np(rows[:, :n_sample]),
        W_E_norm=_np(rows.norm(dim=-1)),
        cosine=_np(unit @ unit.T),
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


def _np(x: torch.Tensor) -> np.ndarray:
    x = x.detach().cpu()
    if x.is_floating_point():
        x = x.float()  # numpy has no bfloat16
    return x.numpy().astype(np.int64 if not x.is_floating_point() else np.float32)
