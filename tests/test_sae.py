"""Sparse autoencoders on tiny random models and synthetic corpora: no download, a few seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import HIDDEN, LAYERS, make_tiny

from mechviz.errors import MechvizError
from mechviz.learned import sae as S
from mechviz.learned.corpus import Corpus


def fake_corpus(split: str, tokens: int = 6000, seed: int = 0) -> Corpus:
    rng = np.random.default_rng(seed)
    ids = rng.integers(4, 99, size=tokens).astype(np.int32)  # the printable characters
    ids.flags.writeable = False
    starts = np.arange(0, tokens, 700, dtype=np.int64)
    return Corpus(split, ids, starts, tokens, (), "char", f"{split}-{seed}".ljust(64, "0"))


def identity_sae(d: int = HIDDEN, scale: float = 0.37, layer: int = 1) -> S.SparseAutoencoder:
    """The dictionary [I, -I] with k = 2d: every vector is its positive and negative parts."""
    sae = S.SparseAutoencoder(d, 2 * d, k=2 * d, scale=scale)
    with torch.no_grad():
        eye = torch.eye(d)
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    sae.layer, sae.median_norm = layer, 1.0
    return sae


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: two threads only wait on each other (20x slower on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def llama():
    return make_tiny("llama", full=False).loaded


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHVIZ_CACHE", str(tmp_path))
    return tmp_path


def test_identity_dictionary_reconstructs_perfectly():
    sae = identity_sae()
    x = 5 * torch.randn(40, HIDDEN)
    torch.testing.assert_close(sae(x), x, atol=1e-5, rtol=1e-5)
    ids, acts, error, norm = S.encode_positions(sae, x)
    assert ids.shape == acts.shape == (40, 2 * HIDDEN) and ids.dtype == np.int32
    assert error.shape == norm.shape == (40,)
    assert float(error.max()) < 1e-4
    np.testing.assert_allclose(norm, x.norm(dim=-1).numpy(), rtol=1e-6)
    assert (np.diff(acts, axis=1) <= 0).all()  # largest first
    # activations in model units: the positive parts of x, then of -x
    np.testing.assert_allclose(acts[0, :3], np.sort(np.abs(x[0].numpy()))[::-1][:3], rtol=1e-5)


def test_encode_positions_and_decompose_add_up():
    torch.manual_seed(0)
    sae = S.SparseAutoencoder(HIDDEN, 96, k=6, scale=0.5)
    with torch.no_grad():
        sae.b_dec.normal_()
    x = torch.randn(7, HIDDEN)
    ids, acts, error, norm = S.encode_positions(sae, x)
    assert ids.shape == acts.shape == (7, 6)
    assert (np.diff(acts, axis=1) <= 0).all() and (acts >= 0).all()
    assert all(len(set(row)) == 6 for row in ids.tolist())
    parts = S.decompose(sae, x[3], top=2)
    whole = parts.vectors.sum(0) + parts.rest + parts.bias + parts.error
    np.testing.assert_allclose(whole, x[3].numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(parts.vectors, axis=1), parts.acts, rtol=1e-5)
    np.testing.assert_allclose(parts.acts, acts[3, : len(parts.acts)], rtol=1e-6)
    assert parts.error_share == pytest.approx(error[3] / norm[3], rel=1e-5)


def test_chosen_gradient_matches_the_dense_one():
    torch.manual_seed(0)
    sae = S.SparseAutoencoder(HIDDEN, 256, k=8)
    with torch.no_grad():
        sae.b_dec.normal_(0, 0.1)
        sae.b_enc.normal_(0, 0.1)
    xs = torch.randn(64, HIDDEN)
    sae.zero_grad()
    S._loss(sae, xs, None)[0].backward()
    fast = [p.grad.clone() for p in sae.parameters()]
    sae.zero_grad()
    pre = (xs - sae.b_dec) @ sae.W_enc + sae.b_enc
    vals, ids = pre.topk(sae.k, dim=-1)
    z = torch.zeros_like(pre).scatter(-1, ids, torch.relu(vals))
    ((z @ sae.W_dec + sae.b_dec - xs) ** 2).mean().backward()
    for a, p in zip(fast, sae.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-4)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    truth = torch.nn.functional.normalize(torch.randn(128, HIDDEN), dim=1)
    codes = torch.rand(3000, 128) * (torch.rand(3000, 128) < 0.03)
    x = codes @ truth * 4
    sae = S.SparseAutoencoder(HIDDEN, 128, k=8, scale=1.0)
    log = S.train_steps(sae, x, epochs=6, batch=500)
    assert log.steps == 36
    assert np.mean(log.fve[-4:]) > np.mean(log.fve[:2]) + 0.1
    rows = sae.W_dec.detach().norm(dim=1)
    torch.testing.assert_close(rows, torch.ones_like(rows))


def test_keep_mask_leaves_out_an_attention_sink():
    resid = torch.randn(3, 10, HIDDEN)
    resid[1, :3] *= 100  # a sink and the two tokens that repeat it
    keep = S.keep_mask(resid)
    assert keep.sum() == 27 and not keep[1, :3].any() and keep[0].all() and keep[1, 3:].all()


def test_layer_out_of_range_and_missing_sae_are_one_sentence(llama, cache):
    with pytest.raises(MechvizError, match=rf"choose a layer from 0 to {LAYERS - 1}\.$"):
        S.load_sae(llama, LAYERS)
    with pytest.raises(MechvizError, match="from 0 to"):
        S.train_sae(llama, fake_corpus("train"), layer=-1, eval_corpus=fake_corpus("eval"))
    with pytest.raises(MechvizError) as err:
        S.load_sae(llama)
    text = str(err.value)
    assert text.startswith(f"No sparse autoencoder is trained for layer {LAYERS // 2} of tiny-")
    assert f"`mechviz train-sae --layer {LAYERS // 2}`" in text and text.count(". ") == 0


def test_dark_matter_of_a_perfect_sae_is_zero(llama):
    held = S._held_out(llama, fake_corpus("eval", seed=1), 1, 512)
    assert held.acts.x.shape == (512, HIDDEN) and held.clean_nats > 0
    ev = S.evaluate_sae(llama, identity_sae(layer=1), held)
    assert abs(ev.ce_delta) < 1e-4 and ev.ce_ratio == pytest.approx(1.0, abs=1e-5)
    assert ev.fve == pytest.approx(1.0, abs=1e-4) and ev.ce_recovered == pytest.approx(1.0)
    assert abs(ev.ce_zero - ev.ce_clean) > 0.1  # random model: zero may even help
    assert ev.ce_tokens == 16 * 127  # 16 windows of 128; no sink here, so positions 0..126


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_promoted_tokens_are_what_the_lens_reads(family):
    loaded = make_tiny(family, full=False).loaded
    torch.manual_seed(0)
    sae = S.SparseAutoencoder(HIDDEN, 16, k=4, scale=2.0)
    with torch.no_grad():
        sae.b_dec.normal_()
    ids, _ = S._promoted(loaded, sae)
    with torch.no_grad():
        lens = loaded.adapter.logit_lens(sae.W_dec * 3.0)  # RMSNorm: the scale drops out
    np.testing.assert_array_equal(ids, lens.topk(S.PROMOTED, dim=1).indices.numpy())


def test_train_save_load_round_trip(llama, cache):
    sae = S.train_sae(
        llama,
        fake_corpus("train"),
        eval_corpus=fake_corpus("eval", seed=1),
        tokens=2000,
        epochs=2,
        batch=250,
        progress=False,
    )
    F = 8 * HIDDEN
    assert sae.features == F and sae.k == S.K and sae.layer == LAYERS // 2
    meta = sae.meta
    assert meta["training"]["activations"] == 2000 and meta["training"]["steps"] == 16
    assert meta["model"]["unembedding_hash"] == llama.unembedding_hash
    assert meta["corpus"]["digest"] == fake_corpus("train").digest
    ev = meta["evaluation"]
    assert 0 < ev["l0"] <= S.K and 0 <= ev["dead_share"] <= 1 and ev["fve"] < 1
    assert ev["ce_clean"] > 0 and ev["ce_tokens"] > 0
    dash = sae.dashboards
    assert dash.contexts.shape == (F, S.CONTEXTS, S.BEFORE + 1 + S.AFTER)
    assert dash.promoted.shape == (F, S.PROMOTED) and len(dash.descriptions) == F
    fired = dash.acts[:, 0] > 0
    assert fired.any() and (np.diff(dash.acts, axis=1) <= 0).all()
    f = int(np.argmax(fired))
    assert dash.contexts[f, 0, dash.marked[f, 0]] >= 4 and "⟦" in dash.describe(f)
    card = S.feature_card(sae, f, llama.tokenizer)
    assert card["contexts"][0]["act"] == pytest.approx(float(dash.acts[f, 0]))
    assert len(card["contexts"][0]["token"]) == 1 and len(card["promoted"]) == S.PROMOTED
    folder = S.sae_dir(llama, sae.layer)
    assert {p.name for p in folder.iterdir()} == {S.WEIGHTS, S.META, S.FEATURES}

    again = S.load_sae(llama)
    assert again.sha256() == sae.sha256() == again.meta["sha256"]
    assert again.median_norm == pytest.approx(sae.median_norm)
    x = torch.randn(5, HIDDEN)
    for a, b in zip(S.encode_positions(sae, x), S.encode_positions(again, x)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.dashboards.contexts, dash.contexts)
    assert list(again.dashboards.descriptions) == list(dash.descriptions)

    with torch.no_grad():
        again.W_dec[0, 0] += 1
    (folder / S.WEIGHTS).unlink()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in again.state_dict().items()}, str(folder / S.WEIGHTS))
    with pytest.raises(MechvizError, match="damaged"):
        S.load_sae(llama)
