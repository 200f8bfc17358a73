"""Interventions (mechviz.interventions.run): ablation, freezing and patching on tiny models.

Ablating nothing changes nothing, bitwise; freezing every head to its own
pattern changes nothing; ablating every head leaves the embedding and MLP
paths (checked against a forward pass written out by hand); patching the
only token that differs restores the clean run exactly.
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILIES, Tiny, make_tiny

from mechviz.errors import MechvizError
from mechviz.interventions.run import (
    Plan,
    intervening,
    parse_heads,
    parse_layers,
    patch,
    patterns_of,
)
from mechviz.tracing.record import record


def _corrupt(ids: torch.Tensor, position: int = 2) -> torch.Tensor:
    out = ids.clone()
    out[position] = (out[position] + 3) % 40
    return out


def test_an_empty_plan_changes_nothing_bitwise(tiny: Tiny) -> None:
    with intervening(tiny.loaded, Plan()):
        rec = record(tiny.loaded, tiny.ids)
    assert torch.equal(rec.logits, tiny.rec.logits)
    for a, b in zip(rec.attentions, tiny.rec.attentions):
        assert torch.equal(a, b)
    assert tiny.loaded.model.config._attn_implementation == "eager"  # restored


def test_freezing_every_head_to_its_own_pattern_changes_nothing(tiny: Tiny) -> None:
    L, H = tiny.trace.n_layers, tiny.trace.model.n_heads
    heads = [(layer, h) for layer in range(L) for h in range(H)]
    plan = Plan(freeze_patterns=patterns_of(tiny.loaded, tiny.ids, heads))
    with intervening(tiny.loaded, plan):
        rec = record(tiny.loaded, tiny.ids)
    torch.testing.assert_close(rec.logits, tiny.rec.logits, rtol=0, atol=1e-5)


def test_a_frozen_pattern_is_the_other_prompts(tiny: Tiny) -> None:
    other = _corrupt(tiny.ids)
    pattern = patterns_of(tiny.loaded, other, [(1, 0)])
    with intervening(tiny.loaded, Plan(freeze_patterns=pattern)):
        rec = record(tiny.loaded, tiny.ids)
    assert torch.equal(rec.attentions[1][0], pattern[(1, 0)].float())
    assert not torch.equal(rec.logits, tiny.rec.logits)


def test_ablated_heads_write_nothing_and_mean_writes_the_mean(tiny: Tiny) -> None:
    P, H = len(tiny.ids), tiny.trace.model.n_heads
    with intervening(tiny.loaded, Plan(ablate=((0, 1), (1, 0)))):
        rec = record(tiny.loaded, tiny.ids)
    assert rec.attn_z[0].view(P, H, -1)[:, 1].abs().max() == 0
    assert rec.attn_z[1].view(P, H, -1)[:, 0].abs().max() == 0
    assert rec.attn_z[0].view(P, H, -1)[:, 0].abs().max() > 0  # the others untouched
    with intervening(tiny.loaded, Plan(ablate=((0, 1),), mode="mean")):
        rec = record(tiny.loaded, tiny.ids)
    want = tiny.rec.attn_z[0].view(P, H, -1)[:, 1].mean(0)
    got = rec.attn_z[0].view(P, H, -1)[:, 1]
    torch.testing.assert_close(got, want.expand_as(got), rtol=1e-5, atol=1e-6)


def test_an_ablated_mlp_adds_nothing(tiny: Tiny) -> None:
    with intervening(tiny.loaded, Plan(ablate_mlp=(1,))):
        rec = record(tiny.loaded, tiny.ids)
    assert rec.mlp_out[1].abs().max() == 0
    assert rec.mlp_out[0].abs().max() > 0 and not torch.equal(rec.logits, tiny.rec.logits)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_every_head_ablated_leaves_embedding_and_mlp_paths(family: str) -> None:
    """The forward pass written out by hand, with every head's output zero."""
    tiny = make_tiny(family)
    model, L, H = tiny.loaded.model, tiny.trace.n_layers, tiny.trace.model.n_heads
    heads = tuple((layer, h) for layer in range(L) for h in range(H))
    with intervening(tiny.loaded, Plan(ablate=heads)):
        rec = record(tiny.loaded, tiny.ids)
    ids = tiny.ids[None]
    with torch.no_grad():
        if family == "llama":
            x = model.model.embed_tokens(ids)
            for block in model.model.layers:  # o_proj has no bias: attention adds 0
                x = x + block.mlp(block.post_attention_layernorm(x))
            logits = model.lm_head(model.model.norm(x))
        else:
            t = model.transformer
            x = t.wte(ids) + t.wpe(torch.arange(ids.shape[1])[None])
            for block in t.h:  # attention adds c_proj's bias alone
                x = x + block.attn.c_proj.bias
                x = x + block.mlp(block.ln_2(x))
            logits = model.lm_head(t.ln_f(x))
    torch.testing.assert_close(rec.logits, logits[0], rtol=1e-5, atol=1e-5)


