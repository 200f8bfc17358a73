"""Interventions on one forward pass: ablate or freeze attention heads, ablate MLPs, patch.

Heads are changed where every architecture hands them over the same way:
transformers' attention interface. While :func:`intervening` is active, the
model's ``config._attn_implementation`` names :data:`ATTENTION`, a function
that calls the family's own ``eager_attention_forward`` (so soft-capping,
scaling and masks stay the model's) and then edits its result:

- **ablate** (``zero``): a head's output ``z_h`` (its slice of the input of
  ``W_O``, ``[P, d_head]``) is set to 0 at every position; ``mean``: to its mean
  over the prompt's positions. What reaches the stream is ``W_O``'s bias alone.
- **freeze**: a head's attention pattern is replaced by the one it has on
  another prompt of the same length, and its output recomputed from this
  run's values, ``z_h = pattern_other @ v_h``. The trace then records the
  frozen pattern, as the model used it.

An MLP is ablated at the module whose output joins the stream
(:meth:`Adapter.mlp_out_module`): zero, or its mean over positions.

:func:`patch` runs activation patching: the clean run's activations are
written into the corrupt run one site at a time (the residual stream at each
layer boundary and position; each head's output at every position; each
MLP's output), the patched runs batched, and the logit difference ``answer -
wrong`` at the last position is normalised to 1 for the clean run and 0 for
the corrupt one.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from mechviz.errors import MechvizError
from mechviz.model.load import LoadedModel
from mechviz.tracing.specs import (  # noqa: F401 (re-exported)
    MODES,
    Changes,
    check_mode,
    parse_heads,
    parse_layers,
)

ATTENTION = "mechviz_interventions"  # the attention implementation registered for them


@dataclass(frozen=True)
class Plan:
    """What to change in one forward pass; empty by default (then nothing changes, bitwise).

    ``freeze_patterns`` maps each frozen ``(layer, head)`` to the ``[P, P]``
    pattern it gets (from another prompt, :func:`patterns_of`).
    """

    ablate: tuple[tuple[int, int], ...] = ()
    ablate_mlp: tuple[int, ...] = ()
    mode: str = "zero"
    freeze_patterns: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.ablate or self.ablate_mlp or self.freeze_patterns)

    def heads_of(self, layer: int) -> tuple[list[int], dict[int, torch.Tensor]]:
        """The ablated heads of ``layer`` and its frozen ones with their patterns."""
        ablated = [h for at, h in self.ablate if at == layer]
        frozen = {h: p for (at, h), p in self.freeze_patterns.items() if at == layer}
        return ablated, frozen


# --- running with a plan ---------------------------------------------------------------------

_PLAN: contextvars.ContextVar[Plan | None] = contextvars.ContextVar("mechviz_plan", default=None)
# Patching: per layer, (batch rows, [rows, P, H, d_head] clean z, head index per row).
_PATCH_Z: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "mechviz_patch_z", default=None
)


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):  # type: ignore[no-untyped-def]
    """The family's eager attention, then the plan's edits to its heads (see the module doc)."""
    eager = sys.modules[type(module).__module__].eager_attention_forward
    out, weights = eager(
        module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
    )
    layer = getattr(module, "layer_idx", None)
    plan, patch_z = _PLAN.get(), _PATCH_Z.get()
    if layer is None:
        return out, weights
    if plan is not None and not plan.empty:
        ablated, frozen = plan.heads_of(layer)
        if frozen:
            weights = weights.clone()
            heads = list(frozen)
            for h, pattern in frozen.items():
                weights[:, h] = pattern.to(weights.dtype)
            n_rep = weights.shape[1] // value.shape[1]
            v = value.repeat_interleave(n_rep, dim=1) if n_rep > 1 else value
            recomputed = torch.matmul(weights[:, heads], v[:, heads]).transpose(1, 2)
            out = out.clone()
            out[:, :, heads] = recomputed.to(out.dtype)
        if ablated:
            out = out.clone()
            if plan.mode == "zero":
                out[:, :, ablated] = 0
            else:
                out[:, :, ablated] = out[:, :, ablated].mean(dim=1, keepdim=True)
    if patch_z is not None and layer in patch_z:
        rows, clean, heads = patch_z[layer]
        out = out.clone()
        out[rows, :, heads] = clean.to(out.dtype)
    return out, weights


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION, _attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)


@contextmanager
def intervening(loaded: LoadedModel, plan: Plan | None = None) -> Iterator[None]:
    """Run the model under ``plan`` inside the block (heads through :data:`ATTENTION`)."""
    _register()
    config = loaded.model.config
    before = config._attn_implementation
    token = _PLAN.set(plan)
    handles = []
    if plan is not None:
        for layer in plan.ablate_mlp:
            handles.append(
                loaded.adapter.mlp_out_module(layer).register_forward_hook(
                    lambda m, a, o, mode=plan.mode: _ablate_output(o, mode)
                )
            )
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = before
        _PLAN.reset(token)
        for handle in handles:
            handle.remove()


def _ablate_output(output, mode: str):  # type: ignore[no-untyped-def]
    tensor = output[0] if isinstance(output, tuple) else output
    new = (
        torch.zeros_like(tensor)
        if mode == "zero"
        else tensor.mean(dim=1, keepdim=True).expand_as(tensor).clone()
    )
    return (new, *output[1:]) if isinstance(output, tuple) else new


def patterns_of(
    loaded: LoadedModel, input_ids: torch.Tensor, heads: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], torch.Tensor]:
    """The attention patterns ``[P, P]`` of ``heads`` on ``input_ids`` (for freezing)."""
    from mechviz.tracing.record import record

    rec = record(loaded, input_ids)
    return {(at, h): rec.attentions[at][h].clone() for at, h in heads}


# --- activation patching ---------------------------------------------------------------------

KINDS = ("resid", "heads", "mlp")


@dataclass(frozen=True)
class PatchResult:
    """Normalised logit differences of every patched run: 1 = the clean run's, 0 = the corrupt's.

    ``resid[y, p]``: the clean residual at layer boundary ``y`` (``embed``, then
    each ``{l}_post``) and position ``p`` written into the corrupt run;
    ``heads[l, h]``: head ``h`` of layer ``l``'s clean output ``z_h`` at every
    position; ``mlp[l]``: layer ``l``'s clean MLP output at every position.
    Kinds not asked for are NaN.
    """

    answer: int
    wrong: int
    clean_diff: float  # logit(answer) - logit(wrong) at the last position, clean run
    corrupt_diff: float  # the same, corrupt run
    resid: torch.Tensor  # [L + 1, P]
    heads: torch.Tensor  # [L, H]
    mlp: torch.Tensor  # [L]
    runs: int  # patched runs made (sites whose activations are equal need none)
    passes: int  # batched forward passes they took


@torch.no_grad()
def patch(
    loaded: LoadedModel,
    clean_ids: torch.Tensor,
    corrupt_ids: torch.Tensor,
    *,
    answer: int | None = None,
    wrong: int | None = None,
    kinds: Sequence[str] = KINDS,
) -> PatchResult:
    """Activation patching of ``clean_ids`` into ``corrupt_ids`` at every site (module doc).

    ``answer`` defaults to the clean run's top-1 at the last position, ``wrong``
    to the corrupt run's (its second when that is the answer too).

    The runs are batched by the layer where their patch enters: every site of
    layer ``l`` (the residual entering it at each position, its heads, its MLP)
    is one row of one forward pass, whose layers before ``l`` are not run but
    return the corrupt run's recorded outputs (they would compute exactly
    those). So the whole of patching costs ``L + 1`` passes of a few rows, each
    over fewer layers than the last.
    """
    from mechviz.tracing.record import record

    if len(clean_ids) != len(corrupt_ids):
        raise MechvizError(
            f"The clean prompt is {_tokens(len(clean_ids))} long and the corrupt prompt "
            f"{_tokens(len(corrupt_ids))}; patching needs the same number of tokens."
        )
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be some of {KINDS}; got {tuple(kinds)}")
    clean = record(loaded, clean_ids)
    corrupt, cached = _record_layers(loaded, corrupt_ids)
    if answer is None:
        answer = int(clean.logits[-1].argmax())
    if wrong is None:
        order = corrupt.logits[-1].argsort(descending=True)
        wrong = int(order[0]) if int(order[0]) != answer else int(order[1])
    if answer == wrong:
        raise MechvizError("The answer and the wrong token are the same token; give two tokens.")

    def diff(logits: torch.Tensor) -> torch.Tensor:
        return logits[..., answer].double() - logits[..., wrong].double()

    clean_diff, corrupt_diff = float(diff(clean.logits[-1])), float(diff(corrupt.logits[-1]))
    if abs(clean_diff - corrupt_diff) < 1e-6:
        raise MechvizError(
            "The clean and corrupt prompts give the same logit difference between the answer and "
            "the wrong token, so patching has nothing to restore; choose prompts or tokens that "
            "differ."
        )
    L, P = loaded.adapter.n_layers, len(clean_ids)
    H = clean.attentions[0].shape[0]
    resid = torch.full((L + 1, P), float("nan"), dtype=torch.float64)
    heads = torch.full((L, H), float("nan"), dtype=torch.float64)
    mlp = torch.full((L,), float("nan"), dtype=torch.float64)
    clean_z = [z.view(P, H, -1) for z in clean.attn_z]
    corrupt_z = [z.view(P, H, -1) for z in corrupt.attn_z]
    clean_rows = [clean.resid_pre[0]] + list(clean.resid_post)  # [L + 1] x [P, D]
    corrupt_rows = [corrupt.resid_pre[0]] + list(corrupt.resid_post)
    device = loaded.adapter.embed.weight.device
    ids = corrupt_ids.to(device)
    runs = passes = 0
    for layer in range(L + 1):  # the patch enters layer `layer` (L: the final residual)
        sites = [("resid", layer, p) for p in range(P)] if "resid" in kinds else []
        if layer < L:
            sites += [("head", layer, h) for h in range(H)] if "heads" in kinds else []
            sites += [("mlp", layer, 0)] if "mlp" in kinds else []
        # A site whose clean activation equals the corrupt one (a position before the
        # first token where the prompts differ, say) patches nothing: the run is the
        # corrupt run itself, so its value is exactly the corrupt difference.
        same = {
            site
            for site in sites
            if torch.equal(
                *_site_values(
                    site,
                    clean_rows,
                    corrupt_rows,
                    clean_z,
                    corrupt_z,
                    clean.mlp_out,
                    corrupt.mlp_out,
                )
            )
        }
        for kind, _, i in same:
            if kind == "resid":
                resid[layer, i] = corrupt_diff
            elif kind == "head":
                heads[layer, i] = corrupt_diff
            else:
                mlp[layer] = corrupt_diff
        sites = [site for site in sites if site not in same]
        if not sites:
            continue
        out = diff(
            _patched_run(loaded, ids, sites, clean_rows, clean_z, clean.mlp_out, layer, cached)
        )
        for (kind, _, i), value in zip(sites, out):
            if kind == "resid":
                resid[layer, i] = value
            elif kind == "head":
                heads[layer, i] = value
            else:
                mlp[layer] = value
        runs += len(sites)
        passes += 1

    def norm(values: torch.Tensor) -> torch.Tensor:
        return ((values - corrupt_diff) / (clean_diff - corrupt_diff)).float()

    return PatchResult(
        answer=answer,
        wrong=wrong,
        clean_diff=clean_diff,
        corrupt_diff=corrupt_diff,
        resid=norm(resid),
        heads=norm(heads),
        mlp=norm(mlp),
        runs=runs,
        passes=passes,
    )


def _site_values(site, clean_rows, corrupt_rows, clean_z, corrupt_z, clean_mlp, corrupt_mlp):  # type: ignore[no-untyped-def]
    """The clean and the corrupt activation that a site's patch swaps."""
    kind, layer, i = site
    if kind == "resid":
        return clean_rows[layer][i], corrupt_rows[layer][i]
    if kind == "head":
        return clean_z[layer][:, i], corrupt_z[layer][:, i]
    return clean_mlp[layer], corrupt_mlp[layer]


