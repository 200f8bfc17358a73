"""Direct logit attribution ("logit prisms"): what each part of the stream adds to one logit.

The final residual at position ``p`` is a sum of what each part wrote there:

    resid_post[L-1][p] = embed[p] + sum_l (attn_l[p] + mlp_l[p])

where ``embed`` is everything that enters layer 0 (the token embedding; for
Gemma its scaled embedding; for GPT-2 the token plus the position embedding),
``attn_l = resid_post[l] - resid_pre[l] - mlp_out[l]`` (which also holds for the
parallel blocks of GPT-NeoX and Phi, and includes Gemma 2/3's norm after W_O)
and ``mlp_l`` is what the MLP adds (:class:`~mechviz.tracing.record.Recording`). The
final norm with its scale frozen at the *real* final residual at ``p``
(:meth:`Adapter.frozen_norm`: LayerNorm's centring kept) is linear, so each part
read through it and dotted with ``W_U``'s row of the token is that part's
contribution in logits, and

    embed + sum_l (attn_l + mlp_l) + bias == the real logit

where ``bias`` is the final norm's bias read by ``W_U`` plus ``W_U``'s own bias.
With Gemma 2's final soft cap the identity holds for the logit *before* the
cap (``Attribution.logit``); the model's output ``cap * tanh(logit / cap)`` is
kept beside it as ``Attribution.output``. Each attention part splits further
into heads, ``z_h @ W_O[h]`` (as :func:`mechviz.tracing.record.head_effects` reads
them), plus W_O's bias: ``heads[l].sum() + attn_bias[l] == attn[l]``. With
``versus``, every number is for the logit difference ``token - versus``.

:func:`attribution_table` splits every position's own top-1 (and, with
``versus``, its difference from a second token) from one recorded pass: the
trace's ``attribution`` section, which ``mechviz analyze --attribution``
adds and the LogitAttribution scene draws. Like :mod:`mechviz.tracing.record`, this
module touches torch; scenes read its results from the trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mechviz.errors import MechvizError
from mechviz.model.adapter import Adapter
from mechviz.model.load import LoadedModel
from mechviz.tracing.record import Recording, record
from mechviz.tracing.schema import AttributionTable


@dataclass(frozen=True)
class Attribution:
    """The direct contributions to one logit (or logit difference) at one position.

    Every number is in logits, float64, before any final soft cap. ``L`` is the
    number of layers, ``H`` the number of heads per layer.
    """

    position: int  # the position read, 0 <= position < P (its next-token prediction)
    token: int  # the token whose logit is split
    versus: int | None  # if set, every number is for logit(token) - logit(versus)
    embed: float  # what enters layer 0 (scaled for Gemma; + position embedding for GPT-2)
    attn: np.ndarray  # [L] what each attention layer adds (heads + W_O bias)
    mlp: np.ndarray  # [L] what each MLP adds
    heads: np.ndarray  # [L, H] each head's z_h @ W_O[h]
    attn_bias: np.ndarray  # [L] W_O's bias; 0 where W_O has none
    bias: float  # the final norm's bias read by W_U, plus W_U's bias
    logit: float  # the real logit (difference) before the soft cap
    output: float  # the model's own output logit (difference), after any soft cap

    @property
    def names(self) -> list[str]:
        """Labels of :attr:`parts`: ``embed``, then ``{l}_attn`` and ``{l}_mlp`` per layer."""
        names = ["embed"]
        for layer in range(len(self.attn)):
            names += [f"{layer}_attn", f"{layer}_mlp"]
        return names

    @property
    def parts(self) -> np.ndarray:
        """``[1 + 2L]`` contributions in the order of :attr:`names`, the stream's order."""
        return np.concatenate([[self.embed], np.stack([self.attn, self.mlp], 1).ravel()])

    @property
    def total(self) -> float:
        """``parts.sum() + bias``: equal to :attr:`logit` up to float rounding."""
        return float(self.parts.sum() + self.bias)


def attribute(
    loaded: LoadedModel,
    input_ids: torch.Tensor | Sequence[int],
    *,
    position: int = -1,
    token: int | None = None,
    versus: int | None = None,
) -> Attribution:
    """Split the logit of ``token`` at ``position`` into what each part of the model wrote.

    Args:
        loaded: The model.
        input_ids: The prompt's token ids, ``[P]``.
        position: The position whose next-token prediction is read (negative
            counts from the end; default the last).
        token: The token whose logit is split (default: the model's top-1 there).
        versus: A second token; then the difference ``token - versus`` is split.

    """
    ids = _ids(input_ids)
    rec = record(loaded, ids)
    pos = _position(position, len(ids))
    return _Attributor(loaded.adapter, rec).at(pos, token, versus)


def attribute_all(
    loaded: LoadedModel,
    input_ids: torch.Tensor | Sequence[int],
    *,
    versus: int | None = None,
) -> list[Attribution]:
    """Every position's own next-token prediction (its top-1), split; one forward pass."""
    ids = _ids(input_ids)
    attributor = _Attributor(loaded.adapter, record(loaded, ids))
    return [attributor.at(pos, None, versus) for pos in range(len(ids))]


def attribute_recording(
    adapter: Adapter,
    rec: Recording,
    *,
    position: int = -1,
    token: int | None = None,
    versus: int | None = None,
) -> Attribution:
    """:func:`attribute` from a forward pass already recorded (no new pass)."""
    pos = _position(position, len(rec.input_ids))
    return _Attributor(adapter, rec).at(pos, token, versus)


