"""Layouts hold on traces of extreme shapes (issue 21).

Real forward passes of tiny random Llamas, each made extreme in one way: a
residual stream with norms above 10^4, a one-token prompt (no <bos>), a
64-token prompt, 32 heads. All but the one-token trace start with a <bos>
column. The core scenes must draw each at the widest and the narrowest
aspects with every text legible, inside the frame and apart from the others.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from conftest import INIT_RANGE, VOCAB, CharTokenizer
from test_publishable import CORE, check_legible, run_scene

from mechviz.tracing.schema import Trace

pytestmark = pytest.mark.slow

LONG = "The quick brown fox jumps over the lazy dog; then it naps. Done!"  # 64 characters
SHAPES = {
    "norms above 10^4": dict(heads=4, hidden=64, prompt="Hello, tiny world!", scale=3e4),
    "one token": dict(heads=4, hidden=64, prompt="A", bos=False),
    "64 tokens": dict(heads=4, hidden=64, prompt=LONG[:63]),  # and <bos>
    "32 heads": dict(heads=32, hidden=256, prompt="Hello, tiny world!"),
}


@cache
def extreme_trace(shape: str) -> Trace:
    import transformers as tf

    from mechviz.model.load import wrap_model
    from mechviz.tracing.record import TraceOptions, build_trace, record, tokenize

    spec = SHAPES[shape]
    config = tf.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=spec["hidden"],
        num_hidden_layers=3,
        num_attention_heads=spec["heads"],
        num_key_value_heads=spec["heads"],
        intermediate_size=2 * spec["hidden"],
        max_position_embeddings=128,
        initializer_range=INIT_RANGE,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(config).float().eval()
    if "scale" in spec:
        with torch.no_grad():
            model.model.embed_tokens.weight.mul_(spec["scale"])
    tokenizer = CharTokenizer(VOCAB, add_bos=spec.get("bos", True))
    loaded = wrap_model(model, tokenizer, f"tiny-llama-{shape.replace(' ', '-')}")
    ids = tokenize(loaded, spec["prompt"], max_tokens=64)
    return build_trace(loaded, spec["prompt"], record(loaded, ids), TraceOptions(top_k=5))


def test_the_traces_are_as_extreme_as_named() -> None:
    big = extreme_trace("norms above 10^4")
    assert float(np.max(big.resid.norm)) > 1e4
    assert extreme_trace("one token").n_positions == 1
    assert extreme_trace("64 tokens").n_positions == 64
    assert extreme_trace("32 heads").model.n_heads == 32
    for shape in ("norms above 10^4", "64 tokens", "32 heads"):
        assert extreme_trace(shape).tokens.ids[0] == 1  # a <bos> column


@pytest.mark.parametrize("aspect", ["16:9", "9:16"])
@pytest.mark.parametrize("name", CORE)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_core_scenes_hold_on_extreme_traces(shape: str, name: str, aspect: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    check_legible(run_scene(name, tmp_path, trace=extreme_trace(shape), aspect=aspect))
