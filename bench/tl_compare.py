"""Same-run comparison with TransformerLens 4 on the default model (optional).

TransformerLens is not a mechviz dependency: run this with an environment that
has it and mechviz importable, for example
    python -m venv /tmp/tl && /tmp/tl/bin/pip install torch==2.13.0 transformer-lens==4.3.0
    PYTHONPATH=. /tmp/tl/bin/python bench/tl_compare.py [--threads 1,2] [--rounds 9]

On the same weights, float32, eager attention, and the same positions (a 5-token
prompt and a 64-token one), it times five contestants:

- ``bare forward``: one forward pass of the model, no hooks;
- ``bare matmul``: the lens's floor, ``normed [31 * P, 576] @ W_U.T`` in float32
  (every boundary's normed stream times the unembedding, nothing else);
- ``mechviz lens``: ``mechviz.tracing.record.lens_statistics`` alone, on a recording
  made beforehand (the final norm, that matmul and every reduction);
- ``mechviz trace``: ``trace_prompt`` with the model loaded (tokenize, forward
  with recording hooks, lens, every other reduction, the validated Trace);
- ``TL run_with_cache + lens``: TransformerLens' ``run_with_cache``, then
  ``accumulated_resid(apply_ln=True)``, ``unembed`` and ``softmax``.

Rounds are interleaved: each round runs every contestant once, in an order that
rotates from round to round, so a busy spell of the (shared) machine hits all
of them alike; the table gives medians. Threads: torch's intra-op thread count
is set with ``torch.set_num_threads`` for all contestants alike, once per value
of ``--threads``; with two threads on a busy two-core machine every contestant
slows down unevenly (barriers wait for a descheduled thread), so the load
average is printed next to each table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from mechviz.model.load import load_model
from mechviz.tracing.record import TraceOptions, lens_statistics, record, tokenize, trace_prompt

SHORT = "The capital of France is"
# Real English, exactly 64 tokens with the default model's tokenizer (checked below).
LONG = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined movable metal type, oil-based ink and a wooden screw press. "
    "Within fifty years, printers in more than two hundred European cities had produced "
    "millions of books, and ideas spread faster than ever before. Scholars could compare "
    "the same text in distant"
)
PROMPTS = {5: SHORT, 64: LONG}


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each contestant over ``rounds`` rotating rounds."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def contestants(loaded, bridge, prompt: str) -> tuple[dict[str, Callable[[], object]], dict]:  # noqa: ANN001
    ids = tokenize(loaded, prompt, 64)
    adapter = loaded.adapter
    rec = record(loaded, ids)
    resid = rec.boundaries()[0::2]  # the lens boundaries, as trace_prompt reads them
    with torch.no_grad():
        normed = adapter.final_norm(resid).reshape(-1, resid.shape[-1]).contiguous()
    W_U = adapter.W_U.detach()
    batch = ids[None]

    @torch.no_grad()
    def bare() -> None:
        loaded.model(batch, use_cache=False)

    def matmul() -> torch.Tensor:
        return normed @ W_U.T

    def lens() -> dict[str, torch.Tensor]:
        return lens_statistics(adapter, resid, rec.logits, TraceOptions().top_k)

    def mechviz():  # noqa: ANN202
        return trace_prompt(loaded, prompt, TraceOptions())

    @torch.no_grad()
    def tl_lens() -> torch.Tensor:
        _, cache = bridge.run_with_cache(batch)
        stack = cache.accumulated_resid(apply_ln=True)  # [L + 1, batch, P, d_model]
        return bridge.unembed(stack).softmax(-1)

    fns = {
        "bare forward": bare,
        "bare matmul": matmul,
        "mechviz lens": lens,
        "mechviz trace": mechviz,
        "TL run_with_cache + lens": tl_lens,
    }
    shape = {"P": len(ids), "rows": normed.shape[0]}
    return fns, shape


def agreement(loaded, fns: dict[str, Callable[[], object]]) -> str:  # noqa: ANN001
    """Check TL's lens and mechviz's trace agree on what each boundary predicts."""
    trace = fns["mechviz trace"]()
    tl = fns["TL run_with_cache + lens"]()[:, 0]  # [31, P, V]
    tl_top = tl.argmax(-1)
    mv_top = torch.as_tensor(trace.lens.top_ids[..., 0])
    token, _ = trace.prediction
    final = int(tl_top[-1, -1])
    assert final == token, (final, token)
    same = (tl_top == mv_top).float().mean().item()
    text = loaded.tokenizer.decode([final])
    return f"next token {text!r} from both; lens top-1 equal at {same:.1%} of (boundary, position)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2", help="torch thread counts, e.g. 1,2")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", default="5,64", help="prompt lengths: 5 and/or 64")
    args = parser.parse_args()
    from transformer_lens.model_bridge import TransformerBridge

    loaded = load_model()
    # The bridge rewires the model it wraps, so it gets its own copy of the weights.
    other = load_model()
    bridge = TransformerBridge.boot_transformers(
        "HuggingFaceTB/SmolLM2-135M-Instruct", hf_model=other.model, tokenizer=other.tokenizer
    )
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for n in [int(t) for t in args.tokens.split(",")]:
            fns, shape = contestants(loaded, bridge, PROMPTS[n])
            assert shape["P"] == n, f"the {n}-token prompt has {shape['P']} tokens"
            for fn in fns.values():
                fn()  # warm-up
            check = agreement(loaded, fns)
            load = os.getloadavg()[0]
            med = interleaved(fns, args.rounds)
            load = max(load, os.getloadavg()[0])
            report(threads, n, shape["rows"], args.rounds, med, check, load)


def report(
    threads: int, n: int, rows: int, rounds: int, med: dict[str, float], check: str, load: float
) -> None:
    bare, mm, tl = med["bare forward"], med["bare matmul"], med["TL run_with_cache + lens"]
    print(
        f"\n{n} tokens, torch threads {threads}, medians of {rounds} interleaved rounds "
        f"(load average up to {load:.2f}); bare matmul [{rows}, 576] @ [576, 49152]"
    )
    print(f"{'contestant':<28}{'median s':>10}{'x bare fwd':>12}{'x matmul':>10}{'x TL':>8}")
    for name, s in med.items():
        print(f"{name:<28}{s:>10.4f}{s / bare:>12.2f}{s / mm:>10.2f}{s / tl:>8.2f}")
    print(f"lens / matmul {med['mechviz lens'] / mm:.2f} (target <= 1.3); ", end="")
    target = 0.8 if n <= 5 else 1.0
    print(f"mechviz trace / TL {med['mechviz trace'] / tl:.2f} (target <= {target})")
    print(f"agreement: {check}")


if __name__ == "__main__":
    main()
