"""The model's own token dictionaries read the stream (seed 004, section 2).

:func:`dictionaries` decodes the residual stream at every layer boundary
(``embed``, then each ``{l}_post``: the boundaries of ``lens``) and every
position with three dictionaries: the input embedding ``W_E``, the
unembedding ``W_U`` and the seed's approximate *middle* dictionary (each
unique token of the prompt run alone through the first few layers). A match
is the normalised amplitude ``A = <v|w> / sqrt(<v|v><w|w>)``, a cosine.

:func:`similarity` gives the cosines of ``W_E`` rows for a word list and the
share of positive inner products between random token pairs (81% for
Llama-2 in the seed).

Like :mod:`mechviz.tracing.record`, this module touches torch; scenes read its
results from the trace (:class:`~mechviz.tracing.schema.Dictionaries`,
:class:`~mechviz.tracing.schema.Similarity`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mechviz.errors import MechvizError
from mechviz.model.load import LoadedModel
from mechviz.tracing.record import Recording
from mechviz.tracing.schema import Dictionaries, Similarity

# The seed's example words (Figure 2), as the model sees them mid-sentence:
# each one token of the default model (SmolLM2), checked by tests.
DEFAULT_WORDS = (
    " round",
    " sharp",
    " long",
    " short",
    " male",
    " female",
    " red",
    " yellow",
    " girl",
    " boy",
)
# At most this many float32 values per matmul block (64 MB): a chunk of dictionary
# rows times max(d_model, states), so a 256k-token vocabulary never sits in float32 whole.
CHUNK_FLOATS = 1 << 24
DEFAULT_SAMPLE = 2000  # tokens drawn for positive_share: ~2 million pairs, 0.03% noise


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` in float32, scaled to length 1 (a zero row stays zero)."""
    x = x.detach().float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


def _select(amp: torch.Tensor, k: int) -> torch.Tensor:
    """A mask of the ``k`` largest of each row, ties going to the lowest column."""
    kth = amp.topk(k, dim=-1).values[:, -1:]
    above = amp > kth
    tied = amp == kth
    room = k - above.sum(-1, keepdim=True)
    if bool((tied.sum(-1, keepdim=True) <= room).all()):  # no tie at the cut (the usual case)
        return above | tied
    return above | (tied & (tied.cumsum(-1, dtype=torch.int32) <= room))