def test_patching_restores_the_clean_run(tiny: Tiny) -> None:
    corrupt = _corrupt(tiny.ids)
    result = patch(tiny.loaded, tiny.ids, corrupt)
    L, P, H = tiny.trace.n_layers, len(tiny.ids), tiny.trace.model.n_heads
    assert result.resid.shape == (L + 1, P) and result.heads.shape == (L, H)
    assert result.mlp.shape == (L,) and result.passes == L + 1
    # Not run, their value exactly 0: positions 0 and 1 at every boundary (before the
    # change), and the embedding of every unchanged token after it.
    assert result.runs == (L + 1) * P + L * H + L - 2 * (L + 1) - (P - 3)
    assert (result.resid[:, :2] == 0).all() and (result.resid[0, 3:] == 0).all()
    assert result.resid[0, 2] == pytest.approx(1.0, abs=1e-4)  # the only token that differs
    assert result.resid[-1, -1] == pytest.approx(1.0, abs=1e-4)  # the final residual itself
    assert result.resid[:, :2].abs().max() < 1e-4  # before the change, clean == corrupt
    assert torch.isfinite(result.heads).all() and torch.isfinite(result.mlp).all()


def test_patching_refuses_prompts_of_other_lengths() -> None:
    tiny = make_tiny("llama")
    with pytest.raises(MechvizError, match="is 26 tokens long and the corrupt prompt 25 tokens"):
        patch(tiny.loaded, tiny.ids, tiny.ids[:-1])
    with pytest.raises(MechvizError, match="nothing to restore"):
        patch(tiny.loaded, tiny.ids, tiny.ids.clone())


def test_head_specs() -> None:
    assert parse_heads(["5.2", "1.*", " 5 . 2 "], 8, 3) == ((1, 0), (1, 1), (1, 2), (5, 2))
    for spec, words in [
        ("5", "is not a head: write LAYER.HEAD"),
        ("a.b", "is not a head"),
        ("9.1", "layer 9 is out of range; this model has layers 0 to 7"),
        ("2.3", "head 3 is out of range; this model has heads 0 to 2"),
    ]:
        with pytest.raises(MechvizError, match=words):
            parse_heads([spec], 8, 3)
    assert parse_layers(["3", 1, "3"], 8) == (1, 3)
    with pytest.raises(MechvizError, match="--ablate-mlp 8 is out of range"):
        parse_layers(["8"], 8)


@pytest.mark.parametrize("family", FAMILIES[:1])
def test_the_attention_implementation_is_restored_after_an_error(family: str) -> None:
    tiny = make_tiny(family)
    with pytest.raises(RuntimeError), intervening(tiny.loaded, Plan()):
        raise RuntimeError("boom")
    assert tiny.loaded.model.config._attn_implementation == "eager"


def _reference_logits(
    tiny: Tiny, corrupt: torch.Tensor, kind: str, layer: int, index: int
) -> torch.Tensor:
    """One patched run the plain way: a full forward pass of the corrupt prompt with one hook."""
    loaded, clean = tiny.loaded, tiny.rec
    H = tiny.trace.model.n_heads
    adapter = loaded.adapter
    if kind == "resid" and layer == 0:

        def pre(m, args, kwargs):  # type: ignore[no-untyped-def]
            x = args[0].clone()
            x[0, index] = clean.resid_pre[0][index]
            return (x, *args[1:]), kwargs

        handle = adapter.layers[0].register_forward_pre_hook(pre, with_kwargs=True)
    elif kind == "resid":

        def post(m, a, o):  # type: ignore[no-untyped-def]
            x = o.clone()
            x[0, index] = clean.resid_post[layer - 1][index]
            return x

        handle = adapter.layers[layer - 1].register_forward_hook(post)
    elif kind == "mlp":
        handle = adapter.mlp_out_module(layer).register_forward_hook(
            lambda m, a, o: clean.mlp_out[layer][None].to(o)
        )
    else:
        d = clean.attn_z[layer].shape[-1] // H

        def z_pre(m, args, kwargs):  # type: ignore[no-untyped-def]
            z = (args[0] if args else next(iter(kwargs.values()))).clone()
            z[0, :, index * d : (index + 1) * d] = clean.attn_z[layer][
                :, index * d : (index + 1) * d
            ]
            return ((z, *args[1:]), kwargs) if args else ((), {next(iter(kwargs)): z})

        handle = adapter.attn_proj_module(layer).register_forward_pre_hook(z_pre, with_kwargs=True)
    try:
        with torch.no_grad():
            return loaded.model(corrupt[None], use_cache=False).logits[0, -1].double()
    finally:
        handle.remove()


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2"])
def test_batched_patching_equals_one_plain_run_per_site(family: str) -> None:
    """Skipping the layers before a site (their recorded outputs) changes no number."""
    tiny = make_tiny(family)
    corrupt = _corrupt(tiny.ids)
    result = patch(tiny.loaded, tiny.ids, corrupt)
    a, w = result.answer, result.wrong
    L, P = tiny.trace.n_layers, len(tiny.ids)
    for kind, layer, index, got in [
        ("resid", 0, 2, result.resid[0, 2]),
        ("resid", 1, 5, result.resid[1, 5]),
        ("resid", L - 1, P - 1, result.resid[L - 1, P - 1]),
        ("head", 1, 1, result.heads[1, 1]),
        ("head", L - 1, 0, result.heads[L - 1, 0]),
        ("mlp", 0, 0, result.mlp[0]),
        ("mlp", L - 1, 0, result.mlp[L - 1]),
    ]:
        logits = _reference_logits(tiny, corrupt, kind, layer, index)
        d = float(logits[a] - logits[w])
        want = (d - result.corrupt_diff) / (result.clean_diff - result.corrupt_diff)
        assert float(got) == pytest.approx(want, abs=1e-4), (kind, layer, index)
