"""The tuned lens (Belrose et al. 2023, arXiv 2303.08112): affine translators, then the logit lens.

Each boundary ``embed``, ``0_post`` ... ``{L-2}_post`` gets a translator
``h -> h + A h + b`` (an ``nn.Linear(d, d)`` initialised to zero, added to
``h``, as the ``tuned-lens`` package does, so weight decay pulls toward the
identity); the last boundary ``{L-1}_post`` is the model's own output and has
none. The readout is :meth:`Adapter.logit_lens` of the translated state, so at
initialisation the tuned lens *is* the logit lens, bit for bit.

Training minimises ``KL(final || lens)`` against the model's own final
distribution, the mean over tokens summed over boundaries, with tuned-lens'
defaults: SGD with Nesterov momentum 0.9, weight decay 1e-3, gradients clipped
to norm 1, the learning rate decaying linearly to zero (the rate and the clip
are per translator, see ``LR``). The cost is the readout: a ``d_model x
d_vocab`` matmul forward and another backward per token per boundary (~113
MFLOP on the default model, ~3.4 GFLOP a token for its 30 translators), so the
final distribution is computed once per batch, the boundaries are read one at a
time, ``CHUNK`` rows at a time, into one reused buffer, and the gradient of the
readout is written by hand (``softmax - final``). On two free cores that is
~27 tokens a second (every boundary), 40,000 tokens in 25 minutes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mechviz import __version__
from mechviz.errors import MechvizError
from mechviz.files import atomic_write, cache_dir
from mechviz.model.load import LoadedModel
from mechviz.model.threads import ThreadChooser
from mechviz.tracing.record import numpy_of
from mechviz.tracing.schema import TunedLensReadout, boundary_labels

FORMAT = 1  # bump when the files of a saved lens change
CHUNK = 256  # rows per readout matmul: the fastest size measured here (50 MB of logits)
SEQ_LEN = 64  # tokens per training window; traces are at most 64 tokens by default
BATCH = 4  # windows per optimizer step: 256 tokens, ~10 s a step on the default model
# tuned-lens' SGD default is 1.0 (in units where momentum does not rescale it) with one
# gradient clip over all translators. Here each translator is clipped on its own: the
# boundaries are independent problems, and one clip over 30 gradients of norm 14-67 (the
# default model at initialisation) would give each ~1/sqrt(30) of the step it gets alone,
# so the best rate would depend on the number of layers. 2.0 did best in 30-step runs on
# four boundaries of the default model (against 1.0 and 3.0 with one clip, 3.0 and 10.0
# clipped apart, Adam at 1e-3 and 3e-3).
LR = 2.0
MOMENTUM = 0.9
ADAM_LR = 1e-3  # tuned-lens' default for Adam
WEIGHT_DECAY = 1e-3
CLIP = 1.0  # the norm of each translator's gradient
MINUTES = 25.0  # default budget of one training call
EVAL_TOKENS = 2048  # ~80 s on the default model (61 readouts a token, ~25 tokens/s)
CHECKPOINT_SECONDS = 120.0  # at most this much training is lost when a run is killed
LN2 = math.log(2.0)
WEIGHTS = "tuned_lens.safetensors"
META = "tuned_lens.json"
CHECKPOINT = "checkpoint.pt"


def translator_labels(n_layers: int) -> list[str]:
    """The boundaries that get a translator: ``embed``, ``0_post`` ... ``{L-2}_post``."""
    return ["embed"] + [f"{layer}_post" for layer in range(n_layers - 1)]


def lens_labels(n_layers: int) -> list[str]:
    """Every layer boundary the lens reads: the translators' and the last, ``{L-1}_post``."""
    return translator_labels(n_layers) + [f"{n_layers - 1}_post"]