def top_matches(states: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest normalised amplitudes of each state against ``rows``.

    Args:
        states: ``[N, D]`` vectors to decode.
        rows: ``[V, D]`` the dictionary, in any dtype and device.
        k: Matches kept per state, at most ``V``.

    Returns:
        ``ids [N, k]`` (int64) and ``amp [N, k]`` (float32), largest first;
        equal amplitudes in order of id.

    """
    V, D = rows.shape
    N = states.shape[0]
    v = _unit(states).to(rows.device)
    step = max(k, CHUNK_FLOATS // max(D, N, 1))
    cand_ids, cand_amp = [], []
    for start in range(0, V, step):
        amp = v @ _unit(rows[start : start + step]).T  # [N, chunk]
        keep = _select(amp, min(k, amp.shape[1]))
        # Row-major nonzero: each state's kept columns in order of id.
        cols = keep.nonzero()[:, 1].view(N, -1)
        cand_amp.append(amp.gather(1, cols))
        cand_ids.append(cols + start)
    ids, amp = torch.cat(cand_ids, 1), torch.cat(cand_amp, 1)  # in order of id
    keep = _select(amp, k)
    ids, amp = ids[keep].view(N, k), amp[keep].view(N, k)
    order = amp.argsort(dim=-1, descending=True, stable=True)  # stable: ties stay by id
    return ids.gather(1, order).cpu().numpy(), amp.gather(1, order).cpu().numpy()


def bos_prefix(loaded: LoadedModel, input_ids: torch.Tensor) -> list[int]:
    """``[bos]`` when the prompt starts with the tokenizer's beginning-of-text token, else ``[]``.

    :func:`mechviz.tracing.record.tokenize` lets the tokenizer add its special tokens,
    so a prompt that starts with BOS is one whose tokenizer adds it.
    """
    bos = getattr(loaded.tokenizer, "bos_token_id", None)
    if bos is not None and len(input_ids) and int(input_ids[0]) == bos:
        return [int(bos)]
    return []


START_TEXT = "<|endoftext|>"  # GPT-2-style vocabularies' document separator


def start_prefix(loaded: LoadedModel, input_ids: torch.Tensor) -> list[int]:
    """The dummy start token each middle-dictionary prompt begins with (the seed's ``<s>``).

    The tokenizer's own beginning-of-text token when it adds one
    (:func:`bos_prefix`); else ``<|endoftext|>`` when the vocabulary has it (the
    text separator these models were trained on; SmolLM2's chat tokenizer
    names ``<|im_start|>`` its BOS, which would start a chat); else its
    ``bos_token``; else nothing. A token run alone would sit at position 0,
    the attention sink, where every token's state is nearly the same (on the
    default model the middle entries' mean cosine is 0.997 there, 0.70 after
    ``<|endoftext|>``).
    """
    own = bos_prefix(loaded, input_ids)
    if own:
        return own
    tokenizer = loaded.tokenizer
    try:  # its id, if the vocabulary really has it (an unknown token maps to unk)
        start = tokenizer.convert_tokens_to_ids(START_TEXT)
        found = tokenizer.convert_ids_to_tokens(start) == START_TEXT
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        found = False
    if found and 0 <= start < loaded.adapter.W_E.shape[0]:
        return [int(start)]
    bos = getattr(tokenizer, "bos_token_id", None)
    return [int(bos)] if bos is not None else []


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer we need has run."""


@torch.no_grad()
def middle_entries(
    loaded: LoadedModel, tokens: Sequence[int], layers: int, prefix: Sequence[int] = ()
) -> torch.Tensor:
    """Each token run alone (after ``prefix``) through the first ``layers`` layers: ``[n, D]``.

    One batch of ``len(tokens)`` prompts ``prefix + [token]``; the entry is
    ``resid_post`` of layer ``layers - 1`` at the token's position (the
    layers after it are not run).
    """
    adapter = loaded.adapter
    device = adapter.embed.weight.device
    batch = torch.tensor([[*prefix, t] for t in tokens], dtype=torch.long, device=device)
    kept: list[torch.Tensor] = []

    def stop(module: torch.nn.Module, args: object, out: object) -> None:
        kept.append((out[0] if isinstance(out, tuple) else out)[:, -1].detach().float())
        raise _Stop

    handle = adapter.layers[layers - 1].register_forward_hook(stop)
    try:
        loaded.model(batch, use_cache=False)
    except _Stop:
        pass
    finally:
        handle.remove()
    return kept[0]


@torch.no_grad()
def dictionaries(
    loaded: LoadedModel,
    rec: Recording,
    *,
    top: int = 5,
    middle_layers: int = 3,
    prefix: Sequence[int] | None = None,
) -> Dictionaries:
    """Decode every layer boundary and position with W_E, W_U and the middle dictionary.

    Args:
        loaded: The model that made ``rec``.
        rec: One recorded forward pass (:func:`mechviz.tracing.record.record`).
        top: Matches kept per state (``E``); the middle dictionary keeps
            ``U = min(top, its entries)``.
        middle_layers: Layers each prompt token runs through to make its
            middle-dictionary entry (the seed's "first few layers").
        prefix: Token ids each middle-dictionary prompt starts with; default
            :func:`start_prefix` (a dummy start token, as the seed's ``<s>``).

    """
    adapter = loaded.adapter
    L = adapter.n_layers
    if not 1 <= middle_layers <= L:
        raise MechvizError(
            f"middle_layers must be between 1 and the model's {L} layers; got {middle_layers}."
        )
    if not 1 <= top <= adapter.W_E.shape[0]:
        raise MechvizError(f"top must be between 1 and the vocabulary size; got {top}.")
    states = rec.boundaries()[0::2]  # [Y, P, D]: embed, then each {l}_post
    Y, P, D = states.shape
    flat = states.reshape(Y * P, D)

    def decode(rows: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        ids, amp = top_matches(flat, rows, k)
        return ids.reshape(Y, P, k), amp.reshape(Y, P, k)

    input_ids, input_amp = decode(adapter.W_E, top)
    output_ids, output_amp = decode(adapter.W_U, top)
    bos = bos_prefix(loaded, rec.input_ids)
    prefix = start_prefix(loaded, rec.input_ids) if prefix is None else list(prefix)
    unique = sorted(set(rec.input_ids.tolist()[len(bos) :]))  # the seed leaves BOS out
    if unique:
        entries = middle_entries(loaded, unique, middle_layers, prefix)
        entry, middle_amp = decode(entries, min(top, len(unique)))
        middle_ids = np.asarray(unique, dtype=np.int64)[entry]  # entry -> its token id
    else:  # a prompt of BOS alone has no middle dictionary
        middle_ids = np.zeros((Y, P, 0), dtype=np.int64)
        middle_amp = np.zeros((Y, P, 0), dtype=np.float32)
    return Dictionaries(
        middle_layers=middle_layers,
        middle_prefix=[int(i) for i in prefix],
        input_ids=input_ids,
        input_amp=input_amp,
        output_ids=output_ids,
        output_amp=output_amp,
        middle_ids=middle_ids,
        middle_amp=middle_amp,
    )


@torch.no_grad()
def positive_share(W_E: torch.Tensor, sample: int, seed: int = 0) -> tuple[float, int]:
    """The share of positive ``<W_E[a]|W_E[b]>`` over pairs ``a < b`` of sampled tokens.

    ``sample`` ids (clamped to the vocabulary) are drawn without replacement
    with ``numpy.random.default_rng(seed)``. Returns the share and the sample
    size used.
    """
    V = W_E.shape[0]
    sample = min(sample, V)
    ids = np.random.default_rng(seed).choice(V, sample, replace=False)
    rows = W_E[torch.as_tensor(ids, device=W_E.device)].detach().float()
    gram = rows @ rows.T
    upper = torch.triu(torch.ones_like(gram, dtype=torch.bool), diagonal=1)
    positive = int((gram[upper] > 0).sum())
    return positive / (sample * (sample - 1) // 2), sample


@torch.no_grad()
def similarity(
    loaded: LoadedModel, words: Sequence[str], *, sample: int = DEFAULT_SAMPLE, seed: int = 0
) -> Similarity:
    """Cosines of ``W_E`` rows for ``words`` and the share of positive token-pair products.

    Args:
        loaded: The model.
        words: Each exactly one token (e.g. ``" red"``, with the space a word
            has mid-sentence); no word twice.
        sample: Tokens drawn for :func:`positive_share` (clamped to the vocabulary).
        seed: Seed of ``numpy.random.default_rng`` for the draw.

    """
    from mechviz.model.load import single_token

    words = list(words)
    if not words:
        raise MechvizError("The word list is empty; give at least one word.")
    if sample < 2:
        raise MechvizError(f"The sample must hold at least 2 tokens; got {sample}.")
    ids = [single_token(loaded, w) for w in words]
    for j, i in enumerate(ids):
        first = ids.index(i)
        if first == j:
            continue
        if words[first] == words[j]:
            raise MechvizError(
                f"The word {words[j]!r} is in the word list twice; give each word once."
            )
        raise MechvizError(
            f"The words {words[first]!r} and {words[j]!r} are the same token ({i}); "
            "give each word once."
        )
    W_E = loaded.adapter.W_E
    rows = _unit(W_E[torch.as_tensor(ids, device=W_E.device)])
    cosine = (rows @ rows.T).clamp(-1.0, 1.0)
    cosine.fill_diagonal_(1.0)  # a row with itself, exactly
    share, sample = positive_share(W_E, sample, seed)
    return Similarity(
        words=words,
        sample=sample,
        seed=seed,
        positive_share=share,
        ids=np.asarray(ids, dtype=np.int64),
        cosine=cosine.cpu().numpy(),
    )
