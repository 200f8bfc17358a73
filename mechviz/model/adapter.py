"""Where each architecture keeps its layers, norms, attention projection and unembedding.

This is the only module that knows model internals by name (``model.norm``,
``transformer.ln_f``, ``gpt_neox.layers`` ...). Everything else asks an
:class:`Adapter`. Modelled on tuned-lens ``model_surgery.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mechviz.errors import MechvizError


@dataclass(frozen=True)
class Family:
    """Attribute paths for one architecture family, relative to the CausalLM.

    The embedding and unembedding come from transformers' own accessors.
    """

    layers: str
    final_norm: str
    mlp_out: str  # module (relative to a layer) whose output is what the MLP adds
    mlp_in: str  # module (relative to a layer) whose *input* is the MLP activation
    # Module (relative to a layer) whose *input* is every head's output side by
    # side, [..., H * d_head], head-major: the attention output projection W_O.
    attn_proj: str = "self_attn.o_proj"
    # A norm applied to W_O's output before it joins the stream (Gemma 2/3), else None.
    attn_post_norm: str | None = None
    # RMSNorm multiplies by (offset + weight): Gemma stores its weights minus 1.
    rms_offset: float = 0.0
    # The norm (relative to a layer) that attention's input goes through.
    attn_input_norm: str = "input_layernorm"
    # How W_Q, W_K, W_V are stored: "separate" (q_proj, k_proj, v_proj beside W_O),
    # "gpt2" (one Conv1D c_attn, columns Q | K | V), "neox" (query_key_value, rows
    # interleaved per head [H, 3, d_head]) or "phi3" (qkv_proj, rows Q | K | V).
    qkv: str = "separate"


_LLAMA_LIKE = Family(
    layers="model.layers",
    final_norm="model.norm",
    mlp_out="mlp",
    mlp_in="mlp.down_proj",
)
_GEMMA = Family(
    layers="model.layers",
    final_norm="model.norm",
    mlp_out="mlp",
    mlp_in="mlp.down_proj",
    rms_offset=1.0,
)
# Gemma 2/3 normalise what each block writes before adding it to the stream.
_GEMMA2_LIKE = Family(
    layers="model.layers",
    final_norm="model.norm",
    mlp_out="post_feedforward_layernorm",
    mlp_in="mlp.down_proj",
    attn_post_norm="post_attention_layernorm",
    rms_offset=1.0,
)

FAMILIES: dict[str, Family] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _GEMMA,
    "gemma2": _GEMMA2_LIKE,
    "gemma3_text": _GEMMA2_LIKE,
    "phi3": Family(
        layers="model.layers",
        final_norm="model.norm",
        mlp_out="mlp",
        mlp_in="mlp.down_proj",
        qkv="phi3",
    ),
    "phi": Family(
        layers="model.layers",
        final_norm="model.final_layernorm",
        mlp_out="mlp",
        mlp_in="mlp.fc2",
        attn_proj="self_attn.dense",
    ),
    "gpt2": Family(
        layers="transformer.h",
        final_norm="transformer.ln_f",
        mlp_out="mlp",
        mlp_in="mlp.c_proj",
        attn_proj="attn.c_proj",
        attn_input_norm="ln_1",
        qkv="gpt2",
    ),
    "gpt_neox": Family(
        layers="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        mlp_out="mlp",
        mlp_in="mlp.dense_4h_to_h",
        attn_proj="attention.dense",
        qkv="neox",
    ),
}


@dataclass(frozen=True)
class FrozenNorm:
    """A norm with its scale frozen at one input: ``v -> gain * centre(v) + bias``.

    ``centre`` subtracts the mean over ``d_model`` (LayerNorm); ``gain`` is the
    norm's weight divided by the RMS (or standard deviation) of the input it
    was frozen at. Without the bias the map is linear, so what each component
    of the stream contributes to the normed vector adds up.
    """

    gain: torch.Tensor  # [D] float32
    centre: bool
    bias: torch.Tensor | None  # [D] float32

    def linear(self, v: torch.Tensor) -> torch.Tensor:
        """The frozen map without the bias, of ``v`` ``[..., D]``."""
        v = v.float()
        if self.centre:
            v = v - v.mean(-1, keepdim=True)
        return v * self.gain

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        out = self.linear(v)
        return out if self.bias is None else out + self.bias

    def readout(self, w: torch.Tensor) -> torch.Tensor:
        """The direction ``d`` ``[D]`` with ``linear(v) . w == v . d`` for every ``v``.

        Centring is a symmetric projection, so ``d = centre(gain * w)``.
        """
        d = self.gain * w.float()
        return d - d.mean() if self.centre else d


def _x_at_w(module: nn.Module) -> torch.Tensor:
    """A projection's weight as ``x @ W``: ``[in, out]`` (Linear transposed, Conv1D as is)."""
    if isinstance(module, nn.Linear):
        return module.weight.T
    if type(module).__name__ == "Conv1D":
        return module.weight
    raise MechvizError(f"mechviz cannot read a {type(module).__name__} as a projection.")


