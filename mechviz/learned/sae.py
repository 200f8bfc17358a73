"""Sparse autoencoders on one layer's residual stream: TopK SAE, training, evaluation, dashboards.

Architecture, a TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders",
arXiv 2406.04093), float32, with ``d = d_model`` and ``F = 8 d`` features by default::

    x' = s x                                  s: mean ||x'||^2 = d on the training tokens
    z  = ReLU(TopK_k((x' - b_dec) W_enc + b_enc))  W_enc [d, F], b_enc [F], k = 32
    x^ = (z W_dec + b_dec) / s                W_dec [F, d] with unit-norm rows, b_dec [d]

``s`` is stored with the SAE, so :meth:`SparseAutoencoder.encode` and ``decode`` take and give model
units. Activations outside this module are in model units too (``a = z / s``), so feature ``i``
adds exactly ``a_i`` along the unit vector ``W_dec[i]``, and a residual vector is
``sum_i a_i W_dec[i] + b_dec / s + error`` (:func:`decompose`).

The site is the block output ``{l}_post`` (default: the middle layer ``L // 2``), gathered from
corpus windows of ``WINDOW`` tokens by running the model only up to that block (a hook raises
:class:`_Stop`). A token whose norm exceeds ``SINK_RATIO`` times its window's median is left out of
training, evaluation and the splice: an attention sink with a "massive activation" (Gemma Scope
leaves out BOS). On the default model at layer 15 every window's first token has a norm of
~24,000 against a median of ~174 (99.9% of tokens are under 240); so do the tokens after it while
they repeat it (two newlines, ``0 0 0``). Left in, the 1% of such tokens held 84% of the squared
norm, and the SAE learnt them instead of the text.

Training follows Gao et al.: ``W_enc`` starts as ``W_dec.T``, ``b_dec`` at the geometric median,
Adam (eps 6.25e-10) at 4x their ``2e-4 / sqrt(F / 2**14)`` (``LR_GAIN``) on batches of 1024,
decoder rows kept at unit norm (the gradient along each row removed, then renormalised), and the
AuxK loss (coefficient 1/32, ``d / 2`` latents) that lets dead latents model the error. The
encoder's gradient is written by hand for the ``k`` chosen latents only (:class:`_Chosen`),
three times faster than the dense backward on a CPU.

Evaluation on the held-out split: fraction of variance explained, mean L0, the share of features
that never fire, and the "dark matter" cost of Gemma Scope (arXiv 2408.05147): the model's
next-token cross-entropy with the residual replaced by its reconstruction, against the clean one
(and against zero for scale). Dashboards: each feature's top contexts and the tokens its decoder
direction promotes through the final norm and ``W_U``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as fn
from torch import nn

from mechviz import __version__
from mechviz.errors import MechvizError
from mechviz.files import atomic_write, cache_dir
from mechviz.model.load import LoadedModel
from mechviz.model.threads import ThreadChooser
from mechviz.model.tokens import display_text, shown
from mechviz.tracing.schema import Features

if TYPE_CHECKING:
    from mechviz.tracing.record import Recording

FORMAT = 1  # bump when the files of a saved SAE change
K = 32  # active latents per token (Gao et al. use 32 for their headline runs)
EXPANSION = 8  # features per residual dimension: 4608 for d_model 576, as the issue asks
WINDOW = 128  # tokens per corpus window; traces are at most 64 tokens by default
GATHER_WINDOWS = 16  # windows per forward pass while gathering: 2048 tokens
CE_WINDOWS = 4  # windows per full forward pass for the cross-entropy (logits: 100 MB)
BATCH = 1024  # activations per optimizer step: more steps for the few tokens a CPU gathers
TOKENS = 1 << 20  # default activations gathered for training
EPOCHS = 8.0  # passes over the gathered activations at most (gathering costs ~10x a pass)
GATHER_SHARE = 0.6  # of a time budget spent gathering; the rest trains
EVAL_TOKENS = 1 << 14  # held-out tokens for variance explained, L0 and dead features
CE_TOKENS = 1 << 12  # of those, run through the whole model three times (clean, SAE, zero)
SINK_RATIO = 10.0  # a token is an attention sink when its norm is 10x its window's median
ADAM_EPS = 6.25e-10  # Gao et al.
# Gao et al.'s rate is for millions of steps; a CPU makes thousands. Held-out FVE after 8 passes
# over 150k tokens (batch 1024): 0.788 at their rate, 0.814 at 2x, 0.829 at 4x; after 24 passes
# 0.833 at 2x, 0.839 at 4x (batch 4096 at their rate: 0.726 after 8).
LR_GAIN = 4.0
AUX_COEFF = 1 / 32  # Gao et al.
DEAD_AFTER = 1 << 18  # tokens without firing before AuxK treats a latent as dead
DECAY_SHARE = 0.2  # the learning rate falls linearly to 0 over the last 20% of training
DASH_TOKENS = 1 << 18  # training tokens read for the dashboards
CONTEXTS = 5  # top contexts per feature
BEFORE, AFTER = 9, 2  # tokens around the activating one: 12-token contexts
PROMOTED = 8  # tokens each feature promotes through W_U
WEIGHTS, META, FEATURES = "sae.safetensors", "sae.json", "features.npz"


# --- the model ------------------------------------------------------------------------------


class SparseAutoencoder(nn.Module):
    """A TopK sparse autoencoder of one residual site; see the module docstring."""

    def section(self, rec: Recording) -> Features:
        """The ``features`` section of a trace read with this SAE (:func:`features_section`)."""
        return features_section(self, rec)

    def __init__(self, d_model: int, features: int, k: int = K, scale: float = 1.0) -> None:
        super().__init__()
        if not 1 <= k <= features:
            raise MechvizError(f"k must be between 1 and the features ({features}); got {k}.")
        self.d_model, self.features, self.k = d_model, features, k
        w_dec = fn.normalize(torch.randn(features, d_model), dim=1)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone())  # Gao et al.: the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(features))
        self.b_dec = nn.Parameter(torch.zeros(d_model))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.layer: int | None = None
        self.median_norm = math.inf  # of the training tokens; see in_distribution
        self.meta: dict[str, Any] = {}
        self.dashboards: Dashboards | None = None

    def pre(self, xs: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations ``[..., F]`` of scaled inputs ``x'``."""
        return torch.addmm(self.b_enc, (xs - self.b_dec).reshape(-1, self.d_model), self.W_enc)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Active latents of ``x`` ``[N, d]`` (model units): ids and activations ``[N, k]``.

        Activations are in model units, sorted largest first; ReLU may leave some at 0.
        """
        x = x.detach().float().reshape(-1, self.d_model)
        vals, ids = self.pre(x * self.scale).topk(self.k, dim=-1, sorted=True)
        return ids, vals.clamp_min(0) / self.scale

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
        """``sum_i a_i W_dec[i] + b_dec / s`` ``[N, d]`` of model-unit activations."""
        out = fn.embedding_bag(ids, self.W_dec, per_sample_weights=acts.float(), mode="sum")
        return out + self.b_dec / self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` ``[..., d]``, model units."""
        return self.decode(*self.encode(x)).reshape(x.shape)

    def in_distribution(self, resid_norm: np.ndarray) -> np.ndarray:
        """False for norms like an attention sink's, which training left out (see ``keep_mask``)."""
        return np.asarray(resid_norm) <= SINK_RATIO * self.median_norm

    def sha256(self) -> str:
        """SHA-256 of the float32 bytes of W_enc, b_enc, W_dec, b_dec and the scale, in order."""
        digest = hashlib.sha256()
        for t in (self.W_enc, self.b_enc, self.W_dec, self.b_dec, self.scale):
            digest.update(t.detach().float().contiguous().numpy().tobytes())
        return digest.hexdigest()

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))