class TunedLens(nn.Module):
    """One zero-initialised affine translator per boundary but the last, in float32."""

    def __init__(self, d_model: int, n_layers: int) -> None:
        super().__init__()
        self.d_model = d_model
        self.n_layers = n_layers
        self.translators = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        with torch.no_grad():
            for translator in self.translators:
                translator.weight.zero_()
                translator.bias.zero_()
        self.meta: dict[str, Any] = {}  # filled by load_tuned_lens

    def section(
        self, loaded: LoadedModel, layer_states: torch.Tensor, logits: torch.Tensor, top_k: int
    ) -> TunedLensReadout:
        """The ``tuned_lens`` section of a trace, read with this lens."""
        return tuned_lens_section(loaded, self, layer_states, logits, top_k)

    @classmethod
    def for_model(cls, loaded: LoadedModel) -> TunedLens:
        adapter = loaded.adapter
        return cls(adapter.W_U.shape[1], adapter.n_layers)

    @property
    def labels(self) -> list[str]:
        return lens_labels(self.n_layers)

    def transform(self, h: torch.Tensor, boundary: int) -> torch.Tensor:
        """``h + A h + b`` at ``boundary`` (0 = ``embed``, ``l + 1`` = ``{l}_post``), float32."""
        if not 0 <= boundary <= self.n_layers:
            raise IndexError(f"boundary {boundary} outside 0..{self.n_layers}")
        h = h.float()
        if boundary == self.n_layers:
            return h  # the model's output: no translator
        return h + self.translators[boundary](h)

    def logits(self, adapter: Any, h: torch.Tensor, boundary: int) -> torch.Tensor:
        """The logit lens of the translated state: the tuned lens' logits at ``boundary``."""
        return adapter.logit_lens(self.transform(h, boundary))

    def sha256(self) -> str:
        """Hash of the weights (names, shapes, float32 bytes): the lens' identity in a trace."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(f"{name}:{tuple(tensor.shape)};".encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


# --- residual states and readouts ---------------------------------------------------


@torch.no_grad()
def boundary_states(loaded: LoadedModel, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[L + 1, N, D]`` states at every layer boundary and the model's ``[N, V]`` logits.

    ``ids`` is ``[batch, seq]``; rows are its tokens in order. Hooks as
    :func:`mechviz.tracing.record.record` sets them: layer 0's input is ``embed``,
    block ``l``'s output ``{l}_post``.
    """
    adapter = loaded.adapter
    states: list[Any] = [None] * (adapter.n_layers + 1)

    def keep(index: int, value: Any) -> None:
        tensor = value[0] if isinstance(value, tuple) else value
        states[index] = tensor.detach().float().flatten(0, -2)

    handles = [
        adapter.layers[0].register_forward_pre_hook(
            lambda m, a, kw: keep(0, a[0] if a else kw["hidden_states"]), with_kwargs=True
        )
    ]
    for layer, block in enumerate(adapter.layers):
        handles.append(block.register_forward_hook(lambda m, a, o, i=layer + 1: keep(i, o)))
    try:
        out = loaded.model(ids.to(adapter.embed.weight.device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(states), out.logits.float().flatten(0, -2)


@dataclass
class Target:
    """The model's own distribution over a batch's ``N`` rows, made once for every boundary."""

    f: torch.Tensor  # [N, V] probabilities
    f_ln_f: torch.Tensor  # [N] sum f ln f (nats)
    f_W: torch.Tensor | None  # [N, D] f @ W_U, so that sum f z = normed . f_W (+ f . bias)
    f_b: torch.Tensor | None  # [N] f . bias of the unembedding, if it has one


@dataclass
class Result:
    """Per-row results of one boundary's readout, in nats."""

    kl: torch.Tensor  # [n] KL(final || lens)
    ce: torch.Tensor | None  # [n] -ln lens(target), where targets are given
    grad: torch.Tensor | None  # [n, D] d(sum kl) / d(normed state)


class Readout:
    """The lens' readout of normed states against a :class:`Target`: KL, cross-entropy, gradient.

    ``KL = sum f ln f - sum f z + logsumexp z`` (``sum f = 1``); its gradient
    with respect to the logits ``z`` is ``softmax z - f``, and with respect to
    the normed state ``softmax(z) @ W_U - f @ W_U``. A plain float32
    ``nn.Linear`` unembedding runs as two matmuls per ``CHUNK`` rows, the first
    into one reused buffer, with ``sum f z`` read from ``f @ W_U`` computed once
    per batch. Other heads (Gemma 2's softcap, half precision) go through autograd.
    """

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter
        self.W = adapter.W_U.detach()  # [V, D]
        self.affine = adapter.affine_lens and self.W.dtype == torch.float32
        bias = adapter.unembed.bias
        self.bias = None if bias is None else bias.detach().float()
        if self.affine:
            self.buffer = torch.empty(self.W.shape[0] * CHUNK, device=self.W.device)

    def target(self, logits: torch.Tensor) -> Target:
        logp = torch.log_softmax(logits.float(), dim=-1)
        f = logp.exp()
        f_ln_f = torch.linalg.vecdot(f, logp)
        del logp
        if not self.affine:
            return Target(f, f_ln_f, None, None)
        f_b = None if self.bias is None else f @ self.bias
        return Target(f, f_ln_f, f @ self.W, f_b)

    def __call__(
        self,
        normed: torch.Tensor,
        target: Target,
        rows: slice,
        *,
        targets: torch.Tensor | None = None,
        grad: bool = False,
    ) -> Result:
        normed = normed.detach()
        if not self.affine:
            return self._autograd(normed, target, rows, targets, grad)
        n = normed.shape[0]
        # Logits transposed, [V, n]: W_U @ normed.T runs 1.5x faster here than normed @ W_U.T.
        zt = self.buffer[: self.W.shape[0] * n].view(-1, n)
        if self.bias is None:
            torch.mm(self.W, normed.T, out=zt)
        else:
            torch.addmm(self.bias[:, None], self.W, normed.T, out=zt)
        ce = None
        if targets is not None:
            ce = -zt[targets.clamp(min=0), torch.arange(n, device=zt.device)]
        f_z = torch.linalg.vecdot(normed, target.f_W[rows])
        if target.f_b is not None:
            f_z += target.f_b[rows]
        top = zt.amax(0)
        Z = zt.sub_(top).exp_().sum(0)  # zt becomes exp(z - max), in place
        lse = Z.log() + top
        kl = (target.f_ln_f[rows] - f_z + lse).clamp_(min=0.0)
        if ce is not None:
            ce += lse
        g = torch.mm(zt.T, self.W).div_(Z[:, None]).sub_(target.f_W[rows]) if grad else None
        return Result(kl=kl, ce=ce, grad=g)

    def _autograd(
        self,
        normed: torch.Tensor,
        target: Target,
        rows: slice,
        targets: torch.Tensor | None,
        grad: bool,
    ) -> Result:
        with torch.enable_grad():
            x = normed.detach().requires_grad_(grad)
            logq = torch.log_softmax(self.adapter.logits_from_normed(x).float(), dim=-1)
            kl = target.f_ln_f[rows] - torch.linalg.vecdot(target.f[rows], logq)
            g = torch.autograd.grad(kl.sum(), x)[0] if grad else None
        logq = logq.detach()
        ce = None if targets is None else -logq.gather(1, targets.clamp(min=0)[:, None])[:, 0]
        return Result(kl=kl.detach().clamp_(min=0.0), ce=ce, grad=g)


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, CHUNK):
        yield slice(start, min(n, start + CHUNK))


# --- training -------------------------------------------------------------------------


@dataclass
class Training:
    """What a training run did, cumulated over resumed runs."""

    tokens: int = 0
    steps: int = 0
    seconds: float = 0.0
    windows: int = 0  # windows of the current epoch already used
    epoch: int = 0
    seq_len: int = SEQ_LEN
    batch: int = BATCH
    corpus_digest: str = ""
    optimizer: str = "sgd"
    kl_bits: list[float] = field(default_factory=list)  # mean KL over boundaries, per step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_tuned_lens(
    loaded: LoadedModel,
    corpus: Any,
    *,
    tokens: int | None = None,
    minutes: float | None = None,
    seq_len: int = SEQ_LEN,
    batch: int = BATCH,
    progress: bool = True,
    resume: bool = True,
    lens: TunedLens | None = None,
    optimizer: str = "sgd",
) -> tuple[TunedLens, Training]:
    """Train a tuned lens on ``corpus`` (a :class:`mechviz.learned.corpus.Corpus`, train split).

    Stops after ``tokens`` tokens or ``minutes`` minutes of this call, whichever
    comes first (neither: ``MINUTES``), never starting a step it cannot finish
    in time. The learning rate decays to zero over this call's budget; with
    ``resume`` a checkpoint in the cache (translators, optimizer, position in
    the corpus) is continued, so two calls of ten minutes train twenty.
    Saves the checkpoint every ``CHECKPOINT_SECONDS`` and at the end; the lens
    itself is saved by :func:`save_tuned_lens`.
    """
    if seq_len < 2 or batch < 1:
        raise MechvizError(
            f"seq_len must be at least 2 and batch at least 1; got {seq_len}, {batch}."
        )
    if tokens is not None and tokens < 1:
        raise MechvizError(f"--tokens must be at least 1; got {tokens}.")
    if minutes is not None and minutes <= 0:
        raise MechvizError(f"--minutes must be more than 0; got {minutes}.")
    if tokens is None and minutes is None:
        minutes = MINUTES
    lens = (lens or TunedLens.for_model(loaded)).to(loaded.adapter.W_U.device)
    opt, base_lr = _optimizer(lens, optimizer)
    state = Training(seq_len=seq_len, batch=batch, corpus_digest=corpus.digest, optimizer=optimizer)
    folder = lens_dir(loaded)
    if resume:
        state = _resume(folder / CHECKPOINT, lens, opt, state, progress)
    batches = _batches(corpus, state)
    bar = _Progress("train-lens", progress, tokens, minutes)
    budget = None if minutes is None else minutes * 60
    start = last_save = time.monotonic()
    run_tokens = 0
    readout, threads = Readout(loaded.adapter), ThreadChooser()
    while True:
        elapsed = time.monotonic() - start
        if tokens is not None and run_tokens >= tokens:
            break
        # The next step's time from the faster thread count's rate (a slower try may be last).
        predicted = batch * seq_len / max(threads.rate.values()) if threads.rate else 0.0
        if budget is not None and elapsed + predicted > budget:
            break
        done = max(run_tokens / tokens if tokens else 0.0, elapsed / budget if budget else 0.0)
        for group in opt.param_groups:  # linear decay over this call's budget
            group["lr"] = base_lr * (1.0 - done)
        t0 = time.monotonic()
        ids = next(batches)
        kl = threads.run(ids.numel(), _train_step, loaded, lens, opt, ids, readout)
        step_seconds = time.monotonic() - t0
        run_tokens += batch * seq_len
        state.tokens += batch * seq_len
        state.steps += 1
        state.seconds += step_seconds
        state.kl_bits.append(kl / LN2)
        bar.update(run_tokens, time.monotonic() - start, state.kl_bits)
        if time.monotonic() - last_save > CHECKPOINT_SECONDS:
            _save_checkpoint(folder / CHECKPOINT, lens, opt, state)
            last_save = time.monotonic()
    bar.close()
    _save_checkpoint(folder / CHECKPOINT, lens, opt, state)
    return lens, state


