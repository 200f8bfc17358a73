"""The tuned lens on tiny random models: identity at initialisation, training, evaluation, cache."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import FAMILIES, VOCAB, CharTokenizer, build_tiny_model

from mechviz.errors import MechvizError
from mechviz.learned.corpus import Corpus, Source
from mechviz.learned.tuned_lens import (
    Readout,
    TunedLens,
    boundary_states,
    evaluate,
    lens_labels,
    load_tuned_lens,
    save_tuned_lens,
    train_tuned_lens,
    tuned_lens_statistics,
)
from mechviz.model.load import LoadedModel, wrap_model
from mechviz.tracing.record import lens_statistics

TEXT = (
    "The quick brown fox jumps over the lazy dog. A lens reads the residual stream. "
    "Every layer writes a little more of the answer into it, and the last one reads it out. "
)


def fake_corpus(split: str, n_docs: int = 12) -> Corpus:
    """Character ids of rotated copies of TEXT: no download, a few thousand tokens."""
    tok = CharTokenizer(add_bos=False)
    docs = [tok.encode(TEXT[i * 7 :] + TEXT[: i * 7]) for i in range(n_docs)]
    ids = np.concatenate(docs).astype(np.int32)
    starts = np.cumsum([0] + [len(d) for d in docs[:-1]]).astype(np.int64)
    digest = hashlib.sha256(split.encode() + ids.tobytes()).hexdigest()
    source = Source("fake-text", "1", "CC0-1.0", "file:///dev/null", "0" * 64, n_docs, len(TEXT))
    return Corpus(split, ids, starts, len(TEXT) * n_docs, (source,), "char", digest)


def tiny_loaded(family: str) -> LoadedModel:
    return wrap_model(build_tiny_model(family), CharTokenizer(VOCAB), f"tiny-{family}")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread skips OpenMP's waits, 20x faster on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MECHVIZ_CACHE", str(tmp_path))
    return tmp_path


def test_identity_at_initialisation(tiny):
    """Zero translators: the tuned lens is the logit lens, bit for bit, at every boundary."""
    loaded, adapter = tiny.loaded, tiny.loaded.adapter
    lens = TunedLens.for_model(loaded)
    states, logits = boundary_states(loaded, tiny.ids[None])
    L = adapter.n_layers
    assert states.shape == (L + 1, len(tiny.ids), adapter.W_U.shape[1])
    # The same states as the trace's recording: layer 0's input, then every block's output.
    torch.testing.assert_close(states[0], tiny.rec.resid_pre[0], rtol=0, atol=0)
    torch.testing.assert_close(states[1:], torch.stack(tiny.rec.resid_post), rtol=0, atol=0)
    with torch.no_grad():
        for b in range(L + 1):
            assert torch.equal(lens.logits(adapter, states[b], b), adapter.logit_lens(states[b]))
        torch.testing.assert_close(lens.logits(adapter, states[L], L), logits)
    # The trace's statistics of the tuned lens are then those of the logit lens.
    tuned = tuned_lens_statistics(adapter, lens, states, logits, 5)
    plain = lens_statistics(adapter, states, logits, 5)
    for key, value in plain.items():
        assert torch.equal(tuned[key], value), key


@pytest.mark.parametrize("family", FAMILIES)
def test_training_lowers_kl_and_evaluation(family, cache):
    loaded = tiny_loaded(family)
    train, held_out = fake_corpus("train"), fake_corpus("eval", n_docs=4)
    before = evaluate(
        loaded, TunedLens.for_model(loaded), held_out, tokens=256, seq_len=32, progress=False
    )
    lens, info = train_tuned_lens(loaded, train, tokens=1024, seq_len=32, batch=4, progress=False)
    assert info.tokens == 1024 and info.steps == 8
    after = evaluate(loaded, lens, held_out, tokens=256, seq_len=32, progress=False)
    L = loaded.adapter.n_layers
    assert after.labels == tuple(lens_labels(L))
    # At initialisation both lenses are the same numbers; training lowers the KL.
    assert before.tuned_kl == before.logit_kl and before.tuned_bpb == before.logit_bpb
    assert after.logit_kl == before.logit_kl
    assert all(t < g for t, g in zip(after.tuned_kl[:L], after.logit_kl[:L]))
    assert np.mean(after.tuned_kl[:L]) < 0.9 * np.mean(after.logit_kl[:L])
    # The last boundary is the model's output: KL 0, bits per byte the model's own.
    assert after.logit_kl[L] == after.tuned_kl[L] == pytest.approx(0.0, abs=1e-4)
    assert after.logit_bpb[L] == pytest.approx(after.model_bpb, rel=1e-4)
    assert after.tokens == 8 * 31 and after.bytes == 8 * 31  # one byte per character


def test_save_load_resume_and_refusals(cache):
    loaded = tiny_loaded("llama")
    train = fake_corpus("train", n_docs=2)  # 10 windows of 32: the second call starts epoch 1
    with pytest.raises(MechvizError, match=r"^No tuned lens is trained for tiny-llama; .*"):
        load_tuned_lens(loaded)
    lens, info = train_tuned_lens(loaded, train, tokens=256, seq_len=32, progress=False)
    evaluation = evaluate(
        loaded, lens, fake_corpus("eval", 4), tokens=64, seq_len=32, progress=False
    )
    folder = save_tuned_lens(loaded, lens, info, train, evaluation)
    back = load_tuned_lens(loaded)
    for key, value in lens.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    meta = json.loads((folder / "tuned_lens.json").read_text())
    assert meta["sha256"] == lens.sha256() == back.sha256()
    assert meta["model"]["unembedding_hash"] == loaded.unembedding_hash
    assert meta["corpus"]["sources"][0]["licence"] == "CC0-1.0"
    assert meta["training"]["tokens"] == 256 and meta["evaluation"]["labels"][0] == "embed"

    # A second call continues from the checkpoint: the same data order, more steps.
    again, more = train_tuned_lens(loaded, train, tokens=256, seq_len=32, progress=False)
    assert (more.tokens, more.steps, more.epoch, more.windows) == (512, 4, 1, 8)
    assert not torch.equal(again.translators[0].weight, lens.translators[0].weight)

    other = tiny_loaded("mistral")
    with pytest.raises(MechvizError, match=r"^No tuned lens is trained for tiny-mistral"):
        load_tuned_lens(other)
    with pytest.raises(MechvizError, match=r"trained for tiny-llama .*, not for tiny-mistral"):
        load_tuned_lens(other, folder)
    meta["sha256"] = "0" * 64
    (folder / "tuned_lens.json").write_text(json.dumps(meta))
    with pytest.raises(MechvizError, match=r"is damaged"):
        load_tuned_lens(loaded)


@pytest.mark.parametrize("family", ["llama", "phi"])  # phi's unembedding has a bias
def test_readout_matmuls_match_autograd(family):
    """The hand-written KL, cross-entropy and gradient equal autograd's through the adapter."""
    loaded = tiny_loaded(family)
    ids = torch.from_numpy(fake_corpus("eval").ids[:96].astype(np.int64)).view(3, 32)
    states, logits = boundary_states(loaded, ids)
    fast = Readout(loaded.adapter)
    slow = Readout(loaded.adapter)
    slow.affine = False
    assert fast.affine
    normed = loaded.adapter.lens_norm(states[1]).detach()
    targets = ids.flatten().roll(-1)
    rows = slice(0, len(targets))
    a = fast(normed, fast.target(logits), rows, targets=targets, grad=True)
    b = slow(normed, slow.target(logits), rows, targets=targets, grad=True)
    for x, y in ((a.kl, b.kl), (a.ce, b.ce), (a.grad, b.grad)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)
