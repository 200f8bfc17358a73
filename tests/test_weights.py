"""Weight statistics (mechviz.analyses.weights): ratios, the parameter tally, layer 0's heads."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from conftest import (
    FAMILIES,
    HEAD_DIM,
    HEADS,
    HIDDEN,
    INTERMEDIATE,
    LAYERS,
    VOCAB,
    CharTokenizer,
    build_tiny_model,
)

from mechviz.analyses.weights import (
    ATTENTION,
    GAUSSIAN_RATIO,
    MLP,
    NORMS,
    POSITION,
    TIED_EMBEDDING,
    UNEMBEDDING,
    _Heads,
    head_tokens,
    layer0_inputs,
    ratio,
    tally,
    weight_stats,
)
from mechviz.model.load import LoadedModel, wrap_model


def _loaded(family: str) -> LoadedModel:
    return wrap_model(build_tiny_model(family), CharTokenizer(VOCAB), f"tiny-{family}")


def _balanced_signs(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """+-1 entries whose every row and every column has as many + as - (mean exactly 0)."""
    g = torch.Generator().manual_seed(seed)
    s = torch.tensor([1.0, -1.0]).repeat(rows // 2)[torch.randperm(rows, generator=g)]
    t = torch.tensor([1.0, -1.0]).repeat(cols // 2)[torch.randperm(cols, generator=g)]
    return s[:, None] * t[None, :]


# --- sigma / mean(|w|) ------------------------------------------------------------


def test_ratio_of_a_large_gaussian_is_sqrt_pi_over_2() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2048, 2048, generator=g)
    assert GAUSSIAN_RATIO == pytest.approx(1.2533, abs=1e-4)
    assert ratio(w, dim=0) == pytest.approx(GAUSSIAN_RATIO, abs=2e-3)
    assert ratio(w, dim=1) == pytest.approx(GAUSSIAN_RATIO, abs=2e-3)


def test_ratio_is_around_each_vectors_own_mean() -> None:
    w = _balanced_signs(64, 64) * 0.5 + 3.0  # shifted: sigma about the mean is still 0.5
    assert ratio(w, dim=0) == pytest.approx(0.5 / 3.0, rel=1e-12)
    uniform = torch.linspace(-1, 1, 10001)[:, None]  # sigma = 1/sqrt(3), mean|w| = 1/2
    assert ratio(uniform, dim=0) == pytest.approx(2 / math.sqrt(3), rel=1e-3)


@pytest.mark.parametrize("family", ["llama", "gpt2", "phi3"])
def test_gaussian_and_sign_matrices_in_a_model(family: str) -> None:
    loaded = _loaded(family)
    heads = _Heads(loaded)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        W_Q = heads.qkv(1)[0]  # a view of the stored weight: writing it sets the model's W_Q
        W_Q.copy_(torch.randn(W_Q.shape, generator=g))
        W_O = loaded.adapter.W_O(2)
        W_O.copy_(_balanced_signs(*W_O.shape))
    w = weight_stats(loaded)
    # 64 values per vector, averaged over 64 vectors: within a few hundredths.
    assert w.ratio_model[1, 0] == pytest.approx(GAUSSIAN_RATIO, abs=0.03)
    assert w.ratio_heads[1, 0] == pytest.approx(GAUSSIAN_RATIO, abs=0.03)
    assert w.ratio_model[2, 3] == pytest.approx(1.0, abs=1e-12)
    assert w.ratio_heads[2, 3] == pytest.approx(1.0, abs=1e-12)
    assert w.ratio_model[2, 0] != pytest.approx(1.0, abs=0.05)  # the others untouched
    assert w.ratio_names == ["W_Q", "W_K", "W_V", "W_O"]


def _raw_slice(loaded: LoadedModel, m: int, h: int) -> torch.Tensor:
    """Head (or KV group) ``h``'s part of projection ``m`` (0 Q, 1 K, 2 V) in the stored weight.

    Written from each model's own forward (transformers' modeling files), as
    ``[d_model, d_head]``, a view into the parameter.
    """
    attn = loaded.adapter.layers[0].get_submodule(_Heads(loaded).attn_path)
    D, dh, H = HIDDEN, HEAD_DIM, HEADS
    family = loaded.adapter.architecture
    if family == "gpt2":  # Conv1D [D, 3D]: x @ W, then split(D, dim=2) into Q, K, V
        return attn.c_attn.weight[:, m * D + h * dh : m * D + (h + 1) * dh]
    if family == "gpt_neox":  # Linear rows viewed as [H, 3 * dh], then chunk(3)
        return attn.query_key_value.weight.view(H, 3, dh, D)[h, m].T
    if family == "phi3":  # Linear rows: Q (H * dh), K (n_kv * dh), V (n_kv * dh)
        n_kv = loaded.model.config.num_key_value_heads
        start = [0, H * dh, H * dh + n_kv * dh][m] + h * dh
        return attn.qkv_proj.weight[start : start + dh].T
    return getattr(attn, "qkv"[m] + "_proj").weight[h * dh : (h + 1) * dh].T


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "phi3"])
def test_orientation_finds_a_pattern_in_one_heads_slice(family: str) -> None:
    """A known [d_model, d_head] pattern put in head 1 of Q, K, V is found there, and only there."""
    loaded = _loaded(family)
    g = torch.Generator().manual_seed(2)
    patterns = [torch.randn(HIDDEN, HEAD_DIM, generator=g) + 100 * (m + 1) for m in range(3)]
    with torch.no_grad():
        for m in range(3):
            _raw_slice(loaded, m, 1).copy_(patterns[m])
    for m, w in enumerate(_Heads(loaded).qkv(0)):
        assert w.shape[0] == HIDDEN
        slices = w.detach().reshape(HIDDEN, -1, HEAD_DIM).permute(1, 0, 2)  # [n, D, dh]
        hits = [i for i, s in enumerate(slices) if torch.equal(s, patterns[m])]
        assert hits == [1], (family, m, hits)


# --- the parameter tally -----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_tally_adds_up_to_the_parameter_count(family: str) -> None:
    loaded = _loaded(family)
    model = loaded.model
    names, counts, total = tally(loaded)
    assert total == sum(p.numel() for p in model.parameters())
    assert int(counts.sum()) == total
    assert len(set(names)) == len(names) and (counts > 0).all()
    assert "other" not in names  # every parameter of these families has a home
    # Nothing counted twice: the distinct tensors are what named_parameters lists.
    distinct = {p.data_ptr(): p.numel() for p in model.parameters()}
    assert sum(distinct.values()) == total
    tied = loaded.adapter.tied_embeddings
    assert (TIED_EMBEDDING in names) == tied and (UNEMBEDDING in names) == (not tied)


def test_tally_known_answers_llama_and_gpt2() -> None:
    D, F, L, V = HIDDEN, INTERMEDIATE, LAYERS, VOCAB
    kv = 2 * HEAD_DIM  # the tiny llama has 2 KV heads
    names, counts, total = tally(_loaded("llama"))
    got = dict(zip(names, counts.tolist(), strict=True))
    assert got == {
        TIED_EMBEDDING: V * D,
        ATTENTION: L * (2 * D * D + 2 * D * kv),
        MLP: L * 3 * D * F,
        NORMS: (2 * L + 1) * D,
    }
    names, counts, total = tally(_loaded("gpt2"))
    got = dict(zip(names, counts.tolist(), strict=True))
    assert got == {
        TIED_EMBEDDING: V * D,
        POSITION: 128 * D,
        ATTENTION: L * (4 * D * D + 4 * D),
        MLP: L * (2 * D * F + F + D),
        NORMS: (2 * L + 1) * 2 * D,
    }


# --- layer-0 head tokens -----------------------------------------------------------


def _own_queries(loaded: LoadedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The queries and keys layer 0 really computes for each token alone at position 0.

    Attention biases of layer 0 are zeroed, per-head query/key norms replaced by
    the identity and a learned position embedding zeroed, so what the model
    hands its attention function is ``n(e_t) @ W_Q[h]`` (and ``W_K``); rotary
    position encoding is the identity at position 0. ``[V, H, d_head]``,
    ``[V, n_kv, d_head]``.
    """
    model, adapter = loaded.model, loaded.adapter
    attn = adapter.layers[0].get_submodule(_Heads(loaded).attn_path)
    with torch.no_grad():
        for name, p in attn.named_parameters():
            if name.endswith("bias"):
                p.zero_()
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding) and m is not adapter.embed:
                m.weight.zero_()
    for norm in ("q_norm", "k_norm"):
        if hasattr(attn, norm):
            setattr(attn, norm, torch.nn.Identity())
    module = sys.modules[type(attn).__module__]
    original = module.eager_attention_forward
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(mod, query, key, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if mod is attn:
            seen.append((query.detach().clone(), key.detach().clone()))
        return original(mod, query, key, *args, **kwargs)

    module.eager_attention_forward = spy
    try:
        with torch.no_grad():
            model(torch.arange(VOCAB)[:, None])
    finally:
        module.eager_attention_forward = original
    ((query, key),) = seen
    return query[:, :, 0], key[:, :, 0]


@pytest.mark.parametrize("family", FAMILIES)
def test_head_tokens_are_the_models_own_largest_queries(family: str) -> None:
    loaded = _loaded(family)
    query, key = _own_queries(loaded)  # [V, H, dh], [V, n_kv, dh]
    q_ids, q_score, k_ids, k_score = head_tokens(loaded, top=5)
    H, n_kv = query.shape[1], key.shape[1]
    assert q_ids.shape == (H, 5) == k_ids.shape
    q_norms = query.norm(dim=-1).T.double()  # [H, V]
    k_norms = key.norm(dim=-1).T.double()[torch.arange(H) // (H // n_kv)]
    for norms, ids, score in ((q_norms, q_ids, q_score), (k_norms, k_ids, k_score)):
        best = norms.topk(5, dim=1)
        np.testing.assert_array_equal(ids, best.indices.numpy())
        np.testing.assert_allclose(score, best.values.numpy(), rtol=1e-5)
        assert (np.diff(score, axis=1) <= 0).all()  # largest first


def test_layer0_inputs_are_what_layer_0s_attention_reads() -> None:
    """Gemma's scaled embedding, normed: the input of the attention module at position 0."""
    loaded = _loaded("gemma")
    seen = []
    attn = loaded.adapter.layers[0].self_attn
    handle = attn.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["hidden_states"]), with_kwargs=True
    )
    with torch.no_grad():
        loaded.model(torch.tensor([[7]]))
        mine = layer0_inputs(loaded, torch.tensor([7]))
    handle.remove()
    torch.testing.assert_close(mine, seen[0][0].float())
    assert loaded.adapter.embed(torch.tensor([7])).norm() > 2 * loaded.adapter.W_E[7].norm()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_hand_set_token_tops_a_heads_queries_and_keys(family: str) -> None:
    """Token 50's embedding along one axis, head 3's W_Q and its KV group's W_K read it."""
    loaded = _loaded(family)
    heads = _Heads(loaded)
    W_Q, W_K, _ = heads.qkv(0)
    axis, h, kv = 5, 3, 3 // (heads.n_heads // heads.n_kv)
    with torch.no_grad():
        loaded.adapter.W_E[50] = 0.0
        loaded.adapter.W_E[50, axis] = 1.0
        W_Q[:, h * HEAD_DIM : (h + 1) * HEAD_DIM] = 0.0
        W_Q[axis, h * HEAD_DIM] = 10.0
        W_K[:, kv * HEAD_DIM : (kv + 1) * HEAD_DIM] = 0.0
        W_K[axis, kv * HEAD_DIM + 1] = -4.0
    q_ids, q_score, k_ids, k_score = head_tokens(loaded, top=3)
    normed = layer0_inputs(loaded, torch.tensor([50]))[0, axis]
    assert q_ids[h, 0] == 50 and k_ids[h, 0] == 50
    assert q_score[h, 0] == pytest.approx(10.0 * abs(float(normed)), rel=1e-5)
    assert k_score[h, 0] == pytest.approx(4.0 * abs(float(normed)), rel=1e-5)
    assert (q_ids[np.arange(HEADS) != h, 0] != 50).any()  # only this head was set


# --- the real default model ---------------------------------------------------------


@pytest.mark.slow
def test_default_model_weights_section(default_model) -> None:  # noqa: ANN001
    from mechviz.tracing.io import load_trace
    from mechviz.tracing.record import with_sections
    from mechviz.visual.settings import example_trace

    w = weight_stats(default_model)
    assert w.total == sum(p.numel() for p in default_model.model.parameters()) == 134_515_008
    assert w.ratio_model.shape == (30, 4) and w.query_ids.shape == (9, 8)
    assert ((w.ratio_model > 1.2) & (w.ratio_model < 1.6)).all()
    trace = with_sections(load_trace(example_trace()), default_model, weights=w)
    assert trace.weights is w and all(int(i) in trace.vocab for i in w.key_ids.ravel())
