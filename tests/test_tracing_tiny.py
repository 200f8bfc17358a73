"""Tracing invariants on tiny random models of every supported family (no download).

Every reference value here is computed independently of mechviz: the final
norm from its formula and the config's epsilon, the unembedding from the
model's own attribute names, attention and MLP outputs from our own hooks.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    FAMILIES,
    GEMMA_NORM,
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    LAYER_NORM,
    LAYERS,
    TIED,
    TINY_PROMPT,
    VOCAB,
    CharTokenizer,
    build_tiny_model,
    make_tiny,
)

from mechviz.errors import MechvizError
from mechviz.model.adapter import FAMILIES as ADAPTER_FAMILIES
from mechviz.model.adapter import Adapter
from mechviz.model.load import wrap_model
from mechviz.tracing.record import (
    TraceOptions,
    boundary_labels,
    build_trace,
    lens_statistics,
    record,
    tokenize,
    trace_prompt,
)

PROB_ATOL = 1e-5

# --- independent knowledge of each architecture --------------------------------


def _layers(family: str, model: torch.nn.Module) -> list[torch.nn.Module]:
    if family == "gpt2":
        return list(model.transformer.h)
    if family == "gpt_neox":
        return list(model.gpt_neox.layers)
    return list(model.model.layers)


def _final_norm(family: str, model: torch.nn.Module) -> torch.nn.Module:
    return {
        "gpt2": lambda: model.transformer.ln_f,
        "gpt_neox": lambda: model.gpt_neox.final_layer_norm,
        "phi": lambda: model.model.final_layernorm,
    }.get(family, lambda: model.model.norm)()


def _unembed(family: str, model: torch.nn.Module) -> torch.nn.Linear:
    # transformers 5 calls every family's unembedding `lm_head` (GPT-NeoX's old
    # `embed_out` is renamed when a checkpoint is loaded).
    return model.lm_head


def _eps(family: str, config) -> float:  # noqa: ANN001
    if family == "gpt2":
        return config.layer_norm_epsilon
    if family in ("gpt_neox", "phi"):
        return config.layer_norm_eps
    return config.rms_norm_eps


def _attn_out_module(family: str, layer: torch.nn.Module) -> torch.nn.Module:
    """The module whose output is exactly what attention adds to the stream."""
    if family in ("gemma2", "gemma3_text"):
        return layer.post_attention_layernorm  # Gemma 2/3 normalise attn_out first
    if family == "gpt2":
        return layer.attn
    if family == "gpt_neox":
        return layer.attention
    return layer.self_attn


def _mlp_out_module(family: str, layer: torch.nn.Module) -> torch.nn.Module:
    if family in ("gemma2", "gemma3_text"):
        return layer.post_feedforward_layernorm
    return layer.mlp


def reference_logits(
    tiny,
    x: torch.Tensor,
    stats_from: torch.Tensor | None = None,  # noqa: ANN001
) -> torch.Tensor:
    """Logit lens from the formulas, in float64.

    The norm's statistics come from ``stats_from`` (default: ``x`` itself); passing
    another boundary gives the wrong lens that reuses that boundary's scale.
    """
    family, model = tiny.family, tiny.loaded.model
    eps = _eps(family, model.config)
    norm = _final_norm(family, model)
    x = x.double()
    s = x if stats_from is None else stats_from.double()
    w = norm.weight.detach().double()
    if family in LAYER_NORM:
        mu = s.mean(-1, keepdim=True)
        inv = torch.rsqrt(s.var(-1, unbiased=False, keepdim=True) + eps)
        y = (x - mu) * inv * w + norm.bias.detach().double()
    else:
        inv = torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + eps)
        y = x * inv * ((1.0 + w) if family in GEMMA_NORM else w)
    unembed = _unembed(family, model)
    logits = y @ unembed.weight.detach().double().T
    if unembed.bias is not None:
        logits = logits + unembed.bias.detach().double()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _f64(x) -> torch.Tensor:  # noqa: ANN001
    return torch.as_tensor(x).double()


def max_prob_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double().softmax(-1) - b.double().softmax(-1)).abs().max().item()


@torch.no_grad()
def own_hooks(tiny) -> dict[str, list[torch.Tensor]]:  # noqa: ANN001
    """Attention and MLP outputs of every layer, from hooks we place ourselves."""
    family, model = tiny.family, tiny.loaded.model
    got: dict[str, list[torch.Tensor]] = {"attn": [], "mlp": []}

    def keep(kind: str):  # noqa: ANN202
        def hook(module, args, output):  # noqa: ANN001, ANN202
            out = output[0] if isinstance(output, tuple) else output
            got[kind].append(out[0].detach().clone())

        return hook

    handles = []
    for layer in _layers(family, model):
        handles.append(_attn_out_module(family, layer).register_forward_hook(keep("attn")))
        handles.append(_mlp_out_module(family, layer).register_forward_hook(keep("mlp")))
    try:
        logits = model(tiny.ids[None], use_cache=False).logits[0]
    finally:
        for h in handles:
            h.remove()
    got["logits"] = [logits]
    return got


# --- the logit lens ---------------------------------------------------------------


def test_lens_at_last_boundary_is_the_model_output(tiny) -> None:  # noqa: ANN001
    adapter, model = tiny.loaded.adapter, tiny.loaded.model
    with torch.no_grad():
        lens = adapter.logit_lens(tiny.rec.boundaries()[-1])
        independent = model(tiny.ids[None], use_cache=False).logits[0]
    # The distributions are peaked, so a wrong lens could not hide below 1e-5.
    assert independent.softmax(-1).max(-1).values.max() > 0.05
    assert max_prob_diff(lens, tiny.rec.logits) <= PROB_ATOL
    assert max_prob_diff(lens, independent) <= PROB_ATOL
    assert max_prob_diff(tiny.rec.logits, independent) <= PROB_ATOL


def test_trace_lens_last_row_matches_output(tiny) -> None:  # noqa: ANN001
    trace = tiny.trace
    lens, out = trace.lens, trace.output
    assert (lens.top_ids[-1] == out.top_ids).all()
    assert abs(lens.top_probs[-1] - out.top_probs).max() <= PROB_ATOL
    assert abs(lens.kl_to_final[-1]).max() <= PROB_ATOL
    assert abs(lens.entropy[-1] - out.entropy).max() <= 1e-4
    assert (lens.final_token_rank[-1] == 0).all()
    assert abs(lens.final_token_prob[-1] - out.top_probs[:, 0]).max() <= PROB_ATOL


def test_final_norm_is_recomputed_for_every_boundary(tiny) -> None:  # noqa: ANN001
    adapter = tiny.loaded.adapter
    resid = tiny.rec.boundaries()  # [B, P, D]
    with torch.no_grad():
        for b in range(resid.shape[0]):
            lens = adapter.logit_lens(resid[b])
            assert max_prob_diff(lens, reference_logits(tiny, resid[b])) <= PROB_ATOL, b
        # A middle boundary read with the last boundary's norm statistics is a
        # different distribution; the lens must not be that one.
        mid = resid.shape[0] // 2
        stale = reference_logits(tiny, resid[mid], stats_from=resid[-1])
        right = reference_logits(tiny, resid[mid])
        lens = adapter.logit_lens(resid[mid])
    assert max_prob_diff(stale, right) > 1e-2
    assert max_prob_diff(lens, right) <= PROB_ATOL
    assert max_prob_diff(lens, stale) > 1e-2


def test_lens_statistics_match_reference(tiny) -> None:  # noqa: ANN001
    trace, rec = tiny.trace, tiny.rec
    resid = rec.boundaries()[0::2]  # the lens boundaries: embed, then each resid_post
    final = reference_logits(tiny, resid[-1])
    final_logp = final.log_softmax(-1)
    target = tiny.rec.logits.argmax(-1)
    assert trace.lens.labels == boundary_labels(LAYERS)[0::2]
    for y in range(resid.shape[0]):
        logp = reference_logits(tiny, resid[y]).log_softmax(-1)  # [P, V]
        p = logp.exp()
        top_ids = torch.as_tensor(trace.lens.top_ids[y])
        top_probs = _f64(trace.lens.top_probs[y])
        # probabilities at the ids the trace chose (robust to exact ties)
        assert torch.allclose(p.gather(-1, top_ids), top_probs, atol=PROB_ATOL, rtol=0)
        kth = p.topk(top_ids.shape[-1], dim=-1).values
        assert torch.allclose(kth, top_probs, atol=PROB_ATOL, rtol=0)
        entropy = -(p * logp).sum(-1)
        assert torch.allclose(_f64(trace.lens.entropy[y]), entropy, atol=1e-4, rtol=1e-5)
        kl = (final_logp.exp() * (final_logp - logp)).sum(-1)
        assert torch.allclose(_f64(trace.lens.kl_to_final[y]), kl, atol=1e-4, rtol=1e-4)
        p_target = p.gather(-1, target[:, None])[:, 0]
        final_prob = _f64(trace.lens.final_token_prob[y])
        assert torch.allclose(final_prob, p_target, atol=PROB_ATOL, rtol=0)
        rank = torch.as_tensor(trace.lens.final_token_rank[y])
        lo = (p > p_target[:, None] + 1e-7).sum(-1)
        hi = (p > p_target[:, None] - 1e-7).sum(-1)
        assert ((lo <= rank) & (rank <= hi)).all(), y


def reference_lens_stats(
    logits: torch.Tensor, final_logits: torch.Tensor, top_k: int
) -> dict[str, torch.Tensor]:
    """The lens statistics, straight from their definitions, in float64.

    ``logits`` are the lens logits ``[B, P, V]``; ``final_logits`` the model's own.
    """
    logits = logits.double()
    logp = logits.log_softmax(-1)
    p = logp.exp()
    final_logp = final_logits.double().log_softmax(-1)
    target = final_logits.argmax(-1)[None, :, None].expand(logits.shape[0], -1, 1)
    target_logit = logits.gather(-1, target)
    return {
        "logits": logits,
        "p": p,
        "top_probs": p.topk(top_k, dim=-1).values,
        "entropy": -(p * logp).sum(-1),
        "kl_to_final": (final_logp.exp() * (final_logp - logp)).sum(-1),
        "final_token_prob": p.gather(-1, target)[..., 0],
        "target_logit": target_logit[..., 0],
    }


def assert_lens_matches_reference(
    got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], prob_atol: float, nats_atol: float
) -> None:
    """Every statistic within tolerance of the float64 reference, and in its range."""
    top_ids, top_probs = got["top_ids"], got["top_probs"].double()
    V = ref["p"].shape[-1]
    # top-k: the reference's k largest, at ids whose probabilities they are (ties
    # may be ordered either way), most probable first, every id once
    assert torch.allclose(top_probs, ref["top_probs"], atol=prob_atol, rtol=0)
    assert torch.allclose(ref["p"].gather(-1, top_ids), top_probs, atol=prob_atol, rtol=0)
    assert (top_probs.diff(dim=-1) <= 0).all()
    assert (top_ids.sort(-1).values.diff(dim=-1) > 0).all()
    for key in ("top_probs", "final_token_prob"):
        assert (got[key] >= 0).all() and (got[key] <= 1).all(), key
    final_prob = got["final_token_prob"].double()
    assert torch.allclose(final_prob, ref["final_token_prob"], atol=prob_atol, rtol=0)
    for key in ("entropy", "kl_to_final"):
        assert torch.allclose(got[key].double(), ref[key], atol=nats_atol, rtol=1e-6), key
    assert (got["entropy"] >= 0).all() and (got["entropy"] <= math.log(V)).all()
    assert (got["kl_to_final"] >= 0).all()
    # rank: logits strictly above the target's, up to float32 rounding of near-ties
    logits, t = ref["logits"], ref["target_logit"][..., None]
    slack = 1e-5 * (1 + logits.abs().amax(-1, keepdim=True))
    lo, hi = (logits > t + slack).sum(-1), (logits > t - slack).sum(-1)
    rank = got["final_token_rank"]
    assert rank.dtype == torch.int64
    assert ((lo <= rank) & (rank <= hi)).all()


def lens_paths(adapter) -> list[bool]:  # noqa: ANN001
    """The lens paths an adapter allows: the fast (affine) one where it applies, the general one."""
    return [True, False] if adapter.affine_lens else [False]


@pytest.mark.parametrize("top_k", [1, 5])
def test_fast_and_general_lens_match_float64_reference(tiny, top_k: int) -> None:  # noqa: ANN001
    adapter, rec = tiny.loaded.adapter, tiny.rec
    resid = rec.boundaries()[0::2]
    logits = torch.stack([reference_logits(tiny, r) for r in resid])
    ref = reference_lens_stats(logits, rec.logits, top_k)
    # only Gemma 2 (softcap) lacks the fast path among the tiny families
    assert adapter.affine_lens is (tiny.family != "gemma2")
    results = {}
    for affine in lens_paths(adapter):
        got = lens_statistics(adapter, resid, rec.logits, top_k, affine=affine)
        assert_lens_matches_reference(got, ref, prob_atol=2e-6, nats_atol=2e-5)
        # at the last boundary the lens is the model's output
        assert (got["final_token_rank"][-1] == 0).all()
        assert got["kl_to_final"][-1].abs().max() <= 2e-6
        assert (got["top_ids"][-1, :, 0] == rec.logits.argmax(-1)).all()
        results[affine] = got
    if len(results) == 2:
        for key, value in results[True].items():
            other = results[False][key].double()
            atol = 2e-6 if "prob" in key else 2e-5
            assert torch.allclose(value.double(), other, atol=atol, rtol=1e-6), key


def test_fast_path_is_refused_where_it_does_not_apply() -> None:
    tiny = make_tiny("gemma2")
    resid = tiny.rec.boundaries()[0::2]
    with pytest.raises(ValueError, match="affine"):
        lens_statistics(tiny.loaded.adapter, resid, tiny.rec.logits, 3, affine=True)


def _tiny_with_vocab(family: str, vocab: int):  # noqa: ANN202
    """A tiny model of ``family`` with a larger vocabulary, traced on TINY_PROMPT."""
    from conftest import GEMMA_NORM, _randomise_norms, _tiny_config

    config, cls = _tiny_config(family)
    config.vocab_size = vocab
    config._attn_implementation = "eager"
    torch.manual_seed(1)
    model = cls(config).float().eval()
    _randomise_norms(model, gemma_convention=family in GEMMA_NORM)
    loaded = wrap_model(model, CharTokenizer(vocab), f"tiny-{family}-{vocab}")
    ids = tokenize(loaded, TINY_PROMPT, 64)
    return SimpleNamespace(family=family, loaded=loaded, ids=ids, rec=record(loaded, ids))


# 4099 = 64 * 64 + 3 leaves a tail outside the top-k's groups; phi has a biased
# unembedding, gemma2 a softcap (general path only).
@pytest.mark.parametrize(("family", "vocab"), [("llama", 4099), ("phi", 4160), ("gemma2", 4096)])
def test_grouped_top_k_lens_on_a_larger_vocabulary(family: str, vocab: int) -> None:
    tiny = _tiny_with_vocab(family, vocab)
    adapter, rec = tiny.loaded.adapter, tiny.rec
    resid = rec.boundaries()[0::2]
    logits = torch.stack([reference_logits(tiny, r) for r in resid])
    for top_k in (1, 10):
        assert top_k * 64 * 4 <= vocab  # the grouped top-k, not torch's
        ref = reference_lens_stats(logits, rec.logits, top_k)
        for affine in lens_paths(adapter):
            got = lens_statistics(adapter, resid, rec.logits, top_k, affine=affine)
            assert_lens_matches_reference(got, ref, prob_atol=2e-6, nats_atol=2e-5)


class _LinearLens:
    """A bare ``x @ W.T + b`` lens (identity norm), to choose the logits exactly."""

    final_logit_softcap = None
    affine_lens = True

    def __init__(self, W: torch.Tensor, bias: torch.Tensor | None) -> None:
        self.unembed = torch.nn.Linear(W.shape[1], W.shape[0], bias=bias is not None)
        with torch.no_grad():
            self.unembed.weight.copy_(W)
            if bias is not None:
                self.unembed.bias.copy_(bias)

    @property
    def W_U(self) -> torch.Tensor:
        return self.unembed.weight

    def lens_norm(self, resid: torch.Tensor) -> torch.Tensor:
        return resid

    def logits_from_normed(self, normed: torch.Tensor) -> torch.Tensor:
        return self.unembed(normed)


@pytest.mark.parametrize("biased", [False, True])
def test_lens_with_logits_spanning_hundreds_of_nats(biased: bool) -> None:
    """Logit ranges far beyond float32's exp range, and final mass where the lens has ~none.

    exp of x < -87 underflows in float32; the lens clamps before exp, which
    must not change entropy, KL (which needs those very logits) or probabilities.
    """
    g = torch.Generator().manual_seed(0)
    B, P, D, V = 4, 6, 16, 1000
    W = torch.randn(V, D, generator=g)
    bias = torch.randn(V, generator=g) * 3 if biased else None
    lens = _LinearLens(W, bias)
    resid = torch.randn(B, P, D, generator=g) * torch.tensor([1.0, 10.0, 40.0, 80.0])[:, None, None]
    final_logits = torch.randn(P, V, generator=g) * 4
    with torch.no_grad():
        logits = resid.double() @ W.double().T + (0 if bias is None else bias.double())
    assert (logits.amax(-1) - logits.amin(-1)).max() > 500  # far past exp's float32 range
    ref = reference_lens_stats(logits, final_logits, 5)
    assert ref["kl_to_final"].max() > 100
    for affine in (True, False):
        got = lens_statistics(lens, resid, final_logits, 5, affine=affine)
        # float32 logits of magnitude ~1000 are good to ~1e-4 nats
        kl_tol = 1e-4 + 1e-6 * ref["kl_to_final"]
        assert ((got["kl_to_final"].double() - ref["kl_to_final"]).abs() <= kl_tol).all()
        # the rest to the usual tolerances (KL checked just above)
        ref_rest = {**ref, "kl_to_final": got["kl_to_final"].double()}
        assert_lens_matches_reference(got, ref_rest, prob_atol=1e-5, nats_atol=1e-4)


@pytest.mark.parametrize("V", [64 * 40, 64 * 40 + 17, 49152])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_grouped_top_k_equals_torch_top_k(V: int, k: int) -> None:
    from mechviz.tracing.record import _topk

    g = torch.Generator().manual_seed(V + k)
    for x in (
        torch.randn(6, V, generator=g),
        torch.randint(0, 5, (6, V), generator=g).float(),  # many exact ties
        torch.full((2, V), -3.0),
    ):
        values = torch.empty(x.shape[0], k)
        ids = torch.empty(x.shape[0], k, dtype=torch.int64)
        _topk(x, values, ids)
        assert torch.equal(values, x.topk(k, dim=-1).values)
        assert torch.equal(x.gather(1, ids), values)
        assert (ids.sort(-1).values.diff(dim=-1) > 0).all()


def test_output_matches_float64_reference(tiny) -> None:  # noqa: ANN001
    out, logits = tiny.trace.output, tiny.rec.logits
    logp = logits.double().log_softmax(-1)
    p = logp.exp()
    k = out.top_ids.shape[-1]
    top_probs = _f64(out.top_probs)
    assert torch.allclose(top_probs, p.topk(k, dim=-1).values, atol=1e-6, rtol=0)
    assert torch.allclose(p.gather(-1, torch.as_tensor(out.top_ids)), top_probs, atol=1e-6, rtol=0)
    assert (top_probs.diff(dim=-1) <= 0).all() and (top_probs <= 1).all()
    entropy = -(p * logp).sum(-1)
    assert torch.allclose(_f64(out.entropy), entropy, atol=1e-5, rtol=1e-6)


# (LENS_CHUNK, LENS_BLOCK) in rows of logits: one row at a time; boxes that split
# a boundary's positions unevenly; several whole boundaries per block.
CHUNKINGS = [(1, 1), (11, 4), (11, 11), (60, 26), (200, 100)]


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(("chunk", "block"), CHUNKINGS)
def test_lens_statistics_do_not_depend_on_chunking(
    monkeypatch: pytest.MonkeyPatch, chunk: int, block: int, affine: bool
) -> None:
    import mechviz.tracing.record as tracing

    tiny = _tiny_qwen2()
    resid = tiny.rec.boundaries()[0::2]
    whole = lens_statistics(tiny.loaded.adapter, resid, tiny.rec.logits, 7, affine=affine)
    monkeypatch.setattr(tracing, "LENS_CHUNK", chunk * VOCAB)
    monkeypatch.setattr(tracing, "LENS_BLOCK", block * VOCAB)
    parts = lens_statistics(tiny.loaded.adapter, resid, tiny.rec.logits, 7, affine=affine)
    assert whole.keys() == parts.keys()
    for key in whole:
        assert whole[key].shape == parts[key].shape, key
        assert torch.allclose(whole[key].double(), parts[key].double(), atol=1e-6), key


_QWEN2: list = []


def _tiny_qwen2():  # noqa: ANN202
    if not _QWEN2:
        _QWEN2.append(make_tiny("qwen2"))
    return _QWEN2[0]


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 7, 26, 100])
@pytest.mark.parametrize(("B", "P"), [(1, 1), (4, 26), (31, 5), (3, 64)])
def test_lens_boxes_tile_the_grid_in_contiguous_runs(B: int, P: int, rows: int) -> None:
    from mechviz.tracing.record import _boxes

    seen = torch.zeros(B, P, dtype=torch.int64)
    for chunk in _boxes((0, B, 0, P), rows):
        c_b0, c_b1, c_p0, c_p1 = chunk
        assert (c_b1 - c_b0) * (c_p1 - c_p0) <= max(rows, 1)
        inner_rows = max(1, rows // 2)
        for b0, b1, p0, p1 in _boxes(chunk, inner_rows):
            assert c_b0 <= b0 < b1 <= c_b1 and c_p0 <= p0 < p1 <= c_p1
            assert (b1 - b0) * (p1 - p0) <= inner_rows
            # contiguous in the [B * P] row order and in the chunk's own order
            assert b1 - b0 == 1 or (p0, p1) == (0, P) == (c_p0, c_p1)
            seen[b0:b1, p0:p1] += 1
    assert (seen == 1).all()


def test_lens_builds_no_autograd_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's weights require grad; the lens must not keep a graph over [B, P, V].

    With a graph, every chunk's logits stay alive until the trace is built, which
    defeats LENS_CHUNK (about 0.9 GB instead of 0.3 GB for 64 tokens on the default
    model).
    """
    import mechviz.tracing.record as tracing

    tiny = make_tiny("llama")
    assert any(p.requires_grad for p in tiny.loaded.model.parameters())
    seen: list[dict[str, torch.Tensor]] = []
    real = tracing.lens_statistics

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = real(*args, **kwargs)
        seen.append(out)
        return out

    monkeypatch.setattr(tracing, "lens_statistics", spy)
    build_trace(tiny.loaded, TINY_PROMPT, tiny.rec, TraceOptions(top_k=3))
    assert seen
    assert not [k for k, v in seen[0].items() if v.requires_grad]