def _record_layers(loaded: LoadedModel, ids: torch.Tensor):  # type: ignore[no-untyped-def]
    """``record`` of ``ids`` (:mod:`mechviz.tracing.record`), and each layer's output as made."""
    from mechviz.tracing.record import record

    outputs: list[torch.Tensor] = []
    handles = [
        block.register_forward_hook(lambda m, a, o: outputs.append(o))
        for block in loaded.adapter.layers
    ]
    try:
        rec = record(loaded, ids)
    finally:
        for handle in handles:
            handle.remove()
    return rec, outputs


@torch.no_grad()
def _patched_run(loaded, ids, sites, clean_rows, clean_z, clean_mlp, start, cached) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """One batched forward pass of the corrupt prompt, row ``i`` patched at ``sites[i]``.

    Every site enters at layer ``start``; layers before it return ``cached``
    (the corrupt run's outputs) instead of computing them, the last of them
    with the residual rows patched. Returns the last position's logits ``[n, V]``.
    """
    adapter = loaded.adapter
    n = len(sites)
    resid = [(row, p) for row, (kind, _, p) in enumerate(sites) if kind == "resid"]
    heads = [(row, h) for row, (kind, _, h) in enumerate(sites) if kind == "head"]
    mlps = [row for row, (kind, _, _) in enumerate(sites) if kind == "mlp"]

    def patched(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.expand(n, *tensor.shape[1:]).clone()
        if resid:
            rows = torch.tensor([r for r, _ in resid])
            pos = torch.tensor([p for _, p in resid])
            tensor[rows, pos] = clean_rows[start][pos].to(tensor)
        return tensor

    handles = []
    skipped = list(adapter.layers)[:start]
    for j, block in enumerate(skipped):
        last = j == start - 1
        block.forward = (  # type: ignore[method-assign]
            lambda *a, out=cached[j], last=last, **k: (
                patched(out) if last else out.expand(n, *out.shape[1:])
            )
        )
    if start == 0 and resid:  # the stream entering layer 0: its input

        def pre(module, args, kwargs):  # type: ignore[no-untyped-def]
            if args:
                return (patched(args[0]), *args[1:]), kwargs
            kwargs["hidden_states"] = patched(kwargs["hidden_states"])
            return args, kwargs

        handles.append(adapter.layers[0].register_forward_pre_hook(pre, with_kwargs=True))
    if mlps and start < adapter.n_layers:
        index = torch.tensor(mlps)
        source = clean_mlp[start]

        def put(m, a, o):  # type: ignore[no-untyped-def]
            t = (o[0] if isinstance(o, tuple) else o).clone()
            t[index] = source.to(t)
            return (t, *o[1:]) if isinstance(o, tuple) else t

        handles.append(adapter.mlp_out_module(start).register_forward_hook(put))
    patch_z = None
    if heads:
        patch_z = {
            start: (
                torch.tensor([r for r, _ in heads]),
                torch.stack([clean_z[start][:, h] for _, h in heads]),
                torch.tensor([h for _, h in heads]),
            )
        }
    token = _PATCH_Z.set(patch_z)
    # Heads are patched through mechviz's attention function; runs without head
    # sites need no attention weights and take the model's fused kernel (sdpa).
    fused = not heads and getattr(loaded.model, "_supports_sdpa", False)
    config = loaded.model.config
    before = config._attn_implementation
    try:
        if fused:
            config._attn_implementation = "sdpa"
            out = loaded.model(ids[None].expand(n, -1), use_cache=False, logits_to_keep=1)
        else:
            with intervening(loaded, None):
                out = loaded.model(ids[None].expand(n, -1), use_cache=False, logits_to_keep=1)
    finally:
        config._attn_implementation = before
        _PATCH_Z.reset(token)
        for handle in handles:
            handle.remove()
        for block in skipped:
            del block.forward  # the class's forward again
    return out.logits[:, -1].float()


# --- traces of changed runs ------------------------------------------------------------------


def changed_trace(loaded: LoadedModel, prompt: str, options, changes: Changes):  # type: ignore[no-untyped-def]
    """Trace ``prompt`` with ``changes`` applied; the ``interventions`` section says what they were.

    With no changes this is :func:`mechviz.tracing.record.trace_prompt`, unchanged.
    """
    from mechviz.tracing.record import (
        build_trace,
        lens_statistics,
        numpy_of,
        output_of,
        record,
        tokenize,
        trace_prompt,
        with_sections,
    )
    from mechviz.tracing.schema import Interventions

    changes.check()
    if changes.empty:
        return trace_prompt(loaded, prompt, options)
    options.check()
    adapter = loaded.adapter
    L = adapter.n_layers
    H = loaded.model.config.num_attention_heads
    ablate = parse_heads(changes.ablate, L, H, "--ablate")
    freeze = parse_heads(changes.freeze, L, H, "--freeze")
    mlps = parse_layers(changes.ablate_mlp, L)
    ids = tokenize(loaded, prompt, options.max_tokens)
    patterns: dict[tuple[int, int], torch.Tensor] = {}
    if freeze:
        other = tokenize(loaded, changes.freeze_from, options.max_tokens)
        if len(other) != len(ids):
            raise MechvizError(
                f"--freeze-from has {_tokens(len(other))} but the prompt has {_tokens(len(ids))}; "
                "a frozen "
                "attention pattern needs prompts of the same length in tokens."
            )
        patterns = patterns_of(loaded, other, freeze)
    before = record(loaded, ids)
    with intervening(
        loaded, Plan(ablate=ablate, ablate_mlp=mlps, mode=changes.mode, freeze_patterns=patterns)
    ):
        rec = record(loaded, ids)
    trace = build_trace(loaded, prompt, rec, options)
    k = options.top_k
    stats = lens_statistics(adapter, before.boundaries()[0::2, -1:], before.logits[-1:], k)
    top = output_of(before.logits[-1:], k)  # as the trace's own output, to 1e-7
    section = Interventions(
        mode=changes.mode,
        ablate=[f"{a}.{b}" for a, b in ablate],
        ablate_mlp=list(mlps),
        freeze=[f"{a}.{b}" for a, b in freeze],
        freeze_from=changes.freeze_from if freeze else None,
        before_lens_ids=numpy_of(stats["top_ids"][:, 0]),
        before_lens_probs=numpy_of(stats["top_probs"][:, 0]),
        before_output_ids=top.top_ids[0],
        before_output_probs=top.top_probs[0],
    )
    return with_sections(trace, loaded, interventions=section)


def _tokens(n: int) -> str:
    return f"{n} token" if n == 1 else f"{n} tokens"


def patching_trace(  # type: ignore[no-untyped-def]
    loaded: LoadedModel,
    clean: str,
    corrupt: str,
    options,
    *,
    answer: str | None = None,
    wrong: str | None = None,
):
    """The trace of ``clean`` with a ``patching`` section: :func:`patch` into ``corrupt``."""
    from mechviz.model.load import single_token
    from mechviz.tracing.record import numpy_of, tokenize, trace_prompt, with_sections
    from mechviz.tracing.schema import Patching

    options.check()
    clean_ids = tokenize(loaded, clean, options.max_tokens)
    corrupt_ids = tokenize(loaded, corrupt, options.max_tokens)
    if len(clean_ids) != len(corrupt_ids):
        raise MechvizError(
            f"The clean prompt is {_tokens(len(clean_ids))} long and the corrupt prompt "
            f"{_tokens(len(corrupt_ids))}; patching needs the same number of tokens."
        )
    answer_id = None if answer is None else single_token(loaded, answer, "--answer token")
    wrong_id = None if wrong is None else single_token(loaded, wrong, "--wrong token")
    result = patch(loaded, clean_ids, corrupt_ids, answer=answer_id, wrong=wrong_id)
    trace = trace_prompt(loaded, clean, options)
    section = Patching(
        corrupt_prompt=corrupt,
        answer=result.answer,
        wrong=result.wrong,
        clean_diff=result.clean_diff,
        corrupt_diff=result.corrupt_diff,
        corrupt_ids=numpy_of(corrupt_ids),
        resid=numpy_of(result.resid),
        heads=numpy_of(result.heads),
        mlp=numpy_of(result.mlp),
    )
    return with_sections(trace, loaded, patching=section)