def _optimizer(lens: TunedLens, name: str) -> tuple[torch.optim.Optimizer, float]:
    """tuned-lens' optimizers with its defaults: SGD (Nesterov) or Adam (AMSGrad)."""
    if name == "sgd":
        lr = LR * (1 - MOMENTUM)  # PyTorch's momentum scales the step by 1 / (1 - momentum)
        opt = torch.optim.SGD(
            lens.parameters(), lr=lr, momentum=MOMENTUM, nesterov=True, weight_decay=WEIGHT_DECAY
        )
    elif name == "adam":
        lr = ADAM_LR
        opt = torch.optim.Adam(
            lens.parameters(),
            lr=lr,
            betas=(MOMENTUM, 0.999),
            amsgrad=True,
            weight_decay=WEIGHT_DECAY,
        )
    else:
        raise MechvizError(f'Unknown optimizer "{name}"; use "sgd" or "adam".')
    return opt, lr


def _batches(corpus: Any, state: Training) -> Iterator[torch.Tensor]:
    """``[batch, seq_len]`` windows, epoch after epoch; advances ``state.windows``/``epoch``."""
    from mechviz.learned.corpus import windows

    while True:
        stream = itertools.islice(
            windows(corpus, state.seq_len, seed=state.epoch), state.windows, None
        )
        while True:
            group = list(itertools.islice(stream, state.batch))
            if len(group) < state.batch:
                break
            state.windows += state.batch
            yield torch.from_numpy(np.stack(group).astype(np.int64))
        if state.windows == 0:
            raise MechvizError(
                f"The corpus has fewer than {state.batch} windows of {state.seq_len} tokens; "
                "use a larger corpus or a smaller batch."
            )
        state.epoch += 1
        state.windows = 0


