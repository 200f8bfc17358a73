"""Direct logit attribution (mechviz.analyses.attribution): the parts add up to the real logit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES, Tiny

from mechviz.analyses.attribution import Attribution, attribute, attribute_all, attribute_recording
from mechviz.errors import MechvizError
from mechviz.tracing.record import head_effects, record, tokenize

IDENTITY_RTOL = 1e-4  # parts + bias against the real logit, relative
HEADS_TOL = 1e-5  # heads + W_O bias against the layer's attention part


def _identity_error(a: Attribution) -> float:
    # Relative to the logit, or absolute below 1 logit: a small top-1 minus top-2
    # difference is made of float32 logits near 10, each good to ~1e-6.
    return abs(a.total - a.logit) / max(abs(a.logit), 1.0)


def _heads_error(a: Attribution) -> float:
    return float(np.abs(a.heads.sum(-1) + a.attn_bias - a.attn).max())


def _check(a: Attribution) -> None:
    assert _identity_error(a) <= IDENTITY_RTOL, (a.position, a.total, a.logit)
    assert _heads_error(a) <= HEADS_TOL * max(1.0, float(np.abs(a.attn).max()))


def _pre_cap(tiny: Tiny) -> torch.Tensor:
    """The model's logits before any soft cap, ``[P, V]``, from its own modules."""
    adapter = tiny.loaded.adapter
    with torch.no_grad():
        return adapter.unembed(adapter.final_norm(tiny.rec.resid_post[-1])).double()


def test_parts_add_up_at_every_position(tiny: Tiny) -> None:
    adapter, rec = tiny.loaded.adapter, tiny.rec
    P, L = len(tiny.ids), adapter.n_layers
    pre_cap = _pre_cap(tiny)
    for a in attribute_all(tiny.loaded, tiny.ids):
        _check(a)
        assert a.token == int(rec.logits[a.position].argmax())  # its own top-1
        assert a.logit == pytest.approx(float(pre_cap[a.position, a.token]), rel=1e-6)
        assert a.parts.shape == (1 + 2 * L,) and len(a.names) == 1 + 2 * L
        assert a.heads.shape == (L, rec.attentions[0].shape[0])
    assert a.position == P - 1
    assert a.names[:3] == ["embed", "0_attn", "0_mlp"] and a.names[-1] == f"{L - 1}_mlp"


def test_output_is_the_model_logit_after_the_cap(tiny: Tiny) -> None:
    a = attribute_recording(tiny.loaded.adapter, tiny.rec)
    assert a.output == pytest.approx(float(tiny.rec.logits[-1, a.token]), rel=1e-6)
    cap = tiny.loaded.adapter.final_logit_softcap
    if cap is None:
        assert a.output == pytest.approx(a.logit, rel=1e-5)
    else:  # Gemma 2: the identity is for the logit before the cap
        assert a.output == pytest.approx(cap * np.tanh(a.logit / cap), rel=1e-5)
        assert abs(a.output - a.logit) > 0.1


def test_versus_is_the_difference(tiny: Tiny) -> None:
    adapter, rec = tiny.loaded.adapter, tiny.rec
    pre_cap = _pre_cap(tiny)
    for position in (-1, 3, 0):
        ranked = rec.logits[position].argsort(descending=True)
        top, second = int(ranked[0]), int(ranked[1])
        a = attribute_recording(adapter, rec, position=position, versus=second)
        _check(a)
        pos = a.position
        assert (a.token, a.versus) == (top, second)
        expected = float(pre_cap[pos, top] - pre_cap[pos, second])
        assert a.logit == pytest.approx(expected, rel=1e-6, abs=1e-6)
        one = attribute_recording(adapter, rec, position=position, token=top)
        two = attribute_recording(adapter, rec, position=position, token=second)
        np.testing.assert_allclose(a.parts, one.parts - two.parts, atol=1e-9)
        np.testing.assert_allclose(a.heads, one.heads - two.heads, atol=1e-9)
        assert a.bias == pytest.approx(one.bias - two.bias, abs=1e-9)