def test_gemma2_output_softcap_is_applied_by_the_lens() -> None:
    tiny = make_tiny("gemma2")
    adapter, model = tiny.loaded.adapter, tiny.loaded.model
    assert adapter.final_logit_softcap == 30.0
    assert tiny.trace.model.final_logit_softcap == 30.0
    last = tiny.rec.boundaries()[-1]
    with torch.no_grad():
        uncapped = adapter.unembed(adapter.final_norm(last))
        model_logits = model(tiny.ids[None], use_cache=False).logits[0]
    assert model_logits.abs().max() < 30.0
    assert uncapped.abs().max() > 5.0  # large enough for the cap to matter
    assert max_prob_diff(uncapped, model_logits) > 1e-3  # so skipping the cap is visible
    assert max_prob_diff(adapter.logit_lens(last), model_logits) <= PROB_ATOL


def test_softcap_recorded_only_where_the_model_has_one(tiny) -> None:  # noqa: ANN001
    expected = 30.0 if tiny.family == "gemma2" else None
    assert tiny.trace.model.final_logit_softcap == expected


# --- embeddings ---------------------------------------------------------------------


def test_embed_boundary_is_the_models_own_embedding(tiny) -> None:  # noqa: ANN001
    family, model, ids = tiny.family, tiny.loaded.model, tiny.ids
    embed = tiny.rec.boundaries()[0]
    with torch.no_grad():
        if family == "gpt2":
            expected = (
                F.embedding(ids, model.transformer.wte.weight)
                + model.transformer.wpe.weight[: len(ids)]
            )
        elif family == "gpt_neox":
            expected = F.embedding(ids, model.gpt_neox.embed_in.weight)
        else:
            expected = F.embedding(ids, model.model.embed_tokens.weight)
            if family in GEMMA_NORM:
                unscaled = expected
                expected = expected * math.sqrt(HIDDEN)
                assert not torch.allclose(embed, unscaled, atol=1e-3)
    assert torch.allclose(embed, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("family", ["gemma", "gemma2", "gemma3_text"])
def test_gemma_embed_boundary_includes_sqrt_d_scaling(family: str) -> None:
    tiny = make_tiny(family)
    W = tiny.loaded.model.model.embed_tokens.weight.detach()
    expected = W[tiny.ids] * math.sqrt(tiny.loaded.model.config.hidden_size)
    embed = tiny.rec.boundaries()[0]
    assert torch.allclose(embed, expected, atol=1e-6, rtol=1e-6)
    ratio = embed.norm(dim=-1) / W[tiny.ids].norm(dim=-1)
    assert torch.allclose(ratio, torch.full_like(ratio, 8.0), rtol=1e-5)
    # the trace's resid norm at `embed` is the scaled one
    assert abs(tiny.trace.resid.norm[0] - embed.norm(dim=-1).numpy()).max() < 1e-4


def test_tied_embeddings_and_embed_lens(tiny) -> None:  # noqa: ANN001
    adapter, trace = tiny.loaded.adapter, tiny.trace
    tied = tiny.family in TIED
    assert adapter.tied_embeddings is tied
    assert trace.model.tied_embeddings is tied
    if tied:
        # W_U = W_E: read at `embed`, the stream points at the token it came from
        assert trace.lens.top_ids[0, :, 0].tolist() == tiny.ids.tolist()


# --- attention ----------------------------------------------------------------------


def test_attention_pattern_is_causal_and_normalised(tiny) -> None:  # noqa: ANN001
    pattern = torch.as_tensor(tiny.trace.attention.pattern)
    P = len(tiny.ids)
    assert pattern.shape == (LAYERS, HEADS, P, P)
    assert torch.allclose(pattern.sum(-1), torch.ones(LAYERS, HEADS, P), atol=1e-5, rtol=0)
    above = torch.triu(torch.ones(P, P, dtype=torch.bool), diagonal=1)
    assert (pattern[..., above] == 0).all()
    assert (pattern >= 0).all()
    assert torch.equal(pattern, torch.stack(tiny.rec.attentions))


# --- residual bookkeeping -------------------------------------------------------------


def test_resid_bookkeeping(tiny) -> None:  # noqa: ANN001
    rec, trace = tiny.rec, tiny.trace
    own = own_hooks(tiny)
    P = len(tiny.ids)
    assert len(rec.resid_pre) == len(rec.resid_post) == len(rec.mlp_out) == LAYERS
    for layer in range(LAYERS - 1):
        assert torch.equal(rec.resid_post[layer], rec.resid_pre[layer + 1]), layer
    resid = rec.boundaries()
    assert resid.shape == (2 * LAYERS + 1, P, HIDDEN)
    assert torch.equal(resid[0], rec.resid_pre[0])
    for layer in range(LAYERS):
        pre, post = rec.resid_pre[layer], rec.resid_post[layer]
        attn, mlp = own["attn"][layer], own["mlp"][layer]
        tol = dict(atol=1e-5 * max(1.0, post.abs().max().item()), rtol=1e-5)
        assert torch.allclose(rec.mlp_out[layer], mlp, **tol), layer
        assert torch.equal(resid[2 * layer + 2], post)
        # resid_mid = resid_pre + attn_out (also for parallel attention + MLP)
        assert torch.allclose(resid[2 * layer + 1], pre + attn, **tol), layer
        assert torch.allclose(post, pre + attn + mlp, **tol), layer
        assert rec.mlp_act[layer].shape == (P, INTERMEDIATE)
    # the model's own logits come out of the last resid_post
    assert max_prob_diff(own["logits"][0], rec.logits) <= PROB_ATOL

    # the trace's reductions of the same tensors
    assert trace.resid.labels == boundary_labels(LAYERS)
    norm = resid.norm(dim=-1)
    assert abs(trace.resid.norm - norm.numpy()).max() <= 1e-4 * norm.max().item()
    assert torch.allclose(torch.as_tensor(trace.resid.full), resid)
    assert torch.allclose(torch.as_tensor(trace.resid.sample), resid[..., :16])
    attn_norm = torch.stack(own["attn"]).norm(dim=-1)
    mlp_norm = torch.stack(own["mlp"]).norm(dim=-1)
    scale = max(attn_norm.max().item(), mlp_norm.max().item())
    tol = dict(atol=1e-4 * scale, rtol=1e-4)
    assert torch.allclose(torch.as_tensor(trace.blocks.attn_out_norm), attn_norm, **tol)
    assert torch.allclose(torch.as_tensor(trace.blocks.mlp_out_norm), mlp_norm, **tol)


def test_mlp_top_neurons_are_the_largest(tiny) -> None:  # noqa: ANN001
    mlp = tiny.trace.mlp
    for layer in range(LAYERS):
        act = tiny.rec.mlp_act[layer]  # [P, d_mlp]
        peak = act.abs().amax(0)
        top = torch.as_tensor(mlp.top_neurons[layer])
        assert torch.allclose(peak[top], peak.topk(len(top)).values)
        assert torch.allclose(torch.as_tensor(mlp.top_values[layer]), act[:, top].T)


# --- direct effects of heads on the answer ----------------------------------------------

REL = 1e-4  # the invariants' tolerance, relative


def _o_proj(family: str, layer: torch.nn.Module) -> torch.nn.Module:
    """W_O: the module whose input is the heads' outputs side by side."""
    return {
        "gpt2": lambda: layer.attn.c_proj,
        "gpt_neox": lambda: layer.attention.dense,
        "phi": lambda: layer.self_attn.dense,
    }.get(family, lambda: layer.self_attn.o_proj)()


def _attn_module(family: str, layer: torch.nn.Module) -> torch.nn.Module:
    """The attention module; its input is the normed stream the heads read."""
    if family == "gpt2":
        return layer.attn
    if family == "gpt_neox":
        return layer.attention
    return layer.self_attn


def _values(family: str, attn: torch.nn.Module, x: torch.Tensor, config) -> torch.Tensor:  # noqa: ANN001
    """Value vectors ``[H, P, d_head]`` of every query head (GQA heads share theirs)."""
    H = config.num_attention_heads
    dh = getattr(config, "head_dim", None) or config.hidden_size // H
    kv = getattr(config, "num_key_value_heads", None) or H
    P = x.shape[0]
    if family == "gpt2":
        v = attn.c_attn(x).split(config.hidden_size, dim=-1)[2].view(P, H, dh)
    elif family == "gpt_neox":
        v = attn.query_key_value(x).view(P, H, 3 * dh)[..., 2 * dh :]
    elif family == "phi3":
        v = attn.qkv_proj(x)[..., (H + kv) * dh :].view(P, kv, dh)
    else:
        v = attn.v_proj(x).view(P, kv, dh)
    return v.transpose(0, 1).repeat_interleave(H // kv, dim=0)  # head h reads kv head h // rep


def _biased_tiny(family: str):  # noqa: ANN202
    """A tiny model whose every bias (W_O's, the unembedding's, ...) is random, traced."""
    if family not in _BIASED:
        model = build_tiny_model(family)
        torch.manual_seed(2)
        with torch.no_grad():
            for module in model.modules():
                bias = getattr(module, "bias", None)
                norm = "norm" in type(module).__name__.lower()
                if isinstance(bias, torch.nn.Parameter) and not norm:
                    bias.copy_(0.3 * torch.randn_like(bias))
        loaded = wrap_model(model, CharTokenizer(VOCAB), f"tiny-{family}-biased")
        ids = tokenize(loaded, TINY_PROMPT, 64)
        rec = record(loaded, ids)
        trace = build_trace(loaded, TINY_PROMPT, rec, TraceOptions(top_k=3))
        _BIASED[family] = SimpleNamespace(
            family=family, loaded=loaded, ids=ids, rec=rec, trace=trace
        )
    return _BIASED[family]


_BIASED: dict = {}


@torch.no_grad()
def _forward_parts(tiny) -> dict:  # noqa: ANN001
    """One forward pass with our own hooks: what every block adds, the lens input, the logits."""
    family, model = tiny.family, tiny.loaded.model
    got: dict = {"attn_in": [], "attn": [], "o_proj": [], "mlp": [], "pre_cap": []}

    def out_hook(kind: str):  # noqa: ANN202
        def hook(module, args, output):  # noqa: ANN001, ANN202
            out = output[0] if isinstance(output, tuple) else output
            got[kind].append(out[0].double())

        return hook

    def in_hook(module, args, kwargs):  # noqa: ANN001, ANN202
        got["attn_in"].append(args[0] if args else kwargs["hidden_states"])

    def norm_in(module, args):  # noqa: ANN001, ANN202
        got["final_in"] = args[0][0].double()

    handles = [_final_norm(family, model).register_forward_pre_hook(norm_in)]
    handles.append(_unembed(family, model).register_forward_hook(out_hook("pre_cap")))
    for layer in _layers(family, model):
        handles += [
            _attn_module(family, layer).register_forward_pre_hook(in_hook, with_kwargs=True),
            _attn_out_module(family, layer).register_forward_hook(out_hook("attn")),
            _o_proj(family, layer).register_forward_hook(out_hook("o_proj")),
            _mlp_out_module(family, layer).register_forward_hook(out_hook("mlp")),
        ]
    try:
        out = model(tiny.ids[None], use_cache=False, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    got["pattern"] = [a[0].double() for a in out.attentions]
    got["embed"] = tiny.rec.boundaries()[0].double()  # checked against W_E by the tests above
    return got


def _readout(tiny, x: torch.Tensor, answer: int) -> tuple[torch.Tensor, float]:  # noqa: ANN001
    """From the formulas, in float64: the direction ``d`` with ``frozen_norm(v) . W_U[answer]
    = v . d``, the scale frozen at ``x`` ``[D]``; and the constant term (norm and
    unembedding biases) of the answer's logit."""
    family, model = tiny.family, tiny.loaded.model
    norm, unembed = _final_norm(family, model), _unembed(family, model)
    eps = _eps(family, model.config)
    w = norm.weight.detach().double()
    u = unembed.weight.detach()[answer].double()
    const = 0.0 if unembed.bias is None else unembed.bias.detach()[answer].item()
    if family in LAYER_NORM:
        d = w * torch.rsqrt(x.var(unbiased=False) + eps) * u
        return d - d.mean(), const + (norm.bias.detach().double() @ u).item()
    gain = (1.0 + w) if family in GEMMA_NORM else w
    return gain * torch.rsqrt(x.pow(2).mean() + eps) * u, const


def _post_gain(tiny, layer: int, written: torch.Tensor) -> torch.Tensor | float:  # noqa: ANN001
    """Gemma 2/3 normalise W_O's output (``written``, [D]) before the stream: frozen gain."""
    if tiny.family not in ("gemma2", "gemma3_text"):
        return 1.0
    model = tiny.loaded.model
    norm = _layers(tiny.family, model)[layer].post_attention_layernorm
    w = norm.weight.detach().double()
    return (1.0 + w) * torch.rsqrt(written.pow(2).mean() + model.config.rms_norm_eps)


def _rel(got: float, want: float, scale: float | None = None) -> float:
    return abs(got - want) / max(abs(want) if scale is None else scale, 1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_head_effects_sum_to_each_layers_attention_readout(family: str) -> None:
    """sum_h direct[l, h] + bias[l] = attn_out[l] at the last position, read through the
    final norm frozen there, onto W_U's row of the answer."""
    tiny = _biased_tiny(family)
    heads, trace = tiny.trace.heads, tiny.trace
    P = len(tiny.ids)
    assert (heads.answer, heads.position) == (trace.prediction[0], P - 1)
    assert heads.direct.shape == (LAYERS, HEADS) and heads.bias.shape == (LAYERS,)
    assert heads.direct.dtype == heads.bias.dtype == np.float32
    parts = _forward_parts(tiny)
    d, _ = _readout(tiny, parts["final_in"][-1], heads.answer)
    errors = []
    for layer in range(LAYERS):
        want = (parts["attn"][layer][-1] @ d).item()
        got = float(heads.direct[layer].astype(np.float64).sum() + heads.bias[layer])
        errors.append(_rel(got, want))
    print(f"{family}: max relative error {max(errors):.1e}")
    assert max(errors) <= REL, errors
    has_bias = family in ("gpt2", "gpt_neox", "phi")  # W_O with a bias
    assert (heads.bias != 0).all() if has_bias else (heads.bias == 0).all()
    for layer, block in enumerate(_layers(family, tiny.loaded.model)):
        b_O = _o_proj(family, block).bias
        if b_O is not None:
            want = (b_O.detach().double() @ d).item()
            assert _rel(float(heads.bias[layer]), want, abs(want) + 1e-3) <= REL, layer


@pytest.mark.parametrize("family", FAMILIES)
def test_each_heads_effect_is_its_own_value_mix(family: str) -> None:
    """Head h's slice of W_O's input is sum_k pattern[h, last, k] v_h[k]: the slices
    are in the pattern's head order, and each direct effect is that head's alone."""
    tiny = _biased_tiny(family)
    model, heads = tiny.loaded.model, tiny.trace.heads
    parts = _forward_parts(tiny)
    d, _ = _readout(tiny, parts["final_in"][-1], heads.answer)
    with torch.no_grad():
        for layer, block in enumerate(_layers(family, model)):
            x = parts["attn_in"][layer][0]
            v = _values(family, _attn_module(family, block), x, model.config).double()
            z = torch.einsum("hk,hkd->hd", parts["pattern"][layer][:, -1], v)  # [H, d_head]
            assert torch.allclose(tiny.rec.attn_z[layer][-1].view(HEADS, -1).double(), z, atol=1e-5)
            proj = _o_proj(family, block)
            assert tiny.loaded.adapter.attn_proj_module(layer) is proj
            W = proj.weight.detach().double()
            W_O = W if family == "gpt2" else W.T  # [H * d_head, D] as z @ W_O
            per_head = z[:, :, None] * W_O.view(HEADS, -1, W_O.shape[-1])  # [H, d_head, D]
            gain = _post_gain(tiny, layer, parts["o_proj"][layer][-1])
            want = (per_head.sum(1) * gain) @ d  # [H]
            scale = want.abs().max().item()
            got = torch.as_tensor(heads.direct[layer]).double()
            assert (got - want).abs().max().item() <= REL * scale, (layer, got, want)


@pytest.mark.parametrize("family", FAMILIES)
def test_direct_effects_decompose_the_answer_logit(family: str) -> None:
    """embed + every attn_out + every mlp_out, each read through the frozen final norm,
    plus the norm's and unembedding's biases, is the model's own (pre-cap) answer logit;
    the scale of another boundary misses it."""
    tiny = _biased_tiny(family)
    answer = tiny.trace.heads.answer
    parts = _forward_parts(tiny)
    real = parts["pre_cap"][0][-1, answer].item()
    parts_sum = parts["embed"][-1] + sum(a[-1] for a in parts["attn"] + parts["mlp"])
    for x, matches in ((parts["final_in"][-1], True), (parts["embed"][-1], False)):
        d, const = _readout(tiny, x, answer)
        total = (parts["embed"][-1] @ d).item() + const
        total += sum((a[-1] @ d).item() for a in parts["attn"] + parts["mlp"])
        if matches:
            assert torch.allclose(parts_sum, x, rtol=1e-5, atol=1e-5 * x.abs().max().item())
            print(f"{family}: relative error {_rel(total, real):.1e}")
            assert _rel(total, real) <= REL, (total, real)
        else:
            assert _rel(total, real) > 1e-2
    # the same sum from the trace's own numbers: heads and biases in place of attn_out
    d, const = _readout(tiny, parts["final_in"][-1], answer)
    rest = (parts["embed"][-1] @ d).item() + const + sum((a[-1] @ d).item() for a in parts["mlp"])
    heads = tiny.trace.heads
    total = rest + float(heads.direct.astype(np.float64).sum() + heads.bias.sum())
    assert _rel(total, real) <= REL, (total, real)


def test_frozen_norm_refuses_a_norm_it_does_not_know() -> None:
    class Doubling(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(HIDDEN))
            self.eps = 1e-6

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x * self.weight

    class NoEps(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    adapter = Adapter(build_tiny_model("llama"))
    x = torch.randn(HIDDEN)
    with pytest.raises(MechvizError, match="does not compute what mechviz expects"):
        adapter.frozen_norm(Doubling(), x)
    with pytest.raises(MechvizError, match="neither a LayerNorm nor an RMSNorm"):
        adapter.frozen_norm(NoEps(), x)
    frozen = adapter.frozen_norm(adapter.final_norm, x)
    assert torch.allclose(frozen(x), adapter.final_norm(x), atol=1e-6)
    v = torch.randn(HIDDEN)
    w = torch.randn(HIDDEN)
    assert torch.allclose(frozen.linear(v) @ w, v @ frozen.readout(w), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_head_effects_are_near_float32(dtype: torch.dtype) -> None:
    """The frozen norm's self-check allows the model's own rounding; the effects stay close."""
    from mechviz.tracing.record import head_effects

    exact = make_tiny("llama", top_k=3, full=False).trace.heads
    model = build_tiny_model("llama").to(dtype)
    loaded = wrap_model(model, CharTokenizer(VOCAB), "tiny-llama-half")
    assert trace_prompt(loaded, TINY_PROMPT, TraceOptions(top_k=3)).heads is not None
    ids = tokenize(loaded, TINY_PROMPT, 64)
    half = head_effects(loaded.adapter, record(loaded, ids), answer=exact.answer)
    scale = np.abs(exact.direct).max()
    assert np.abs(half.direct - exact.direct).max() <= 0.1 * scale  # 8-bit weights, 3 layers


# --- tokens and provenance ----------------------------------------------------------


def test_tokens_vocab_and_model_info(tiny) -> None:  # noqa: ANN001
    trace = tiny.trace
    assert trace.tokens.ids.tolist() == tiny.ids.tolist()
    assert trace.tokens.text == ["<bos>", *TINY_PROMPT]
    assert trace.tokens.offsets.tolist() == [[0, 0]] + [[i, i + 1] for i in range(len(TINY_PROMPT))]
    assert trace.prompt == TINY_PROMPT
    mentioned = {*trace.tokens.ids.ravel(), *trace.lens.top_ids.ravel()}
    mentioned |= set(trace.output.top_ids.ravel())
    assert {int(i) for i in mentioned} <= set(trace.vocab)
    m = trace.model
    assert (m.id, m.source, m.architecture) == (f"tiny-{tiny.family}", "memory", tiny.family)
    sizes = (m.n_layers, m.n_heads, m.d_model, m.d_mlp, m.d_vocab)
    assert sizes == (LAYERS, HEADS, HIDDEN, INTERMEDIATE, VOCAB)
    assert (m.dtype, m.attn_implementation) == ("float32", "eager")
    assert len(m.unembedding_hash) == 64


# --- input checks ---------------------------------------------------------------------


def test_tokenize_and_top_k_limits() -> None:
    model = build_tiny_model("llama")
    loaded = wrap_model(model, CharTokenizer(VOCAB), "tiny-llama")
    with pytest.raises(MechvizError, match="empty"):
        tokenize(loaded, "  \n", 10)
    with pytest.raises(MechvizError, match="--max-tokens 3"):
        tokenize(loaded, "abcd", 3)  # 5 tokens with BOS
    assert len(tokenize(loaded, "abcd", 5)) == 5
    for bad in (0, -1, VOCAB + 1):
        with pytest.raises(MechvizError, match="--top-k"):
            trace_prompt(loaded, "abc", TraceOptions(top_k=bad))
    trace = trace_prompt(loaded, "abc", TraceOptions(top_k=VOCAB))
    assert trace.lens.top_ids.shape == (LAYERS + 1, 4, VOCAB)
    assert abs(trace.output.top_probs.sum(-1) - 1).max() < 1e-4


def test_model_without_attention_weights_is_refused() -> None:
    """A non-eager model returns no attention weights: one clear error, not a crash.

    (transformers 5 returns an empty tuple of attentions for sdpa.)
    """
    model = build_tiny_model("llama")
    model.set_attn_implementation("sdpa")
    loaded = wrap_model(model, CharTokenizer(VOCAB), "tiny-llama-sdpa")
    ids = tokenize(loaded, "abc", 10)
    with pytest.raises(MechvizError, match="eager"):
        record(loaded, ids)


# --- unknown architectures ----------------------------------------------------------------


class _UnknownModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(model_type="mamba", _attn_implementation="eager")


def test_unknown_family_is_refused_with_the_supported_list() -> None:
    for make in (
        lambda: Adapter(_UnknownModel()),
        lambda: wrap_model(_UnknownModel(), CharTokenizer(), "tiny-mamba"),
    ):
        with pytest.raises(MechvizError) as info:
            make()
        message = str(info.value)
        assert "'mamba'" in message
        assert "supported families are" in message
        for family in ADAPTER_FAMILIES:
            assert family in message
        assert message.endswith(".") and "\n" not in message


def test_every_tested_family_is_supported() -> None:
    assert set(FAMILIES) <= set(ADAPTER_FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_adapter_finds_the_models_own_modules(family: str) -> None:
    """The adapter's paths name the modules transformers itself uses."""
    model = build_tiny_model(family)
    adapter = Adapter(model)
    assert adapter.architecture == family
    assert adapter.n_layers == LAYERS
    assert adapter.layers == _layers(family, model)
    assert adapter.embed is model.get_input_embeddings()
    assert adapter.unembed is model.get_output_embeddings()
    assert adapter.final_norm is _final_norm(family, model)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_trace(dtype: torch.dtype) -> None:
    """--dtype bfloat16/float16: the lens reads in the model's dtype; the trace stores float32."""
    from mechviz.model.load import wrap_model
    from mechviz.tracing.record import TraceOptions, trace_prompt

    model = build_tiny_model("llama").to(dtype)
    loaded = wrap_model(model, CharTokenizer(VOCAB), "tiny-llama-half")
    trace = trace_prompt(loaded, "Hello there", TraceOptions(top_k=5))
    assert trace.model.dtype == str(dtype).removeprefix("torch.")
    np.testing.assert_allclose(trace.lens.top_probs[-1], trace.output.top_probs, atol=2e-2)
    assert trace.resid.pooled.dtype == np.float32
