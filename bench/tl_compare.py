"""Same-run comparison with TransformerLens 4 on the default model (optional).

TransformerLens is not a mechviz dependency: run this with an environment that
has it and mechviz importable, for example
    python -m venv /tmp/tl && /tmp/tl/bin/pip install torch==2.13.0 transformer-lens==4.3.0
    PYTHONPATH=. /tmp/tl/bin/python bench/tl_compare.py
It times, on the same loaded weights: a bare forward pass; TransformerLens'
``run_with_cache`` followed by the ``accumulated_resid`` logit lens (final norm,
unembedding, softmax at every layer boundary); and mechviz's whole trace.
"""

from __future__ import annotations

import time

import torch
from transformer_lens.model_bridge import TransformerBridge

from mechviz.models import load_model
from mechviz.tracing import TraceOptions, tokenize, trace_prompt

PROMPT = "The capital of France is"


def best(fn, repeat: int = 5) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    loaded = load_model()
    ids = tokenize(loaded, PROMPT, 64)[None]
    # The bridge rewires the model it wraps, so it gets its own copy of the weights.
    other = load_model()
    bridge = TransformerBridge.boot_transformers(
        "HuggingFaceTB/SmolLM2-135M-Instruct", hf_model=other.model, tokenizer=other.tokenizer
    )

    @torch.no_grad()
    def bare() -> None:
        loaded.model(ids, use_cache=False)

    @torch.no_grad()
    def tl_lens() -> torch.Tensor:
        _, cache = bridge.run_with_cache(ids)
        resid = cache.accumulated_resid(apply_ln=True)  # [L + 1, batch, P, d_model]
        return bridge.unembed(resid).softmax(-1)

    mechviz = lambda: trace_prompt(loaded, PROMPT, TraceOptions())  # noqa: E731
    for fn in (bare, tl_lens, mechviz):
        fn()  # warm-up
    bare_s, tl_s, mv_s = best(bare), best(tl_lens), best(mechviz)
    final = tl_lens()[-1, 0, -1]
    print(f"TransformerLens final-layer lens top-1: {loaded.tokenizer.decode(final.argmax())!r}")
    print(f"{'stage':<48}{'best s':>8}{'x bare':>8}")
    print(f"{'bare forward pass':<48}{bare_s:>8.3f}{1:>8.2f}")
    print(f"{'TransformerLens run_with_cache + lens':<48}{tl_s:>8.3f}{tl_s / bare_s:>8.2f}")
    print(f"{'mechviz trace compute (lens + all records)':<48}{mv_s:>8.3f}{mv_s / bare_s:>8.2f}")


if __name__ == "__main__":
    main()