def test_any_token_any_position(tiny: Tiny) -> None:
    for position, token in ((1, 50), (-4, 7), (len(tiny.ids) - 1, 299)):
        a = attribute_recording(tiny.loaded.adapter, tiny.rec, position=position, token=token)
        assert a.token == token
        _check(a)


def test_last_position_heads_are_the_traces(tiny: Tiny) -> None:
    a = attribute_recording(tiny.loaded.adapter, tiny.rec)
    heads = tiny.trace.heads
    assert (a.token, a.position) == (heads.answer, heads.position)
    np.testing.assert_allclose(a.heads, heads.direct, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.attn_bias, heads.bias, rtol=1e-4, atol=1e-5)


def test_attribute_runs_its_own_pass(tiny: Tiny) -> None:
    a = attribute(tiny.loaded, tiny.ids.tolist(), position=2, versus=40)
    b = attribute_recording(tiny.loaded.adapter, tiny.rec, position=2, versus=40)
    np.testing.assert_allclose(a.parts, b.parts, rtol=1e-6, atol=1e-6)
    assert (a.token, a.versus, a.position) == (b.token, b.versus, 2)


def test_bad_input_is_one_sentence() -> None:
    from conftest import make_tiny

    tiny = make_tiny("llama", full=False)
    P = len(tiny.ids)
    with pytest.raises(MechvizError, match=f"Position {P} is outside the prompt's {P} tokens"):
        attribute_recording(tiny.loaded.adapter, tiny.rec, position=P)
    with pytest.raises(MechvizError, match="outside the prompt"):
        attribute_recording(tiny.loaded.adapter, tiny.rec, position=-P - 1)
    with pytest.raises(MechvizError, match="versus token id 300 is outside the vocabulary"):
        attribute_recording(tiny.loaded.adapter, tiny.rec, versus=300)
    with pytest.raises(MechvizError, match="token id -1 is outside"):
        attribute_recording(tiny.loaded.adapter, tiny.rec, token=-1)
    with pytest.raises(MechvizError, match="no tokens"):
        attribute(tiny.loaded, [])


def test_every_family_is_covered() -> None:
    assert {"gemma2", "gpt2", "gpt_neox", "phi"} <= set(FAMILIES)


# --- the real default model ---------------------------------------------------------


@pytest.fixture(scope="module")
def paris(default_model):  # noqa: ANN001, ANN201
    ids = tokenize(default_model, "The capital of France is", 64)
    return ids, record(default_model, ids)


@pytest.mark.slow
def test_default_model_paris(default_model, paris) -> None:  # noqa: ANN001
    ids, rec = paris
    adapter = default_model.adapter
    a = attribute_recording(adapter, rec)
    assert default_model.tokenizer.decode([a.token]) == " Paris"
    assert _identity_error(a) <= IDENTITY_RTOL
    assert a.logit == pytest.approx(float(rec.logits[-1, a.token]), rel=1e-5)
    assert _heads_error(a) <= HEADS_TOL * max(1.0, float(np.abs(a.attn).max()))
    effects = head_effects(adapter, rec, answer=a.token)
    np.testing.assert_allclose(a.heads, effects.direct, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_default_model_versus_london_and_every_position(default_model, paris) -> None:  # noqa: ANN001
    ids, rec = paris
    tokenizer = default_model.tokenizer
    (london,) = tokenizer(" London")["input_ids"]
    a = attribute_recording(default_model.adapter, rec, versus=london)
    assert _identity_error(a) <= IDENTITY_RTOL
    expected = float(rec.logits[-1, a.token] - rec.logits[-1, london])
    assert a.logit == pytest.approx(expected, rel=1e-4)
    assert a.logit > 0  # Paris beats London
    for b in attribute_all(default_model, ids):
        _check(b)
