"""Where each architecture keeps its layers, final norm and unembedding.

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


_LLAMA_LIKE = Family(
    layers="model.layers",
    final_norm="model.norm",
    mlp_out="mlp",
    mlp_in="mlp.down_proj",
)
# Gemma 2/3 normalise what each block writes before adding it to the stream.
_GEMMA2_LIKE = Family(
    layers="model.layers",
    final_norm="model.norm",
    mlp_out="post_feedforward_layernorm",
    mlp_in="mlp.down_proj",
)

FAMILIES: dict[str, Family] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _GEMMA2_LIKE,
    "gemma3_text": _GEMMA2_LIKE,
    "phi3": Family(
        layers="model.layers",
        final_norm="model.norm",
        mlp_out="mlp",
        mlp_in="mlp.down_proj",
    ),
    "phi": Family(
        layers="model.layers",
        final_norm="model.final_layernorm",
        mlp_out="mlp",
        mlp_in="mlp.fc2",
    ),
    "gpt2": Family(
        layers="transformer.h",
        final_norm="transformer.ln_f",
        mlp_out="mlp",
        mlp_in="mlp.c_proj",
    ),
    "gpt_neox": Family(
        layers="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        mlp_out="mlp",
        mlp_in="mlp.dense_4h_to_h",
    ),
}


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