def _ids(input_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    ids = torch.as_tensor(input_ids, dtype=torch.long).flatten()
    if len(ids) == 0:
        raise MechvizError("There are no tokens to attribute; give a non-empty prompt.")
    return ids


def _position(position: int, P: int) -> int:
    if not -P <= position < P:
        raise MechvizError(
            f"Position {position} is outside the prompt's {P} tokens "
            f"(use 0 to {P - 1}, or -1 for the last)."
        )
    return position % P


class _Attributor:
    """One recorded forward pass with its weights in float64, read at any position."""

    def __init__(self, adapter: Adapter, rec: Recording) -> None:
        self.adapter, self.rec = adapter, rec
        self.device = adapter.W_U.device
        f64 = lambda t: None if t is None else t.detach().to(self.device, torch.float64)  # noqa: E731
        self.W_O = [f64(adapter.W_O(layer)) for layer in range(adapter.n_layers)]
        self.b_O = [f64(adapter.b_O(layer)) for layer in range(adapter.n_layers)]
        self.b_U = f64(adapter.unembed.bias)
        self.n_heads = rec.attentions[0].shape[0]
        self.vocab = adapter.W_U.shape[0]
        final = torch.stack(rec.resid_post)[-1].to(self.device)  # [P, D]
        with torch.no_grad():
            normed = adapter.lens_norm(final)
            self.pre_cap = adapter.unembed(normed).double()  # [P, V], before the soft cap
        self.output = rec.logits.to(self.device).double()  # [P, V], the model's own

    def _token(self, token: int | None, pos: int, what: str) -> int:
        if token is None:
            return int(self.output[pos].argmax())
        if not 0 <= int(token) < self.vocab:
            raise MechvizError(
                f"The {what} token id {token} is outside the vocabulary (0 to {self.vocab - 1})."
            )
        return int(token)

    @torch.no_grad()
    def at(self, pos: int, token: int | None, versus: int | None) -> Attribution:
        adapter, rec = self.adapter, self.rec
        token = self._token(token, pos, "attributed")
        if versus is not None:
            versus = self._token(versus, pos, "versus")
        norm = adapter.frozen_norm(adapter.final_norm, rec.resid_post[-1][pos].to(self.device))
        w = adapter.W_U[token].detach().double()
        if versus is not None:
            w = w - adapter.W_U[versus].detach().double()
        gain = norm.gain.double()
        d = gain * w  # the readout direction: linear(v) . w == v . d
        if norm.centre:
            d = d - d.mean()
        bias = 0.0 if norm.bias is None else float(norm.bias.double() @ w)
        if self.b_U is not None:
            bias += float(self.b_U[token] - (0.0 if versus is None else self.b_U[versus]))

        def read(v: torch.Tensor) -> float:
            return float(v[pos].to(self.device).double() @ d)

        L, H = adapter.n_layers, self.n_heads
        attn, mlp, attn_bias = np.zeros(L), np.zeros(L), np.zeros(L)
        heads = np.zeros((L, H))
        for layer in range(L):
            pre, post, out = rec.resid_pre[layer], rec.resid_post[layer], rec.mlp_out[layer]
            attn[layer] = read(post - pre - out)
            mlp[layer] = read(out)
            heads[layer], attn_bias[layer] = self._heads(layer, pos, d)

        def logit(table: torch.Tensor) -> float:
            value = table[pos, token]
            return float(value if versus is None else value - table[pos, versus])

        return Attribution(
            position=pos,
            token=token,
            versus=versus,
            embed=read(rec.resid_pre[0]),
            attn=attn,
            mlp=mlp,
            heads=heads,
            attn_bias=attn_bias,
            bias=bias,
            logit=logit(self.pre_cap),
            output=logit(self.output),
        )

    def _heads(self, layer: int, pos: int, d: torch.Tensor) -> tuple[np.ndarray, float]:
        """Each head's ``z_h @ W_O[h]`` and W_O's bias, read along ``d`` ``[D]``."""
        z = self.rec.attn_z[layer][pos].to(self.device).double()  # [H * d_head]
        W_O, b_O = self.W_O[layer], self.b_O[layer]
        post = self.adapter.attn_post_norm_module(layer)
        if post is not None:  # Gemma 2/3: the norm after W_O, frozen at what W_O wrote
            written = z @ W_O if b_O is None else z @ W_O + b_O
            frozen = self.adapter.frozen_norm(post, written.float())
            d = frozen.gain.double() * d
            if frozen.centre:
                d = d - d.mean()
        per_dim = z * (W_O @ d)  # head-major: z_h . (W_O[h] @ d)
        heads = per_dim.view(self.n_heads, -1).sum(-1).cpu().numpy()
        return heads, 0.0 if b_O is None else float(b_O @ d)


@torch.no_grad()
def attribution_table(
    adapter: Adapter, rec: Recording, *, versus: int | None = None
) -> AttributionTable:
    """Every position's own top-1 split into parts (and, with ``versus``, the difference).

    The trace's ``attribution`` section (:class:`mechviz.tracing.schema.AttributionTable`),
    from a forward pass already recorded.
    """
    attributor = _Attributor(adapter, rec)
    rows = [[attributor.at(pos, None, None) for pos in range(len(rec.input_ids))]]
    if versus is not None:
        rows.append([attributor.at(pos, None, versus) for pos in range(len(rec.input_ids))])

    def stack(get) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.asarray([[get(a) for a in row] for row in rows], dtype=np.float32)

    return AttributionTable(
        versus=None if versus is None else int(versus),
        token=np.asarray([a.token for a in rows[0]], dtype=np.int64),
        parts=stack(lambda a: a.parts),
        heads=stack(lambda a: a.heads),
        attn_bias=stack(lambda a: a.attn_bias),
        bias=stack(lambda a: a.bias),
        logit=stack(lambda a: a.logit),
        output=stack(lambda a: a.output),
    )
