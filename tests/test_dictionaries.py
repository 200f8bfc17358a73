"""The model's own dictionaries (mechviz.analyses.dictionaries): known answers, set embeddings."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch
from conftest import FIRST_CHAR, HIDDEN, TINY_PROMPT, VOCAB, CharTokenizer, build_tiny_model

from mechviz.analyses import dictionaries as dmod
from mechviz.analyses.dictionaries import (
    DEFAULT_WORDS,
    dictionaries,
    middle_entries,
    positive_share,
    similarity,
    top_matches,
)
from mechviz.errors import MechvizError
from mechviz.model.load import wrap_model
from mechviz.tracing.record import record, tokenize

# llama: a tied W_E/W_U; mistral: untied; gemma: the embedding scaled by sqrt(d_model);
# gpt2: the position embedding added to the token's row.
DICT_FAMILIES = ["llama", "mistral", "gemma", "gpt2"]
# The state entering layer 0 is the token's own W_E row up to a positive scale (a
# cosine of 1 with it) everywhere but GPT-2, which adds the position's embedding.
PLAIN_EMBED = {"llama", "mistral", "gemma"}


class WordTokenizer(CharTokenizer):
    """The character tokenizer with ``encode(..., add_special_tokens=False)``."""

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> list[int]:
        ids = super().encode(text)
        return ids if add_special_tokens or not self.add_bos else ids[1:]


def char(c: str) -> int:
    return FIRST_CHAR + ord(c) - 32


def _hand_set_embedding(model: torch.nn.Module, prompt: str) -> None:
    """Orthonormal rows for the prompt's characters and BOS, zero rows for the rest."""
    used = sorted({char(c) for c in prompt} | {1})
    W = torch.zeros(VOCAB, HIDDEN)
    for j, i in enumerate(used):
        W[i, j] = 1.0
    W[char("a")] = torch.nn.functional.one_hot(torch.tensor(50), HIDDEN) * 3.0
    W[char("b")] = W[char("a")] + 3.0 * torch.nn.functional.one_hot(torch.tensor(51), HIDDEN)
    W[char("c")] = -2.0 * W[char("a")]
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(W)


def _loaded(family: str, add_bos: bool = True, hand_set: bool = True) -> Any:
    model = build_tiny_model(family)
    if hand_set:
        _hand_set_embedding(model, TINY_PROMPT)
    return wrap_model(model, WordTokenizer(VOCAB, add_bos=add_bos), f"tiny-{family}")


@pytest.fixture(scope="module", params=DICT_FAMILIES)
def hand(request: pytest.FixtureRequest) -> tuple[str, Any, Any]:
    loaded = _loaded(request.param)
    ids = tokenize(loaded, TINY_PROMPT, 64)
    return request.param, loaded, record(loaded, ids)