def _get(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = getattr(module, part)
    return module


class Adapter:
    """One model's layers, final norm, unembedding and output transform."""

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        self.architecture: str = config.model_type
        family = FAMILIES.get(self.architecture)
        if family is None:
            supported = ", ".join(sorted(FAMILIES))
            raise MechvizError(
                f"Architecture '{self.architecture}' is not supported yet; "
                f"supported families are: {supported}."
            )
        self.model = model
        self.family = family
        self.layers: list[nn.Module] = list(_get(model, family.layers))
        self.final_norm: nn.Module = _get(model, family.final_norm)
        # transformers names these per model; its accessors know where they are.
        self.unembed: nn.Linear = model.get_output_embeddings()
        self.embed: nn.Embedding = model.get_input_embeddings()
        # Gemma 2 caps its final logits with tanh; the lens must do the same.
        self.final_logit_softcap: float | None = getattr(config, "final_logit_softcapping", None)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def mlp_out_module(self, layer: int) -> nn.Module:
        return _get(self.layers[layer], self.family.mlp_out)

    def mlp_in_module(self, layer: int) -> nn.Module:
        return _get(self.layers[layer], self.family.mlp_in)

    def attn_proj_module(self, layer: int) -> nn.Module:
        """The output projection W_O; its input is the heads' outputs, ``[..., H * d_head]``."""
        return _get(self.layers[layer], self.family.attn_proj)

    def attn_post_norm_module(self, layer: int) -> nn.Module | None:
        """The norm between W_O and the stream (Gemma 2/3), else ``None``."""
        path = self.family.attn_post_norm
        return None if path is None else _get(self.layers[layer], path)

    def W_O(self, layer: int) -> torch.Tensor:
        """The output projection as ``z @ W_O``, ``[H * d_head, d_model]``, head-major rows."""
        proj = self.attn_proj_module(layer)
        if isinstance(proj, nn.Linear):
            return proj.weight.T
        if type(proj).__name__ == "Conv1D":  # GPT-2 stores x @ W, [in, out]
            return proj.weight
        raise MechvizError(
            f"The attention output projection of this {self.architecture} model is a "
            f"{type(proj).__name__}, which mechviz cannot read."
        )

    def attn_input_norm_module(self, layer: int) -> nn.Module:
        """The norm attention's input goes through (``input_layernorm``, GPT-2's ``ln_1``)."""
        return _get(self.layers[layer], self.family.attn_input_norm)

    def W_QKV(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """W_Q ``[D, H * d_head]``, W_K and W_V ``[D, n_kv * d_head]``, as ``x @ W``.

        Heads sit side by side, head-major. Fused projections are split as the
        models split them (:attr:`Family.qkv`).
        """
        config = self.model.config
        n_heads = int(config.num_attention_heads)
        n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
        d_head = self.W_O(layer).shape[0] // n_heads
        q_size, kv_size = n_heads * d_head, n_kv * d_head
        attn = _get(self.layers[layer], self.family.attn_proj.rpartition(".")[0])
        kind = self.family.qkv
        if kind == "separate":
            return tuple(_x_at_w(getattr(attn, f"{m}_proj")) for m in "qkv")  # type: ignore[return-value]
        if kind == "gpt2":
            w = _x_at_w(attn.c_attn)  # [D, 3 * D], columns Q | K | V
            return w[:, :q_size], w[:, q_size : 2 * q_size], w[:, 2 * q_size :]
        if kind == "phi3":
            w = _x_at_w(attn.qkv_proj)  # [D, (H + 2 n_kv) d_head], columns Q | K | V
            return w[:, :q_size], w[:, q_size : q_size + kv_size], w[:, q_size + kv_size :]
        # GPT-NeoX: output rows grouped per head, [H, 3, d_head] (view, then chunk(3)).
        w = _x_at_w(attn.query_key_value).reshape(-1, n_heads, 3, d_head)
        q, k, v = (w[:, :, i, :].reshape(w.shape[0], q_size) for i in range(3))
        return q, k, v

    def b_O(self, layer: int) -> torch.Tensor | None:
        """The output projection's bias ``[d_model]``, or ``None``."""
        return getattr(self.attn_proj_module(layer), "bias", None)

    def frozen_norm(self, norm: nn.Module, x: torch.Tensor) -> FrozenNorm:
        """``norm`` with its scale frozen at the input ``x`` ``[D]`` (float32 arithmetic).

        LayerNorm (GPT-2, GPT-NeoX, Phi): centre, divide by
        ``sqrt(var(x) + eps)``, multiply by the weight, add the bias. RMSNorm
        (the others): divide by ``sqrt(mean(x^2) + eps)``, multiply by
        ``rms_offset + weight`` (Gemma's ``1 + weight``). The result is checked
        against the module's own output at ``x``, so a norm of another kind is
        refused rather than misread.
        """
        x = x.detach().float()
        weight = getattr(norm, "weight", None)
        w = torch.ones_like(x) if weight is None else weight.detach().float().to(x.device)
        if isinstance(norm, nn.LayerNorm):
            centre = True
            scale = torch.rsqrt(x.var(unbiased=False) + norm.eps)
            bias = None if norm.bias is None else norm.bias.detach().float().to(x.device)
        else:
            eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
            if eps is None:
                raise MechvizError(
                    f"The norm {type(norm).__name__} of this {self.architecture} model is "
                    "neither a LayerNorm nor an RMSNorm that mechviz knows."
                )
            centre, bias = False, None
            scale = torch.rsqrt(x.pow(2).mean() + eps)
            w = w + self.family.rms_offset
        frozen = FrozenNorm(gain=w * scale, centre=centre, bias=bias)
        self._check_frozen(norm, x, frozen)
        return frozen

    def _check_frozen(self, norm: nn.Module, x: torch.Tensor, frozen: FrozenNorm) -> None:
        """The frozen map at its own input must be the module's output there."""
        param = next(norm.parameters(), None)
        dtype = torch.float32 if param is None else param.dtype
        device = x.device if param is None else param.device
        with torch.no_grad():
            real = norm(x.to(device=device, dtype=dtype)).float().to(x.device)
        # The model's own dtype rounds its output (bfloat16: 2**-8 relative).
        tol = 1e-4 if dtype == torch.float32 else 2e-2
        if not torch.allclose(frozen(x), real, rtol=tol, atol=tol * real.abs().max().item()):
            raise MechvizError(
                f"The norm {type(norm).__name__} of this {self.architecture} model does "
                "not compute what mechviz expects of a LayerNorm or RMSNorm."
            )

    @property
    def W_E(self) -> torch.Tensor:
        """Embedding matrix, [d_vocab, d_model]."""
        return self.embed.weight

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding matrix as stored by torch, [d_vocab, d_model]."""
        return self.unembed.weight

    @property
    def tied_embeddings(self) -> bool:
        return self.W_E.data_ptr() == self.W_U.data_ptr()

    @property
    def output_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        cap = self.final_logit_softcap
        if cap is None:
            return lambda logits: logits
        return lambda logits: torch.tanh(logits / cap) * cap

    @property
    def affine_lens(self) -> bool:
        """True when the logits are ``normed @ W_U.T (+ bias)`` with nothing after.

        Then the lens may run the matmul itself (into a reused buffer) and read
        ``sum_v p_v * logits_v`` as ``normed . (p @ W_U)`` (+ ``p . bias``).
        Not for Gemma 2's softcap, nor for an unembedding that is not a plain
        ``nn.Linear`` (quantised or wrapped heads).
        """
        return self.final_logit_softcap is None and type(self.unembed) is nn.Linear

    def lens_norm(self, resid: torch.Tensor) -> torch.Tensor:
        """The final norm of any residual state ``[..., d_model]``, on the unembedding's device.

        The norm module computes its scale from *this* input, so every boundary
        is normalised by its own statistics, never by the last layer's.
        """
        weight = self.unembed.weight
        norm_device = next(self.final_norm.parameters(), weight).device
        # In the model's own dtype and device, as the model reads its last layer.
        normed = self.final_norm(resid.to(device=norm_device, dtype=weight.dtype))
        return normed.to(weight.device)

    def logits_from_normed(self, normed: torch.Tensor) -> torch.Tensor:
        """Unembedding and the model's output transform of :meth:`lens_norm`'s output."""
        return self.output_transform(self.unembed(normed))

    def logit_lens(self, resid: torch.Tensor) -> torch.Tensor:
        """The logit lens: final norm, unembedding, the model's output transform.

        ``resid`` is any residual-stream state ``[..., d_model]``; see
        :meth:`lens_norm`.
        """
        return self.logits_from_normed(self.lens_norm(resid))