# --- what a trace and a scene read ------------------------------------------------------------


def encode_positions(
    sae: SparseAutoencoder, resid: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per position of ``resid`` ``[P, d]``: feature ids ``[P, k]`` and activations ``[P, k]``.

    Activations are in model units, largest first (some may be 0); with them the norm of the
    error vector ``resid - reconstruction`` ``[P]`` and of ``resid`` itself ``[P]``, float32.
    """
    x = torch.as_tensor(np.asarray(resid) if not torch.is_tensor(resid) else resid).float()
    ids, acts = sae.encode(x)
    error = x - sae.decode(ids, acts)
    return (
        ids.numpy().astype(np.int32),
        acts.numpy().astype(np.float32),
        error.norm(dim=-1).numpy().astype(np.float32),
        x.norm(dim=-1).numpy().astype(np.float32),
    )


@dataclass(frozen=True)
class Decomposition:
    """One residual vector as ``sum_i vectors[i] + bias + error`` (model units, float32)."""

    ids: np.ndarray  # [n] feature ids, largest activation first
    acts: np.ndarray  # [n] activations: the length of each feature's vector
    vectors: np.ndarray  # [n, d] acts[i] * W_dec[ids[i]]
    bias: np.ndarray  # [d] b_dec / s, the part every token shares
    reconstruction: np.ndarray  # [d] sum of all k features' vectors + bias
    error: np.ndarray  # [d] resid - reconstruction: the "dark matter"
    error_share: float  # ||error|| / ||resid||
    error_variance: float  # ||error||^2 / ||resid||^2

    @property
    def rest(self) -> np.ndarray:
        """The active features left out of ``vectors`` (when ``top`` cut them), summed."""
        return self.reconstruction - self.bias - self.vectors.sum(0)


def decompose(
    sae: SparseAutoencoder, resid: torch.Tensor | np.ndarray, top: int | None = None
) -> Decomposition:
    """``resid`` ``[d]`` written as its ``top`` (default all ``k``) most active features."""
    x = torch.as_tensor(np.asarray(resid) if not torch.is_tensor(resid) else resid).float()
    ids, acts = (t[0] for t in sae.encode(x[None]))
    recon = sae.decode(ids[None], acts[None])[0]
    n = int((acts > 0).sum()) if top is None else min(top, int((acts > 0).sum()))
    with torch.no_grad():
        vectors = acts[:n, None] * sae.W_dec[ids[:n]]
        error = x - recon
        norm2 = float(x.pow(2).sum().clamp_min(1e-30))
    return Decomposition(
        ids=ids[:n].numpy().astype(np.int32),
        acts=acts[:n].numpy().astype(np.float32),
        vectors=vectors.numpy().astype(np.float32),
        bias=(sae.b_dec / sae.scale).detach().numpy().astype(np.float32),
        reconstruction=recon.numpy().astype(np.float32),
        error=error.numpy().astype(np.float32),
        error_share=math.sqrt(float(error.pow(2).sum()) / norm2),
        error_variance=float(error.pow(2).sum()) / norm2,
    )


# --- layers and activations -----------------------------------------------------------------


def default_layer(loaded: LoadedModel) -> int:
    return loaded.adapter.n_layers // 2


def check_layer(loaded: LoadedModel, layer: int | None) -> int:
    """``layer``, or the default (the middle layer); one sentence when it does not exist."""
    n = loaded.adapter.n_layers
    if layer is None:
        return default_layer(loaded)
    if not 0 <= int(layer) < n:
        raise MechvizError(
            f"Layer {layer} does not exist in {loaded.id}; choose a layer from 0 to {n - 1}."
        )
    return int(layer)


class _Stop(Exception):  # noqa: N818 (a signal, not an error)
    """Raised by the hook after the block we need, so the rest of the model never runs."""


@contextmanager
def _at_block(
    loaded: LoadedModel,
    layer: int,
    *,
    stop: bool = False,
    edit: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Keep block ``layer``'s output as ``box["resid"]``; stop there, or replace it by ``edit``."""
    box: dict[str, torch.Tensor] = {}

    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        box["resid"] = hidden.detach().float().cpu()
        if stop:
            raise _Stop
        if edit is None:
            return None
        new = edit(box["resid"]).to(device=hidden.device, dtype=hidden.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    handle = loaded.adapter.layers[layer].register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


@torch.no_grad()
def resid_at(loaded: LoadedModel, layer: int, ids: torch.Tensor) -> torch.Tensor:
    """Block ``layer``'s output ``[B, T, d]`` float32 of ``ids`` ``[B, T]``; no later block runs."""
    device = loaded.adapter.embed.weight.device
    with _at_block(loaded, layer, stop=True) as box:
        try:
            loaded.model(ids.to(device), use_cache=False)
        except _Stop:
            pass
    return box["resid"]


def keep_mask(resid: torch.Tensor) -> torch.Tensor:
    """``[B, T]``: positions whose norm is at most ``SINK_RATIO`` times their window's median."""
    norms = resid.norm(dim=-1)
    return norms <= SINK_RATIO * norms.median(dim=1, keepdim=True).values


@dataclass
class Activations:
    """Residual vectors gathered from corpus windows, with where each came from."""

    x: torch.Tensor  # [N, d] float16, model units
    where: torch.Tensor  # [N] int64: window * T + position
    windows: np.ndarray  # [W, T] int32 token ids
    skipped: int  # attention sinks left out
    seconds: float

    @property
    def rate(self) -> float:
        return (len(self.x) + self.skipped) / max(self.seconds, 1e-9)


def gather(
    loaded: LoadedModel,
    corpus: Any,
    layer: int,
    *,
    tokens: int,
    window: int = WINDOW,
    seed: int = 0,
    deadline: float | None = None,
    line: _Line | None = None,
) -> Activations:
    """Activations at ``{layer}_post`` of up to ``tokens`` tokens of ``corpus`` windows."""
    from mechviz.learned.corpus import windows as corpus_windows

    it = corpus_windows(corpus, window, seed=seed)
    xs, wheres, wins, skipped, n = [], [], [], 0, 0
    threads = ThreadChooser(32)
    start = time.monotonic()
    while n < tokens and (n == 0 or deadline is None or time.monotonic() < deadline):
        chunk = [w for _, w in zip(range(GATHER_WINDOWS), it)]
        if not chunk:
            break
        ids = torch.as_tensor(np.stack(chunk)).long()
        resid = threads.run(ids.numel(), resid_at, loaded, layer, ids)
        keep = keep_mask(resid)
        skipped += int((~keep).sum())
        pos = torch.arange(ids.numel()).view(ids.shape) + len(wins) * window
        kept = resid[keep]  # float16 halves the memory; a rare huge value stays float32
        xs.append(kept.half() if kept.numel() == 0 or float(kept.abs().amax()) < 6e4 else kept)
        wheres.append(pos[keep])
        wins += chunk
        n += int(keep.sum())
        if line:
            line.show(f"{n:,}/{tokens:,} tokens  {n / (time.monotonic() - start):,.0f} tok/s")
    if not wins:
        raise MechvizError("The corpus has no window of text to gather activations from.")
    x = torch.cat(xs)[:tokens]
    return Activations(
        x=x,
        where=torch.cat(wheres)[:tokens],
        windows=np.stack(wins).astype(np.int32),
        skipped=skipped,
        seconds=time.monotonic() - start,
    )


class _Chosen(torch.autograd.Function):
    """The pre-activations of the chosen latents, with their gradient for those latents only.

    Forward returns ``vals`` (already computed without autograd); backward gives
    ``d/dW_enc[:, j] = sum_b g[b, j] x_b`` as a sparse product, ``d/dx_b = sum_j g[b, j]
    W_enc[:, j]`` by ``embedding_bag`` and ``d/db_enc`` by ``index_add``: O(B k d) instead of the
    dense O(B F d).
    """

    @staticmethod
    def forward(
        ctx: Any,
        xc: torch.Tensor,
        w_enc: torch.Tensor,
        b_enc: torch.Tensor,
        ids: torch.Tensor,
        vals: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(xc, w_enc, ids)
        return vals.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
        xc, w_enc, ids = ctx.saved_tensors
        n, k = ids.shape
        features = w_enc.shape[1]
        rows = torch.arange(n).repeat_interleave(k)
        flat = ids.reshape(-1)
        sparse = torch.sparse_coo_tensor(
            torch.stack([flat, rows]), g.reshape(-1), (features, n), check_invariants=False
        )
        grad_w = torch.sparse.mm(sparse, xc).T
        grad_b = torch.zeros(features).index_add_(0, flat, g.reshape(-1))
        grad_x = fn.embedding_bag(ids, w_enc.T, per_sample_weights=g, mode="sum")
        return grad_x, grad_w, grad_b, None, None


def _loss(sae: SparseAutoencoder, xs: torch.Tensor, dead: torch.Tensor | None) -> tuple:
    """MSE of the reconstruction of scaled ``xs`` (+ AuxK over ``dead``), and the plain MSE."""
    xc = xs - sae.b_dec
    with torch.no_grad():
        pre = torch.addmm(sae.b_enc, xc, sae.W_enc)
        vals, ids = pre.topk(sae.k, dim=-1, sorted=False)
    acts = torch.relu(_Chosen.apply(xc, sae.W_enc, sae.b_enc, ids, vals))
    recon = fn.embedding_bag(ids, sae.W_dec, per_sample_weights=acts, mode="sum") + sae.b_dec
    mse = (recon - xs).pow(2).mean()
    loss = mse
    n_dead = 0 if dead is None else int(dead.sum())
    if n_dead:
        k_aux = min(sae.d_model // 2, n_dead)  # Gao et al.: d/2 latents (512 of their 1024)
        with torch.no_grad():
            vals_a, ids_a = pre.masked_fill(~dead, -math.inf).topk(k_aux, dim=-1, sorted=False)
        acts_a = torch.relu(_Chosen.apply(xc, sae.W_enc, sae.b_enc, ids_a, vals_a))
        guess = fn.embedding_bag(ids_a, sae.W_dec, per_sample_weights=acts_a, mode="sum")
        loss = loss + AUX_COEFF * (guess - (xs - recon).detach()).pow(2).mean()
    return loss, mse.detach(), ids[acts.detach() > 0]


@dataclass
class TrainLog:
    tokens: int = 0  # activations passed through the optimizer (epochs x gathered)
    steps: int = 0
    seconds: float = 0.0
    epochs: float = 0.0
    fve: list[float] = field(default_factory=list)  # per step, on the batch


def _geometric_median(x: torch.Tensor, iters: int = 32) -> torch.Tensor:
    """Weiszfeld's iteration from the mean; rows of ``x`` ``[N, d]``."""
    m = x.mean(0)
    for _ in range(iters):
        w = 1 / (x - m).norm(dim=1).clamp_min(1e-6)
        m = (w[:, None] * x).sum(0) / w.sum()
    return m


def learning_rate(features: int) -> float:
    """Adam's rate for ``F`` latents: ``LR_GAIN`` x Gao et al.'s ``2e-4 / sqrt(F / 2^14)``."""
    return LR_GAIN * 2e-4 / math.sqrt(features / 2**14)


def train_steps(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    *,
    epochs: float = EPOCHS,
    batch: int = BATCH,
    deadline: float | None = None,
    seed: int = 0,
    lr: float | None = None,
    line: _Line | None = None,
) -> TrainLog:
    """Train ``sae`` on model-unit activations ``x`` ``[N, d]`` (any float dtype) in place."""
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    batch = min(batch, n)
    per_epoch = max(1, n // batch)
    total = max(1, round(epochs * per_epoch))
    lr = lr or learning_rate(sae.features)
    opt = torch.optim.Adam(sae.parameters(), lr=lr, eps=ADAM_EPS)
    with torch.no_grad():
        sample = x[torch.randperm(n, generator=gen)[:4096]].float() * sae.scale
        sae.b_dec.copy_(_geometric_median(sample))
        variance = float((sample - sample.mean(0)).pow(2).sum(1).mean()) / sae.d_model
    since = torch.zeros(sae.features, dtype=torch.long)  # tokens since each latent last fired
    log, threads, start, step_seconds = TrainLog(), ThreadChooser(32), time.monotonic(), 0.0
    perm = torch.randperm(n, generator=gen)
    budget = None if deadline is None else deadline - start
    for step in range(total):
        if step and deadline is not None and time.monotonic() + step_seconds > deadline:
            break
        if step and step % per_epoch == 0:
            perm = torch.randperm(n, generator=gen)
        j = (step % per_epoch) * batch
        xs = x[perm[j : j + batch]].float() * sae.scale
        done = max(step / total, (time.monotonic() - start) / budget if budget else 0.0)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (1.0 - done) / DECAY_SHARE)
        t0 = time.monotonic()
        dead = since >= DEAD_AFTER
        mse, fired = threads.run(len(xs), _step, sae, opt, xs, dead)
        step_seconds = time.monotonic() - t0
        since += len(xs)
        since[fired] = 0
        log.steps += 1
        log.tokens += len(xs)
        log.fve.append(1.0 - float(mse) / max(variance, 1e-30))
        if line:
            recent = log.fve[-8:]
            line.show(
                f"step {log.steps}/{total}  FVE {sum(recent) / len(recent):.3f}  "
                f"dead {float((since >= DEAD_AFTER).float().mean()):.1%}  "
                f"{log.tokens / (time.monotonic() - start):,.0f} tok/s"
            )
    log.seconds = time.monotonic() - start
    log.epochs = log.tokens / n
    return log


def _step(
    sae: SparseAutoencoder, opt: torch.optim.Optimizer, xs: torch.Tensor, dead: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    opt.zero_grad(set_to_none=True)
    loss, mse, fired = _loss(sae, xs, dead if bool(dead.any()) else None)
    loss.backward()
    with torch.no_grad():  # Gao et al.: no gradient along the decoder rows, then renormalise
        w, g = sae.W_dec, sae.W_dec.grad
        g.sub_((g * w).sum(1, keepdim=True) * w)
    opt.step()
    sae.normalise_decoder()
    return mse, fired


def train_sae(
    loaded: LoadedModel,
    corpus: Any,
    *,
    layer: int | None = None,
    tokens: int = TOKENS,
    features: int | None = None,
    k: int = K,
    minutes: float | None = None,
    epochs: float = EPOCHS,
    batch: int = BATCH,
    eval_corpus: Any = None,
    seed: int = 0,
    save: bool = True,
    progress: bool = True,
) -> SparseAutoencoder:
    """Train, evaluate and (with ``save``) cache an SAE at ``{layer}_post`` of ``loaded``.

    ``corpus`` is the train split (:func:`mechviz.learned.corpus.load_corpus`);
    ``eval_corpus`` the held-out
    split (default: loaded from the same cache). Gathers up to ``tokens`` activations, then trains
    ``epochs`` passes over them. ``minutes`` bounds the whole call: evaluation is measured first,
    gathering may use ``GATHER_SHARE`` of what is left, training the rest, less the time the
    dashboards and the remaining evaluation are expected to take. Evaluation reads
    ``min(EVAL_TOKENS, tokens / 4)`` held-out tokens, ``CE_TOKENS`` at most through the whole
    model.
    """
    layer = check_layer(loaded, layer)
    if tokens < 1 or (minutes is not None and minutes <= 0):
        raise MechvizError(f"--tokens and --minutes must be above 0; got {tokens}, {minutes}.")
    d = int(loaded.adapter.W_U.shape[1])
    features = features or EXPANSION * d
    if eval_corpus is None:
        from mechviz.learned.corpus import load_corpus

        eval_corpus = load_corpus(loaded.tokenizer, "eval", progress=progress)
    start = time.monotonic()
    end = None if minutes is None else start + 60 * minutes
    torch.manual_seed(seed)
    line = _Line(f"train-sae layer {layer}", progress, end)
    eval_tokens = max(WINDOW * 2, min(EVAL_TOKENS, tokens // 4))
    line.phase("held-out text")
    held = _held_out(loaded, eval_corpus, layer, eval_tokens, line)
    reserve = 2.2 * held.clean_seconds  # the SAE and zero runs to come
    line.phase("gathering")
    share = None if end is None else start + GATHER_SHARE * (end - start - reserve)
    acts = gather(loaded, corpus, layer, tokens=tokens, seed=seed, deadline=share, line=line)
    x = acts.x
    norms2 = torch.cat([x[i : i + BATCH].float().pow(2).sum(1) for i in range(0, len(x), BATCH)])
    sae = SparseAutoencoder(d, features, k, scale=math.sqrt(d / float(norms2.mean())))
    sae.layer, sae.median_norm = layer, float(norms2.median().sqrt())
    line.phase("training")
    dash = min(len(x), DASH_TOKENS)
    stop = None if end is None else end - reserve - 0.1 * (end - time.monotonic() - reserve)
    log = train_steps(sae, x, epochs=epochs, batch=batch, deadline=stop, seed=seed, line=line)
    line.phase("evaluating")
    evaluation = evaluate_sae(loaded, sae, held, line=line)
    line.phase("dashboards")
    sae.dashboards = build_dashboards(loaded, sae, acts, tokens=dash)
    line.close()
    sae.meta = _meta(loaded, sae, corpus, eval_corpus, acts, log, evaluation, batch, start)
    if save:
        save_sae(loaded, sae)
    return sae


# --- evaluation -------------------------------------------------------------------------------


@dataclass
class HeldOut:
    """Held-out activations, and the clean cross-entropy of the windows run whole."""

    layer: int
    acts: Activations
    ce_windows: torch.Tensor  # [W, T] token ids run through the whole model
    ce_keep: torch.Tensor  # [W, T] positions the SAE replaces
    clean_nats: float
    clean_seconds: float


def _held_out(
    loaded: LoadedModel, corpus: Any, layer: int, tokens: int, line: _Line | None = None
) -> HeldOut:
    acts = gather(loaded, corpus, layer, tokens=tokens, seed=1, line=line)
    n_ce = max(1, min(len(acts.windows), CE_TOKENS // acts.windows.shape[1]))
    ce_windows = torch.as_tensor(acts.windows[:n_ce]).long()
    t0 = time.monotonic()
    keep: list[torch.Tensor] = []
    clean = _cross_entropy(loaded, layer, ce_windows, None, keep)
    return HeldOut(layer, acts, ce_windows, torch.cat(keep), clean, time.monotonic() - t0)


@torch.no_grad()
def _cross_entropy(
    loaded: LoadedModel,
    layer: int,
    windows: torch.Tensor,
    replace: Callable[[torch.Tensor], torch.Tensor] | None,
    keep_out: list[torch.Tensor] | None = None,
) -> float:
    """Mean next-token cross-entropy (nats) of predictions made at the positions the SAE reads.

    With ``replace``, block ``layer``'s output at those positions (not at a sink) is
    replaced by ``replace(resid)`` before the rest of the model runs.
    """
    total, count = 0.0, 0
    device = loaded.adapter.embed.weight.device
    threads = ThreadChooser(32)
    for i in range(0, len(windows), CE_WINDOWS):
        ids = windows[i : i + CE_WINDOWS]
        masks: list[torch.Tensor] = []

        def edit(resid: torch.Tensor, masks: list = masks) -> torch.Tensor:
            keep = keep_mask(resid)
            masks.append(keep)
            if replace is None:
                return resid
            out = resid.clone()
            out[keep] = replace(resid[keep])
            return out

        def run(ids: torch.Tensor = ids, edit: Callable = edit) -> torch.Tensor:
            with _at_block(loaded, layer, edit=edit):
                return loaded.model(ids.to(device), use_cache=False).logits.float().cpu()

        logits = threads.run(ids.numel(), run)
        keep = masks[0][:, :-1]
        ce = fn.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        total += float(ce[keep].sum())
        count += int(keep.sum())
        if keep_out is not None:
            keep_out.append(masks[0])
    return total / max(count, 1)


@dataclass(frozen=True)
class Evaluation:
    """Quality of an SAE on held-out text (see :func:`evaluate_sae`)."""

    tokens: int  # held-out activations read for the figures below
    fve: float  # fraction of variance explained: 1 - sum ||x - x^||^2 / sum ||x - mean||^2
    l0: float  # mean active latents per token
    dead_share: float  # features active on none of the ``tokens`` held-out tokens
    ce_tokens: int  # predictions in the cross-entropies
    ce_clean: float  # nats per token, the model as is
    ce_sae: float  # with the layer's residual replaced by the reconstruction
    ce_zero: float  # with the layer's residual replaced by zeros
    ce_delta: float  # ce_sae - ce_clean: the cost of the dark matter
    ce_ratio: float  # ce_sae / ce_clean
    ce_recovered: float  # (ce_zero - ce_sae) / (ce_zero - ce_clean)

    def to_dict(self) -> dict[str, Any]:
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v
            for k, v in asdict(self).items()
        }


def evaluate_sae(
    loaded: LoadedModel, sae: SparseAutoencoder, held: HeldOut, line: _Line | None = None
) -> Evaluation:
    """Variance explained, L0 and dead features on ``held``, and the three cross-entropies."""
    fired = torch.zeros(sae.features, dtype=torch.bool)
    err = var = l0 = 0.0
    x_all = held.acts.x
    mean = x_all.float().mean(0)
    for i in range(0, len(x_all), BATCH):
        x = x_all[i : i + BATCH].float()
        ids, acts = sae.encode(x)
        active = acts > 0
        fired[ids[active]] = True
        l0 += float(active.sum())
        err += float((x - sae.decode(ids, acts)).pow(2).sum())
        var += float((x - mean).pow(2).sum())
    if line:
        line.show("cross-entropy with the SAE's reconstruction")
    ce_sae = _cross_entropy(loaded, held.layer, held.ce_windows, sae)
    ce_zero = _cross_entropy(loaded, held.layer, held.ce_windows, torch.zeros_like)
    clean = held.clean_nats
    n_ce = int(held.ce_keep[:, :-1].sum())
    return Evaluation(
        tokens=len(x_all),
        fve=1.0 - err / max(var, 1e-30),
        l0=l0 / max(len(x_all), 1),
        dead_share=1.0 - float(fired.float().mean()),
        ce_tokens=n_ce,
        ce_clean=clean,
        ce_sae=ce_sae,
        ce_zero=ce_zero,
        ce_delta=ce_sae - clean,
        ce_ratio=ce_sae / clean if clean else math.nan,
        ce_recovered=(ce_zero - ce_sae) / (ce_zero - clean) if ce_zero != clean else math.nan,
    )


# --- dashboards ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Dashboards:
    """Each feature's top contexts and promoted tokens (``F`` features, ``C`` contexts)."""

    acts: np.ndarray  # [F, C] float32 activation (model units) at the marked token, 0: none
    contexts: np.ndarray  # [F, C, BEFORE + 1 + AFTER] int32 token ids, -1 where none
    marked: np.ndarray  # [F, C] int16 index in the context of the activating token
    promoted: np.ndarray  # [F, PROMOTED] int32 token ids, most promoted first
    promoted_logits: np.ndarray  # [F, PROMOTED] float32 (W_U . normed W_dec[f]; no bias)
    frequency: np.ndarray  # [F] float32 share of the dashboard tokens where the feature fires
    descriptions: np.ndarray  # [F] str: fires-on tokens, promoted tokens, one context
    tokens: int  # training tokens read

    def describe(self, feature: int) -> str:
        return str(self.descriptions[feature])

    def save(self, path: Path) -> None:
        arrays = {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, tokens=np.int64(self.tokens), **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: Path) -> Dashboards:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files}
        fields["tokens"] = int(fields["tokens"])
        return cls(**fields)


@torch.no_grad()
def build_dashboards(
    loaded: LoadedModel, sae: SparseAutoencoder, acts: Activations, *, tokens: int = DASH_TOKENS
) -> Dashboards:
    """Top contexts over the first ``tokens`` of ``acts``, promoted tokens, descriptions."""
    n = min(tokens, len(acts.x))
    best = torch.zeros(CONTEXTS, sae.features)
    where = torch.full((CONTEXTS, sae.features), -1, dtype=torch.long)
    counts = torch.zeros(sae.features)
    for i in range(0, n, BATCH):
        ids, a = sae.encode(acts.x[i : min(i + BATCH, n)].float())
        dense = torch.zeros(len(ids), sae.features).scatter_(1, ids, a)
        counts += (dense > 0).sum(0)
        vals, rows = dense.topk(min(CONTEXTS, len(ids)), dim=0)
        both = torch.cat([best, vals])
        best, pick = both.topk(CONTEXTS, dim=0)
        where = torch.cat([where, acts.where[i + rows]]).gather(0, pick)
    contexts, marked = _contexts(acts.windows, where.T.numpy(), (best.T > 0).numpy())
    promoted, logits = _promoted(loaded, sae)
    descriptions = [
        _describe(loaded.tokenizer, contexts[f], marked[f], best[:, f].numpy(), promoted[f])
        for f in range(sae.features)
    ]
    return Dashboards(
        acts=best.T.numpy().astype(np.float32),
        contexts=contexts,
        marked=marked,
        promoted=promoted,
        promoted_logits=logits,
        frequency=(counts / max(n, 1)).numpy().astype(np.float32),
        descriptions=np.array(descriptions, dtype=str),
        tokens=n,
    )


def feature_card(sae: SparseAutoencoder, feature: int, tokenizer: Any) -> dict[str, Any]:
    """One feature's dashboard as plain data for a trace: texts, not token ids.

    ``contexts``: up to ``CONTEXTS`` of ``{"before", "token", "after", "act"}`` (decoded text,
    activation in model units), strongest first; ``promoted``: token texts; ``frequency``: the
    share of the dashboard tokens on which it fires.
    """
    dash = sae.dashboards
    if dash is None:
        raise MechvizError("This sparse autoencoder has no dashboards; train it again.")
    contexts = []
    for c in range(dash.acts.shape[1]):
        if dash.acts[feature, c] <= 0:
            break
        ids, m = dash.contexts[feature, c], int(dash.marked[feature, c])
        text = [display_text(tokenizer, int(t)) if t >= 0 else "" for t in ids]
        contexts.append(
            {
                "before": "".join(text[:m]),
                "token": text[m],
                "after": "".join(text[m + 1 :]),
                "act": float(dash.acts[feature, c]),
            }
        )
    return {
        "id": int(feature),
        "description": dash.describe(feature),
        "contexts": contexts,
        "promoted": [display_text(tokenizer, int(t)) for t in dash.promoted[feature]],
        "frequency": float(dash.frequency[feature]),
    }


def _contexts(windows: np.ndarray, where: np.ndarray, valid: np.ndarray) -> tuple:
    """Token ids of ``BEFORE + 1 + AFTER`` around each ``where`` (-1 outside its window)."""
    t = windows.shape[1]
    width = BEFORE + 1 + AFTER
    win, pos = np.divmod(np.where(valid, where, 0), t)
    cols = pos[..., None] + np.arange(-BEFORE, AFTER + 1)
    inside = (cols >= 0) & (cols < t) & valid[..., None]
    ctx = np.where(inside, windows[win[..., None], np.clip(cols, 0, t - 1)], -1).astype(np.int32)
    marked = np.where(valid, BEFORE, -1).astype(np.int16)
    assert ctx.shape[-1] == width
    return ctx, marked


@torch.no_grad()
def _promoted(loaded: LoadedModel, sae: SparseAutoencoder) -> tuple[np.ndarray, np.ndarray]:
    """Top tokens of ``W_U @ norm(W_dec[f])``, the final norm's weight (and centring) applied.

    The norm's scale is the same for every direction, so it is frozen at ``b_dec``; its bias and
    the softcap (monotone) change no ranking.
    """
    adapter = loaded.adapter
    at = (sae.b_dec / sae.scale).detach()
    frozen = adapter.frozen_norm(adapter.final_norm, at if bool(at.any()) else torch.ones_like(at))
    w_u = adapter.W_U.detach().float().cpu()
    ids, vals = [], []
    for i in range(0, sae.features, 512):
        logits = frozen.linear(sae.W_dec[i : i + 512].detach().cpu()) @ w_u.T
        v, j = logits.topk(min(PROMOTED, w_u.shape[0]), dim=1)
        ids.append(j)
        vals.append(v)
    return torch.cat(ids).numpy().astype(np.int32), torch.cat(vals).numpy().astype(np.float32)


def _describe(
    tokenizer: Any, contexts: np.ndarray, marked: np.ndarray, acts: np.ndarray, promoted: np.ndarray
) -> str:
    """``fires on "x", "y"; promotes "a", "b"; "…context ⟦x⟧ here…"`` (``never fired``)."""
    order = [c for c in range(len(acts)) if acts[c] > 0]
    promotes = ", ".join(f'"{_tok(tokenizer, t)}"' for t in promoted[:4])
    if not order:
        return f"never fired; promotes {promotes}"
    fires: list[str] = []
    for c in order:
        tok = f'"{_tok(tokenizer, contexts[c, marked[c]])}"'
        if tok not in fires:
            fires.append(tok)
    c = order[0]
    pieces = [
        f"⟦{_tok(tokenizer, t)}⟧" if j == marked[c] else _tok(tokenizer, t)
        for j, t in enumerate(contexts[c])
        if t >= 0
    ]
    return f'fires on {", ".join(fires[:3])}; promotes {promotes}; "…{"".join(pieces)}…"'


def _tok(tokenizer: Any, token_id: Any) -> str:
    return shown(display_text(tokenizer, int(token_id))).replace("·", " ")


# --- the cache ----------------------------------------------------------------------------------


def sae_dir(loaded: LoadedModel, layer: int) -> Path:
    """``cache_dir()/saes/<unembedding hash>/layer<l>``: one SAE per model's weights and layer."""
    return cache_dir() / "saes" / loaded.unembedding_hash[:16] / f"layer{layer}"


def _meta(
    loaded: LoadedModel,
    sae: SparseAutoencoder,
    corpus: Any,
    eval_corpus: Any,
    acts: Activations,
    log: TrainLog,
    evaluation: Evaluation,
    batch: int,
    start: float,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": "sae",
        "mechviz_version": __version__,
        "model": {
            "id": loaded.id,
            "file_sha256": loaded.file_sha256,
            "unembedding_hash": loaded.unembedding_hash,
            "n_layers": loaded.adapter.n_layers,
            "d_model": sae.d_model,
        },
        "layer": sae.layer,
        "site": f"{sae.layer}_post",
        "architecture": {
            "type": "TopK",
            "formula": "z = ReLU(TopK_k((s x - b_dec) W_enc + b_enc)); x^ = (z W_dec + b_dec) / s",
            "d_model": sae.d_model,
            "features": sae.features,
            "k": sae.k,
            "scale": float(sae.scale),
            "median_norm": sae.median_norm,
            "sink_ratio": SINK_RATIO,
            "dtype": "float32",
        },
        "corpus": {
            "digest": corpus.digest,
            "eval_digest": eval_corpus.digest,
            "tokenizer": getattr(corpus, "tokenizer", None),
            "sources": [asdict(s) for s in getattr(corpus, "sources", ())],
            "window": int(acts.windows.shape[1]),
        },
        "training": {
            "activations": len(acts.x),
            "windows": len(acts.windows),
            "skipped_sinks": acts.skipped,
            "gather_seconds": round(acts.seconds, 1),
            "gather_tokens_per_s": round(acts.rate, 1),
            "tokens": log.tokens,
            "epochs": round(log.epochs, 3),
            "steps": log.steps,
            "batch": batch,
            "train_seconds": round(log.seconds, 1),
            "train_tokens_per_s": round(log.tokens / max(log.seconds, 1e-9), 1),
            "optimizer": {
                "name": "Adam",
                "lr": learning_rate(sae.features),
                "eps": ADAM_EPS,
                "schedule": f"constant, linear decay over the last {DECAY_SHARE:.0%}",
                "aux_k": {
                    "coefficient": AUX_COEFF,
                    "latents": sae.d_model // 2,
                    "dead_after_tokens": DEAD_AFTER,
                },
            },
            "final_fve": round(float(np.mean(log.fve[-8:])), 4) if log.fve else None,
            "minutes": round((time.monotonic() - start) / 60, 2),
        },
        "evaluation": evaluation.to_dict(),
    }


def save_sae(loaded: LoadedModel, sae: SparseAutoencoder) -> Path:
    """Write the weights (safetensors), the dashboards and the JSON record; returns the folder."""
    from safetensors.torch import save_file

    if sae.layer is None:
        raise MechvizError("This sparse autoencoder has no layer; train it with train_sae.")
    folder = sae_dir(loaded, sae.layer)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in sae.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    meta = dict(sae.meta, sha256=sae.sha256())
    if sae.dashboards is not None:
        sae.dashboards.save(folder / FEATURES)
        meta["features_sha256"] = _sha256_file(folder / FEATURES)
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(folder / META, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    sae.meta = meta
    return folder


def load_sae(loaded: LoadedModel, layer: int | None = None) -> SparseAutoencoder:
    """The SAE trained for ``loaded``'s weights at ``layer`` (default the middle one)."""
    layer = check_layer(loaded, layer)
    folder = sae_dir(loaded, layer)
    if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
        raise MechvizError(
            f"No sparse autoencoder is trained for layer {layer} of {loaded.id}; train one with "
            f"`mechviz train-sae --layer {layer}` (about an hour), or a quick one with "
            f"`mechviz train-sae --layer {layer} --tokens 20000`."
        )
    again = f"train it again with `mechviz train-sae --layer {layer}`"
    try:
        from safetensors.torch import load_file

        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        arch = meta["architecture"]
        tensors = load_file(str(folder / WEIGHTS))
        sae = SparseAutoencoder(int(arch["d_model"]), int(arch["features"]), int(arch["k"]))
        sae.load_state_dict(tensors)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise MechvizError(f"The SAE in {folder} cannot be read ({exc}); {again}.") from None
    if meta["model"].get("unembedding_hash") != loaded.unembedding_hash:
        raise MechvizError(
            f"The SAE in {folder} was trained for {meta['model'].get('id')}, not for "
            f"{loaded.id}; {again}."
        )
    if sae.sha256() != meta.get("sha256"):
        raise MechvizError(f"The SAE in {folder} is damaged (its hash does not match); {again}.")
    sae.layer, sae.median_norm, sae.meta = layer, float(arch["median_norm"]), meta
    if (folder / FEATURES).is_file() and _sha256_file(folder / FEATURES) == meta.get(
        "features_sha256"
    ):
        sae.dashboards = Dashboards.load(folder / FEATURES)
    return sae


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- progress -----------------------------------------------------------------------------------


class _Line:
    """One progress line on stderr, rewritten in place on a terminal, else every 30 seconds."""

    def __init__(self, what: str, enabled: bool, end: float | None) -> None:
        self.what, self.enabled, self.end = what, enabled, end
        self.tty = sys.stderr.isatty()
        self.stage = ""
        self.last = -math.inf

    def phase(self, stage: str) -> None:
        if self.enabled and self.tty and self.stage:
            sys.stderr.write("\n")
        self.stage, self.last = stage, -math.inf

    def show(self, text: str) -> None:
        now = time.monotonic()
        if not self.enabled or (not self.tty and now - self.last < 30):
            return
        self.last = now
        left = "" if self.end is None else f"  {_clock(self.end - now)} left"
        line = f"{self.what}: {self.stage} {text}{left}"
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


CARDS_PER_POSITION = 8  # dashboards kept for each position's most active features


@torch.no_grad()
def features_section(sae: SparseAutoencoder, rec: Recording) -> Features:
    """The SAE's active features at ``{sae.layer}_post`` of every position, with their cards."""
    from mechviz.learned.corpus import source_names

    meta, cards = sae.meta, sae.dashboards
    if cards is None:
        raise MechvizError(
            f"The sparse autoencoder of layer {sae.layer} has no feature dashboards; train it "
            f"again with `mechviz train-sae --layer {sae.layer}`."
        )
    ids, acts, error_norm, resid_norm = encode_positions(sae, rec.resid_post[sae.layer])
    top = ids[:, :CARDS_PER_POSITION][acts[:, :CARDS_PER_POSITION] > 0]
    shown = np.unique(top).astype(np.int64)
    ev = meta["evaluation"]
    return Features(
        layer=int(sae.layer),
        sae_hash=str(meta["sha256"]),
        n_features=int(sae.features),
        k=int(sae.k),
        trained_tokens=int(meta["training"]["tokens"]),
        corpus=source_names(meta),
        bias_norm=float((sae.b_dec / sae.scale).norm()),
        eval_fve=float(ev["fve"]),
        eval_l0=float(ev["l0"]),
        eval_dead_share=float(ev["dead_share"]),
        eval_ce_clean=float(ev["ce_clean"]),
        eval_ce_sae=float(ev["ce_sae"]),
        eval_ce_zero=float(ev["ce_zero"]),
        ids=ids.astype(np.int64),
        acts=acts,
        error_norm=error_norm,
        resid_norm=resid_norm,
        typical=sae.in_distribution(resid_norm).astype(np.int64),
        card_ids=shown,
        card_descriptions=[str(cards.descriptions[f]) for f in shown],
        card_frequency=cards.frequency[shown].astype(np.float32),
        card_contexts=cards.contexts[shown].astype(np.int64),
        card_marked=cards.marked[shown].astype(np.int64),
        card_acts=cards.acts[shown].astype(np.float32),
        card_promoted=cards.promoted[shown].astype(np.int64),
    )