def _train_step(
    loaded: LoadedModel,
    lens: TunedLens,
    opt: torch.optim.Optimizer,
    ids: torch.Tensor,
    readout: Readout,
) -> float:
    """One optimizer step; returns the mean over boundaries of the mean KL (nats)."""
    adapter = loaded.adapter
    states, logits = boundary_states(loaded, ids)
    target = readout.target(logits)
    del logits
    n = target.f.shape[0]
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for b in range(lens.n_layers):  # the last boundary has no translator
        params = list(lens.translators[b].parameters())
        with torch.enable_grad():
            normed = adapter.lens_norm(lens.transform(states[b], b))
            grad = torch.empty_like(normed)
            with torch.no_grad():
                for rows in _chunks(n):
                    out = readout(normed[rows], target, rows, grad=True)
                    grad[rows] = out.grad
                    total += out.kl.sum().item()
            # Only the translator's parameters: never the model's own norm.
            grads = torch.autograd.grad(normed, params, grad.div_(n))
        for p, g in zip(params, grads):
            p.grad = g  # each translator is read at its own boundary only
        nn.utils.clip_grad_norm_(params, CLIP)
    opt.step()
    return total / (n * lens.n_layers)


class _Progress:
    """One line on stderr: tokens, tokens per second, mean KL of the last steps, time left.

    Rewritten in place on a terminal, else printed every 30 seconds.
    """

    def __init__(self, what: str, enabled: bool, tokens: int | None, minutes: float | None):
        self.what = what
        self.enabled = enabled
        self.tokens = tokens
        self.minutes = minutes
        self.tty = sys.stderr.isatty()
        self.last = -math.inf

    def update(self, done: int, seconds: float, kl_bits: Sequence[float] = ()) -> None:
        if not self.enabled or (not self.tty and seconds - self.last < 30):
            return
        self.last = seconds
        rate = done / max(seconds, 1e-9)
        line = f"{self.what} {done:,}" + (f"/{self.tokens:,}" if self.tokens else "")
        line += f" tokens  {rate:.1f} tok/s"
        if kl_bits:
            recent = kl_bits[-8:]
            line += f"  KL {sum(recent) / len(recent):.3f} bits"
        left = [self.minutes * 60 - seconds] if self.minutes else []
        if self.tokens:
            left.append((self.tokens - done) / max(rate, 1e-9))
        if left:
            line += f"  {_clock(min(left))} left"
        sys.stderr.write(("\r" + line + "\033[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _save_checkpoint(
    path: Path, lens: TunedLens, opt: torch.optim.Optimizer, state: Training
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"lens": lens.state_dict(), "optimizer": opt.state_dict(), "state": state.to_dict()}
    atomic_write(path, lambda tmp: torch.save(data, tmp))


def _resume(
    path: Path, lens: TunedLens, opt: torch.optim.Optimizer, state: Training, progress: bool
) -> Training:
    if not path.is_file():
        return state
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        saved = Training(**data["state"])
    except Exception:  # a damaged or foreign checkpoint: start again
        _note(progress, f"Ignoring the unreadable checkpoint {path}; training from the start.")
        return state
    if (saved.corpus_digest, saved.seq_len, saved.optimizer) != (
        state.corpus_digest,
        state.seq_len,
        state.optimizer,
    ):
        _note(progress, "The checkpoint was made with other text or settings; starting again.")
        return state
    try:
        lens.load_state_dict(data["lens"])
        opt.load_state_dict(data["optimizer"])
    except (KeyError, RuntimeError, ValueError):
        _note(progress, f"Ignoring the checkpoint {path}, made for another model; starting again.")
        lens.load_state_dict(TunedLens(lens.d_model, lens.n_layers).state_dict())
        return state
    saved.batch = state.batch
    _note(progress, f"Resuming the tuned lens after {saved.tokens:,} tokens ({saved.steps} steps).")
    return saved


def _note(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)


# --- evaluation ----------------------------------------------------------------------


@dataclass(frozen=True)
class LensEvaluation:
    """Both lenses per boundary on held-out text.

    ``*_bpb``: cross-entropy against the true next token, bits per UTF-8 byte of
    the predicted tokens. ``*_kl``: ``KL(final || lens)``, bits per token.
    """

    labels: tuple[str, ...]
    logit_bpb: tuple[float, ...]
    tuned_bpb: tuple[float, ...]
    logit_kl: tuple[float, ...]
    tuned_kl: tuple[float, ...]
    model_bpb: float  # the model's own output
    tokens: int  # predicted tokens (the CE's denominator in tokens)
    bytes: int  # their UTF-8 bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensEvaluation:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def table(self) -> str:
        """A Markdown table, one row per boundary."""
        rows = [
            "| boundary | logit lens bpb | tuned lens bpb | logit lens KL | tuned lens KL |",
            "|---|---:|---:|---:|---:|",
        ]
        for i, label in enumerate(self.labels):
            rows.append(
                f"| {label} | {self.logit_bpb[i]:.3f} | {self.tuned_bpb[i]:.3f} | "
                f"{self.logit_kl[i]:.3f} | {self.tuned_kl[i]:.3f} |"
            )
        rows.append(
            f"\nKL(final || lens) in bits per token; the model's output: "
            f"{self.model_bpb:.3f} bits per byte ({self.tokens:,} tokens, {self.bytes:,} bytes)."
        )
        return "\n".join(rows)


@torch.no_grad()
def evaluate(
    loaded: LoadedModel,
    lens: TunedLens,
    eval_corpus: Any,
    *,
    tokens: int = EVAL_TOKENS,
    seq_len: int = SEQ_LEN,
    batch: int = BATCH,
    progress: bool = True,
) -> LensEvaluation:
    """Both lenses at every boundary on the first ``tokens`` tokens of ``eval_corpus``'s windows."""
    from mechviz.learned.corpus import bytes_of, windows

    bar = _Progress("evaluating", progress, tokens, None)
    lens = lens.to(loaded.adapter.W_U.device)
    adapter = loaded.adapter
    L = adapter.n_layers
    sums = {k: np.zeros(L + 1) for k in ("logit_ce", "tuned_ce", "logit_kl", "tuned_kl")}
    model_ce = 0.0
    n_targets = n_rows = n_bytes = 0
    stream = itertools.islice(windows(eval_corpus, seq_len, seed=0), math.ceil(tokens / seq_len))
    readout, threads = Readout(adapter), ThreadChooser()
    start = time.monotonic()
    while group := list(itertools.islice(stream, batch)):
        ids = torch.from_numpy(np.stack(group).astype(np.int64))
        n_bytes += sum(bytes_of(loaded.tokenizer, w[1:]) for w in group)
        ce, n = threads.run(ids.numel(), _evaluate_batch, loaded, lens, readout, ids, sums)
        model_ce += ce
        n_targets += n
        n_rows += ids.numel()
        bar.update(n_rows, time.monotonic() - start)
    bar.close()
    if n_targets == 0:
        raise MechvizError("The evaluation text has no windows to evaluate; use a larger corpus.")
    for kind in ("ce", "kl"):  # the last boundary is the model's output: no translator
        sums[f"tuned_{kind}"][L] = sums[f"logit_{kind}"][L]
    return LensEvaluation(
        labels=tuple(lens_labels(L)),
        logit_bpb=tuple(_bits(x) / n_bytes for x in sums["logit_ce"]),
        tuned_bpb=tuple(_bits(x) / n_bytes for x in sums["tuned_ce"]),
        logit_kl=tuple(_bits(x) / n_rows for x in sums["logit_kl"]),
        tuned_kl=tuple(_bits(x) / n_rows for x in sums["tuned_kl"]),
        model_bpb=_bits(model_ce) / n_bytes,
        tokens=n_targets,
        bytes=n_bytes,
    )


def _evaluate_batch(
    loaded: LoadedModel,
    lens: TunedLens,
    readout: Readout,
    ids: torch.Tensor,
    sums: dict[str, np.ndarray],
) -> tuple[float, int]:
    """Add one batch's sums to ``sums``; returns the model's own cross-entropy and the targets."""
    adapter = loaded.adapter
    L = adapter.n_layers
    # The next token of each position; the last of a window has none (-1).
    targets = torch.cat([ids[:, 1:], torch.full((len(ids), 1), -1)], 1).flatten()
    valid = targets >= 0
    states, logits = boundary_states(loaded, ids)
    logp = torch.log_softmax(logits, dim=-1)
    model_ce = -logp.gather(1, targets.clamp(min=0)[:, None])[valid].sum().item()
    del logp
    target = readout.target(logits)
    del logits
    for b in range(L + 1):
        for kind in ("logit", "tuned") if b < L else ("logit",):
            h = lens.transform(states[b], b) if kind == "tuned" else states[b]
            normed = adapter.lens_norm(h)
            for rows in _chunks(len(targets)):
                out = readout(normed[rows], target, rows, targets=targets[rows])
                sums[f"{kind}_kl"][b] += out.kl.sum().item()
                sums[f"{kind}_ce"][b] += out.ce[valid[rows]].sum().item()
    return model_ce, int(valid.sum())


def _bits(nats: float) -> float:
    return float(nats) / LN2


# --- the trace's readout --------------------------------------------------------------


@torch.no_grad()
def tuned_lens_statistics(
    adapter: Any,
    lens: TunedLens,
    resid: torch.Tensor,
    final_logits: torch.Tensor,
    top_k: int,
) -> dict[str, torch.Tensor]:
    """:func:`mechviz.tracing.record.lens_statistics` of the tuned lens.

    ``resid`` is ``[B, P, D]`` with ``B = L + 1`` layer boundaries in the order
    of :func:`lens_labels` (``embed``, ``0_post`` ... ``{L-1}_post``);
    ``final_logits`` ``[P, V]``. Returns ``top_ids``/``top_probs`` ``[B, P, K]``,
    ``entropy`` and ``kl_to_final`` (nats, ``KL(final || lens)``),
    ``final_token_rank`` and ``final_token_prob`` ``[B, P]``, exactly as the
    trace's logit lens has them.
    """
    from mechviz.tracing.record import lens_statistics

    if resid.shape[0] != lens.n_layers + 1:
        raise ValueError(f"expected {lens.n_layers + 1} boundaries, got {resid.shape[0]}")
    translated = torch.stack([lens.transform(resid[b], b) for b in range(resid.shape[0])])
    return lens_statistics(adapter, translated, final_logits, top_k)


# --- the cache --------------------------------------------------------------------------


def lens_dir(loaded: LoadedModel) -> Path:
    """``cache_dir()/lenses/<unembedding hash>``: one tuned lens per model's weights."""
    return cache_dir() / "lenses" / loaded.unembedding_hash[:16]


def save_tuned_lens(
    loaded: LoadedModel,
    lens: TunedLens,
    training: Training,
    corpus: Any,
    evaluation: LensEvaluation | None = None,
) -> Path:
    """Write the weights (safetensors) and their JSON record; returns the folder."""
    from safetensors.torch import save_file

    folder = lens_dir(loaded)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in lens.state_dict().items()}
    meta = {
        "format": FORMAT,
        "kind": "tuned_lens",
        "mechviz_version": __version__,
        "sha256": lens.sha256(),
        "model": _model_record(loaded),
        "boundaries": translator_labels(lens.n_layers),
        "translator": "h + A h + b (nn.Linear, zero at initialisation); none at the last boundary",
        "corpus": {
            "digest": corpus.digest,
            "tokenizer": getattr(corpus, "tokenizer", None),
            "sources": [asdict(s) for s in getattr(corpus, "sources", ())],
        },
        "training": {
            "loss": "KL(final || lens), nats, mean over tokens, summed over boundaries",
            "optimizer": {
                "name": {"sgd": "SGD, Nesterov", "adam": "Adam, AMSGrad"}[training.optimizer],
                "lr": LR if training.optimizer == "sgd" else ADAM_LR,
                "momentum": MOMENTUM,
                "weight_decay": WEIGHT_DECAY,
                "clip": f"gradient norm {CLIP} per translator",
                "schedule": "linear decay per call",
            },
            "tokens": training.tokens,
            "steps": training.steps,
            "minutes": round(training.seconds / 60, 2),
            "seq_len": training.seq_len,
            "batch": training.batch,
            "final_kl_bits": training.kl_bits[-1] if training.kl_bits else None,
        },
        "evaluation": None if evaluation is None else evaluation.to_dict(),
    }
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    text = json.dumps(meta, indent=2) + "\n"
    atomic_write(folder / META, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    lens.meta = meta
    return folder


def _model_record(loaded: LoadedModel) -> dict[str, Any]:
    adapter = loaded.adapter
    return {
        "id": loaded.id,
        "file_sha256": loaded.file_sha256,
        "unembedding_hash": loaded.unembedding_hash,
        "n_layers": adapter.n_layers,
        "d_model": adapter.W_U.shape[1],
    }


def load_tuned_lens(loaded: LoadedModel, folder: Path | str | None = None) -> TunedLens:
    """The tuned lens trained for ``loaded``'s weights (default: its folder in the cache)."""
    folder = Path(folder) if folder is not None else lens_dir(loaded)
    if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
        raise MechvizError(_untrained(loaded))
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        model = meta["model"]
        from safetensors.torch import load_file

        tensors = load_file(str(folder / WEIGHTS))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MechvizError(
            f"The tuned lens in {folder} cannot be read ({exc}); train it again with "
            "`mechviz train-lens`."
        ) from None
    files = (model.get("file_sha256"), loaded.file_sha256)
    if model.get("unembedding_hash") != loaded.unembedding_hash or (
        None not in files and files[0] != files[1]
    ):
        raise MechvizError(
            f"The tuned lens in {folder} was trained for {model.get('id')} (unembedding "
            f"{str(model.get('unembedding_hash'))[:12]}), not for {loaded.id} "
            f"({loaded.unembedding_hash[:12]}); train one with `mechviz train-lens`."
        )
    lens = TunedLens.for_model(loaded)
    try:
        lens.load_state_dict(tensors)
    except RuntimeError:
        raise MechvizError(
            f"The tuned lens in {folder} does not fit {loaded.id}'s layers; train one with "
            "`mechviz train-lens`."
        ) from None
    if lens.sha256() != meta.get("sha256"):
        raise MechvizError(
            f"The tuned lens in {folder} is damaged (its weights do not match their hash); "
            "train it again with `mechviz train-lens`."
        )
    lens.meta = meta
    return lens


def _untrained(loaded: LoadedModel) -> str:
    return (
        f"No tuned lens is trained for {loaded.id}; train one with `mechviz train-lens` "
        f"(about {MINUTES:.0f} minutes), or a quick one with `mechviz train-lens --tokens 2048`."
    )


@torch.no_grad()
def tuned_lens_section(
    loaded: LoadedModel,
    lens: TunedLens,
    layer_states: torch.Tensor,
    logits: torch.Tensor,
    top_k: int,
) -> TunedLensReadout:
    """The tuned lens at the layer boundaries ``[Y, P, D]``, with its held-out figures."""
    meta = lens.meta
    ev = meta.get("evaluation")
    if not ev:
        raise MechvizError(
            "This tuned lens has no held-out evaluation; train it again with `mechviz train-lens`."
        )
    from mechviz.learned.corpus import source_names

    stats = tuned_lens_statistics(loaded.adapter, lens, layer_states, logits, top_k)
    n_layers = loaded.adapter.n_layers
    return TunedLensReadout(
        lens_hash=str(meta["sha256"]),
        trained_tokens=int(meta["training"]["tokens"]),
        corpus=source_names(meta),
        eval_tokens=int(ev["tokens"]),
        eval_bpb_model=float(ev["model_bpb"]),
        labels=boundary_labels(n_layers)[0::2],
        **{k: numpy_of(v) for k, v in stats.items()},
        **{
            f"eval_{name}_{kind}": np.asarray(ev[f"{kind}_{name}"], dtype=np.float32)
            for name in ("bpb", "kl")
            for kind in ("logit", "tuned")
        },
    )
