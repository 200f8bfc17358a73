"""Time the trace of the default model and prompt, stage by stage, in one run.

Usage: python bench/trace_bench.py [--repeat 5] [--prompt TEXT] [--threads N]
       [--clean TEXT --corrupt TEXT]
Prints model load (from cache), a bare forward pass, the logit lens and its
reductions alone (``lens_statistics``, every boundary: ``lens`` and
``lens_mid``), the trace's compute with the model loaded, the JSON write, their
ratio, and `mechviz trace` end to end. Then activation patching of a 10-token
pair (issue 11): the residual stream alone, (L + 1) x 10 sites (target: at most
40 bare forward passes of the clean prompt), and every site (residual, heads,
MLPs). The bare forward pass, the lens, the trace compute and the patching are
timed in interleaved rounds (each round runs each once, in a rotating order),
so a busy spell of a shared machine hits them alike. ``--threads`` fixes
torch's thread count (default: torch's own); on a busy two-core machine two
threads slow everything unevenly.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mechviz.interventions.run import patch
from mechviz.model.load import load_model
from mechviz.tracing.io import save_trace
from mechviz.tracing.record import TraceOptions, lens_statistics, record, tokenize, trace_prompt


def best(fn, repeat: int) -> tuple[float, float]:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def interleaved(fns: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """(best, median) seconds of each function over ``repeat`` rotating rounds."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def fresh_process_load() -> tuple[float, float]:
    """Seconds to import torch and transformers, and to import and load, in a new process.

    The first ``from_pretrained`` in a process also imports much of transformers
    lazily; ``model load from cache`` above is measured after that.
    """
    code = (
        "import time; t = time.perf_counter()\n"
        "import torch, transformers\n"
        "from transformers import AutoModelForCausalLM\n"
        "i = time.perf_counter() - t\n"
        "from mechviz.model.load import load_model; load_model()\n"
        "print(i, time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    imports_s, total_s = map(float, out.stdout.split())
    return imports_s, total_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clean", default="When Mary and John went to the store, John gave")
    parser.add_argument("--corrupt", default="When Mary and John went to the store, Mary gave")
    # The worst case for patching: the prompts differ at their first token, so no
    # residual site but the embeddings of unchanged tokens is equal in both runs.
    parser.add_argument("--early-clean", default="Mary and John went to the store, then John gave")
    parser.add_argument(
        "--early-corrupt", default="Paul and John went to the store, then John gave"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load_model(progress=True)  # make sure the cache is warm
    start = time.perf_counter()
    loaded = load_model()
    load_s = time.perf_counter() - start

    ids = tokenize(loaded, args.prompt, 64)[None]

    def bare() -> None:
        with torch.no_grad():
            loaded.model(ids, use_cache=False)

    rec = record(loaded, ids[0])
    resid = rec.boundaries()
    clean, corrupt = (tokenize(loaded, text, 64) for text in (args.clean, args.corrupt))
    early = [tokenize(loaded, text, 64) for text in (args.early_clean, args.early_corrupt)]

    def bare_clean() -> None:
        with torch.no_grad():
            loaded.model(clean[None], use_cache=False)

    fns = {
        "bare": bare,
        "lens": lambda: lens_statistics(loaded.adapter, resid, rec.logits, TraceOptions().top_k),
        "trace": lambda: trace_prompt(loaded, args.prompt, TraceOptions()),
        "bare clean": bare_clean,
        "patch resid": lambda: patch(loaded, clean, corrupt, kinds=("resid",)),
        "patch all": lambda: patch(loaded, clean, corrupt),
        "patch early": lambda: patch(loaded, *early, kinds=("resid",)),
    }
    for fn in fns.values():
        fn()  # warm-up
    trace = trace_prompt(loaded, args.prompt, TraceOptions())
    timed = interleaved(fns, args.repeat)
    bare_s, lens_s, trace_s = timed["bare"], timed["lens"], timed["trace"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "trace.json"
        write_s = best(lambda: save_trace(trace, out), args.repeat)
        size = out.stat().st_size
        from mechviz.tracing.io import load_trace

        read_s = best(lambda: load_trace(out), args.repeat)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "mechviz", "trace", args.prompt, "-o", str(out)],
            check=True,
            capture_output=True,
        )
        e2e_s = time.perf_counter() - start

    print(
        f"prompt: {args.prompt!r} ({ids.shape[1]} tokens), torch threads: {torch.get_num_threads()}"
    )
    print(f"{'stage':<34}{'best s':>9}{'median s':>10}")
    print(f"{'model load from cache':<34}{load_s:>9.3f}{'':>10}")
    for name, (b, m) in [
        ("bare forward pass", bare_s),
        ("lens + reductions", lens_s),
        ("trace compute (model loaded)", trace_s),
        ("JSON write", write_s),
        ("JSON load + validate", read_s),
    ]:
        print(f"{name:<34}{b:>9.3f}{m:>10.3f}")
    print(f"{'mechviz trace, end to end':<34}{e2e_s:>9.3f}")
    imports_s, fresh_s = fresh_process_load()
    print(f"{'fresh process: import torch+tf':<34}{imports_s:>9.3f}")
    print(f"{'fresh process: imports + load':<34}{fresh_s:>9.3f}")
    print(f"ratio trace / bare forward (median): {trace_s[1] / bare_s[1]:.2f}x")
    print(f"ratio lens / bare forward (median): {lens_s[1] / bare_s[1]:.2f}x")
    L = loaded.adapter.n_layers
    bare_c, resid_p, all_p = timed["bare clean"], timed["patch resid"], timed["patch all"]
    print(f"patching {args.clean!r} -> {args.corrupt!r} ({len(clean)} tokens):")
    print(f"{'bare forward pass (clean)':<34}{bare_c[0]:>9.3f}{bare_c[1]:>10.3f}")
    print(
        f"{f'residual patching, {(L + 1) * len(clean)} sites':<34}{resid_p[0]:>9.3f}"
        f"{resid_p[1]:>10.3f}  = {resid_p[1] / bare_c[1]:.1f} bare passes (target <= 40)"
    )
    print(
        f"{'every site (resid, heads, MLPs)':<34}{all_p[0]:>9.3f}{all_p[1]:>10.3f}"
        f"  = {all_p[1] / bare_c[1]:.1f} bare passes"
    )
    early_p = timed["patch early"]
    print(
        f"{f'residual, differing at token 0 ({len(early[0])})':<34}{early_p[0]:>9.3f}"
        f"{early_p[1]:>10.3f}  = {early_p[1] / bare_c[1]:.1f} bare passes"
    )
    print(f"trace size: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