def _brute(states: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 cosines, sorted by (-amplitude, id)."""
    s = states / np.linalg.norm(states, axis=-1, keepdims=True)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    r = rows / np.where(norms > 0, norms, 1.0)
    amp = s @ r.T
    ids = np.stack([np.lexsort((np.arange(len(r)), -row))[:k] for row in amp])
    return ids, np.take_along_axis(amp, ids, 1)


# --- top_matches -----------------------------------------------------------------------


def test_top_matches_known_answer_with_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = torch.tensor(
        [[0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 0.0], [-1.0, 0.0], [0.0, 3.0]]
    )
    states = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
    for chunk in (1 << 24, 2, 3):  # one block, and blocks smaller than the dictionary
        monkeypatch.setattr(dmod, "CHUNK_FLOATS", chunk)
        ids, amp = top_matches(states, rows, 4)
        # [3, 0]: rows 1 and 4 are parallel (A = 1, the lower id first), then row 3
        # (1/sqrt 2), then a tie at 0 between rows 0, 2 and 6: the lowest id.
        assert ids.tolist()[0] == [1, 4, 3, 0]
        np.testing.assert_allclose(amp[0], [1, 1, 1 / math.sqrt(2), 0], atol=1e-6)
        # [0, -1]: rows 1, 2, 4 and 5 tie at 0, then row 3 (-1/sqrt 2).
        assert ids.tolist()[1] == [1, 2, 4, 5]
        assert amp.dtype == np.float32 and ids.dtype == np.int64


def test_top_matches_agrees_with_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    rows = torch.randn(301, 16, generator=g).round()  # small integers: many exact ties
    states = torch.randn(7, 16, generator=g)
    monkeypatch.setattr(dmod, "CHUNK_FLOATS", 16 * 50)  # 7 blocks
    ids, amp = top_matches(states, rows, 6)
    want_ids, want_amp = _brute(states.double().numpy(), rows.double().numpy(), 6)
    np.testing.assert_allclose(amp, want_amp, atol=1e-6)
    assert (ids == want_ids).all()


# --- dictionaries on hand-set embeddings ----------------------------------------------


def test_embed_boundary_reads_its_own_token(hand: tuple[str, Any, Any]) -> None:
    family, loaded, rec = hand
    d = dictionaries(loaded, rec, top=5, middle_layers=2)
    Y, P = loaded.adapter.n_layers + 1, len(rec.input_ids)
    assert d.input_ids.shape == d.output_ids.shape == (Y, P, 5)
    ids = rec.input_ids.numpy()
    if family in PLAIN_EMBED:
        # Orthonormal rows: the own token at A = 1, then four zero amplitudes, the lowest ids.
        assert (d.input_ids[0, :, 0] == ids).all()
        np.testing.assert_allclose(d.input_amp[0, :, 0], 1.0, atol=1e-6)
        np.testing.assert_allclose(d.input_amp[0, :, 1:], 0.0, atol=1e-6)
        for p, own in enumerate(ids):
            assert d.input_ids[0, p, 1:].tolist() == [i for i in range(6) if i != own][:4]
    else:  # GPT-2: token plus position, below A = 1 (the brute force below says where)
        assert (d.input_amp[0, :, 0] < 0.999).all()
    states = rec.boundaries()[0::2].double().numpy()
    for name, W in (("input", loaded.adapter.W_E), ("output", loaded.adapter.W_U)):
        for y in (0, 1, Y - 1):
            want_ids, want_amp = _brute(states[y], W.detach().double().numpy(), 5)
            np.testing.assert_allclose(getattr(d, f"{name}_amp")[y], want_amp, atol=1e-5)
            got = getattr(d, f"{name}_ids")[y]
            clear = np.abs(np.diff(want_amp, axis=-1)).min(-1) > 1e-5  # no near-tie
            assert (got[clear] == want_ids[clear]).all()
    if loaded.adapter.tied_embeddings:
        assert (d.input_ids == d.output_ids).all()
        np.testing.assert_array_equal(d.input_amp, d.output_amp)
    else:
        assert not (d.input_ids == d.output_ids).all()


@pytest.mark.parametrize("middle_layers", [1, 3])
def test_middle_dictionary_reads_the_second_position(
    hand: tuple[str, Any, Any], middle_layers: int
) -> None:
    # Position 1 has the context [BOS, token]: exactly the token's middle-dictionary prompt,
    # so at boundary {middle_layers - 1}_post it is its own entry, A = 1.
    family, loaded, rec = hand
    d = dictionaries(loaded, rec, top=5, middle_layers=middle_layers)
    ids = rec.input_ids.tolist()
    unique = sorted(set(ids[1:]))
    assert d.middle_layers == middle_layers
    assert d.middle_ids.shape == (len(d.input_ids), len(ids), min(5, len(unique)))
    assert 1 not in d.middle_ids  # BOS is not in the basis
    assert set(np.unique(d.middle_ids)) <= set(unique)
    assert d.middle_ids[middle_layers, 1, 0] == ids[1]
    assert d.middle_amp[middle_layers, 1, 0] == pytest.approx(1.0, abs=1e-5)
    assert (np.diff(d.middle_amp, axis=-1) <= 0).all()


def test_middle_entries_are_single_token_passes(hand: tuple[str, Any, Any]) -> None:
    family, loaded, rec = hand
    tokens = [char("H"), char("!")]
    for layers in (2,):
        batch = middle_entries(loaded, tokens, layers, prefix=[1])
        for t, entry in zip(tokens, batch):
            alone = record(loaded, torch.tensor([1, t])).resid_post[layers - 1][-1]
            torch.testing.assert_close(entry, alone, rtol=1e-4, atol=1e-4)  # batched matmuls


def test_middle_dictionary_without_bos() -> None:
    loaded = _loaded("llama", add_bos=False)
    ids = tokenize(loaded, TINY_PROMPT, 64)
    assert int(ids[0]) == char("H")
    d = dictionaries(loaded, record(loaded, ids), top=3, middle_layers=2)
    bos = loaded.tokenizer.bos_token_id
    assert d.middle_prefix == [bos]  # no <|endoftext|> here: the tokenizer's bos_token
    assert d.middle_ids.shape[-1] == 3
    bare = dictionaries(loaded, record(loaded, ids), top=3, middle_layers=2, prefix=[])
    assert bare.middle_prefix == []
    assert bare.middle_ids[2, 0, 0] == char("H")  # position 0: the context [H] itself
    assert bare.middle_amp[2, 0, 0] == pytest.approx(1.0, abs=1e-5)


def test_dictionaries_refuse_bad_settings(hand: tuple[str, Any, Any]) -> None:
    family, loaded, rec = hand
    for bad in (0, loaded.adapter.n_layers + 1):
        with pytest.raises(MechvizError, match="middle_layers must be between 1 and"):
            dictionaries(loaded, rec, middle_layers=bad)


# --- similarity -------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_similarity_of_hand_set_rows(family: str) -> None:
    loaded = _loaded(family)
    s = similarity(loaded, ["a", "b", "c", "H"], sample=40, seed=3)
    r = 1 / math.sqrt(2)
    want = [[1, r, -1, 0], [r, 1, -r, 0], [-1, -r, 1, 0], [0, 0, 0, 1]]
    np.testing.assert_allclose(s.cosine, want, atol=1e-6)
    np.testing.assert_array_equal(s.cosine, s.cosine.T)
    assert s.ids.tolist() == [char("a"), char("b"), char("c"), char("H")]
    assert s.words == ["a", "b", "c", "H"] and (s.sample, s.seed) == (40, 3)


def _brute_share(W: np.ndarray, sample: int, seed: int) -> float:
    ids = np.random.default_rng(seed).choice(len(W), sample, replace=False)
    positive = pairs = 0
    for i in range(sample):
        for j in range(i + 1, sample):
            pairs += 1
            positive += float(np.dot(W[ids[i]], W[ids[j]])) > 0
    return positive / pairs


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_positive_share_against_a_brute_force_count(family: str) -> None:
    loaded = _loaded(family, hand_set=False)
    W = loaded.adapter.W_E.detach()
    for sample, seed in ((60, 0), (25, 7)):
        share, n = positive_share(W, sample, seed)
        assert n == sample
        assert share == pytest.approx(_brute_share(W.double().numpy(), sample, seed), abs=1e-12)
    assert 0.2 < share < 0.8  # random rows: about half
    share, n = positive_share(W, 10_000, 0)  # clamped to the vocabulary
    assert n == VOCAB
    # The hand-set rows: orthogonal or zero, except a/b (positive) and a/c, b/c (negative).
    hand = _loaded(family).adapter.W_E.detach()
    share, n = positive_share(hand, VOCAB, 0)
    assert share == pytest.approx(1 / (VOCAB * (VOCAB - 1) // 2))


def test_similarity_refuses_bad_words() -> None:
    loaded = _loaded("llama")
    with pytest.raises(MechvizError, match=r"^The word list is empty"):
        similarity(loaded, [])
    with pytest.raises(MechvizError, match=r"'ab' is not a single token of tiny-llama: it splits"):
        similarity(loaded, ["a", "ab"])
    with pytest.raises(MechvizError, match=r"^The word 'a' is in the word list twice; give"):
        similarity(loaded, ["a", "b", "a"])
    same = re.escape("The words '\\x00' and '\\x01' are the same token (3); give each")
    with pytest.raises(MechvizError, match=same):
        similarity(loaded, ["H", "\x00", "\x01"])  # unknown characters: both <unk>
    with pytest.raises(MechvizError, match="at least 2 tokens"):
        similarity(loaded, ["a"], sample=1)


# --- the real default model --------------------------------------------------------------


@pytest.fixture(scope="module")
def paris(default_model):  # noqa: ANN001, ANN201
    ids = tokenize(default_model, "The capital of France is", 64)
    return record(default_model, ids)


@pytest.mark.slow
def test_default_words_are_single_tokens(default_model) -> None:  # noqa: ANN001
    s = similarity(default_model, DEFAULT_WORDS, sample=100)
    assert s.words == list(DEFAULT_WORDS) and len(set(s.ids.tolist())) == len(DEFAULT_WORDS)
    assert all(w.startswith(" ") for w in DEFAULT_WORDS)


@pytest.mark.slow
def test_default_model_sections(default_model, paris) -> None:  # noqa: ANN001
    import mechviz
    from mechviz.tracing.io import load_trace
    from mechviz.tracing.record import with_sections
    from mechviz.visual.settings import example_trace

    d = dictionaries(default_model, paris)
    s = similarity(default_model, DEFAULT_WORDS)
    assert default_model.adapter.tied_embeddings
    assert (d.input_ids == d.output_ids).all()  # tied: one dictionary
    np.testing.assert_array_equal(d.input_amp, d.output_amp)
    ids = paris.input_ids.numpy()
    assert (d.input_ids[0, :, 0] == ids).all()  # the embed boundary reads its own token
    assert d.middle_ids.shape == (31, len(ids), 5)
    assert 0.5 < s.positive_share < 1.0 and s.sample == 2000
    example = load_trace(example_trace())  # the default model on the same prompt
    assert example.tokens.ids.tolist() == ids.tolist()
    trace = with_sections(example, default_model, dictionaries=d, similarity=s)
    again = mechviz.Trace.from_dict(trace.to_dict())
    assert again.dictionaries.middle_layers == 3
    assert again.dictionaries.middle_prefix == [0] and again.vocab[0] == "<|endoftext|>"
    own = d.middle_ids[3, 1:, 0] == ids[1:]  # after 3 layers, positions but the sink read their own
    assert own.mean() >= 0.75, d.middle_ids[3, :, 0]
    for i in np.unique(d.middle_ids):
        assert again.vocab[int(i)] in again.tokens.text
    last = d.output_ids[-1, -1]  # the raw last state, before the final norm: 'Paris' first
    assert [again.vocab[int(i)] for i in last[:2]] == ["Paris", "London"]
    # The committed example trace holds what this code computes.
    for name in ("input", "output", "middle"):
        got = getattr(example.dictionaries, f"{name}_ids")
        np.testing.assert_array_equal(got, getattr(d, f"{name}_ids"))
        want = getattr(d, f"{name}_amp")
        np.testing.assert_allclose(getattr(example.dictionaries, f"{name}_amp"), want, atol=1e-5)
    assert example.similarity.positive_share == pytest.approx(s.positive_share, abs=1e-12)
    np.testing.assert_allclose(example.similarity.cosine, s.cosine, atol=1e-6)
    np.testing.assert_allclose(again.similarity.cosine, s.cosine, atol=1e-6)
