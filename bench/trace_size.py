"""Trace file sizes and load times: the default model, and larger models' shapes.

Usage: python bench/trace_size.py [--repeat 7]

1. Real traces of the default model at 5 ("The capital of France is"), 10, 16
   and 64 tokens: file size (schema v4, packed), the size of the same trace
   without the schema-4 sections ``whole`` and ``neurons`` (what schema 3
   wrote: the dict built, those two sections dropped), what each of them
   adds, the size as schema-v1-style nested lists, and the median time of
   ``load_trace`` (read, parse, validate) over runs.
2. Larger models by shape (Llama-2-7B: 32 layers x 32 heads, d_model 4096,
   d_mlp 11008; Llama-2-70B: 80 x 64, 8192, 28672), at 16 and 64 tokens, with
   every array filled with synthetic values of the right kind (causal softmax
   rows for attention, Gaussian activations): random values compress worse
   than real ones, so these are upper bounds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mechviz.tracing.io import dumps, load_trace, save_trace
from mechviz.tracing.schema import (
    SCHEMA_VERSION,
    Attention,
    Blocks,
    Embedding,
    Lens,
    Mlp,
    ModelInfo,
    Neurons,
    Output,
    Resid,
    Tokens,
    Trace,
    Whole,
    boundary_labels,
)

TEXT = (
    "In the quiet village by the river, the old baker woke before dawn to light the ovens. "
    "He had made bread for forty years, and every morning the smell of warm loaves drifted "
    "down the narrow streets, waking the children and calling the farmers to market. His "
    "daughter, who had moved to the city to study medicine, came home each summer and "
    "helped him knead the dough while they talked about her patients and his customers."
)
SHAPES = {
    "Llama-2-7B": dict(n_layers=32, n_heads=32, d_model=4096, d_mlp=11008, d_vocab=32000),
    "Llama-2-70B": dict(n_layers=80, n_heads=64, d_model=8192, d_mlp=28672, d_vocab=32000),
}


def prompt_of(tokenizer, n_tokens: int) -> str:  # noqa: ANN001
    """The longest prefix of TEXT of exactly ``n_tokens`` tokens (at a word end if possible)."""
    count = lambda text: len(tokenizer(text)["input_ids"])  # noqa: E731
    ends = [i for i in range(1, len(TEXT) + 1) if i == len(TEXT) or TEXT[i] == " "]
    for candidates in (ends, range(1, len(TEXT) + 1)):
        exact = [i for i in candidates if count(TEXT[:i]) == n_tokens]
        if exact:
            return TEXT[: exact[-1]]
    raise ValueError(f"no prefix of TEXT is {n_tokens} tokens long")


def median_load(path: Path, repeat: int) -> float:
    load_trace(path)  # first load imports jsonschema and warms the page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        load_trace(path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_v4(shape: dict, P: int, width: int = 1000, J: int = 32) -> dict:
    """The schema-4 sections of a synthetic trace: Gaussian activations, ``J`` stored neurons."""
    rng = np.random.default_rng(1)
    L, D, F = shape["n_layers"], shape["d_model"], shape["d_mlp"]
    per = -(-width // P)
    f = np.float32
    peak = np.sort(rng.normal(size=(L, F, 2)), axis=-1)[..., ::-1] * 2
    ids = np.stack([rng.choice(F, J, replace=False) for _ in range(L)])
    return dict(
        whole=Whole(
            width=width,
            resid=rng.normal(size=(L + 1, P, min(D, per))).astype(f) * 3,
            mlp=rng.normal(size=(L, P, min(F, per))).astype(f),
        ),
        neurons=Neurons(
            above=3.0,
            below=0.0,
            relative=False,
            std=np.ones(L, f),
            peak=peak.astype(f),
            count=((peak[..., 0] > 3) | (peak[..., 1] < 0)).sum(-1),
            ids=ids,
            values=rng.normal(size=(L, J, P)).astype(f),
        ),
    )


def synthetic(shape: dict, P: int, K: int = 10, R: int = 64, S: int = 16, N: int = 16) -> Trace:
    rng = np.random.default_rng(0)
    L, H, V = shape["n_layers"], shape["n_heads"], shape["d_vocab"]
    B, Y = 2 * L + 1, L + 1
    f = np.float32
    logits = rng.normal(size=(L, H, P, P)) * 2
    logits[..., np.triu(np.ones((P, P), bool), 1)] = -np.inf
    pattern = np.exp(logits - logits.max(-1, keepdims=True))
    pattern /= pattern.sum(-1, keepdims=True)
    probs = np.sort(rng.dirichlet(np.ones(K) * 0.3, size=(Y, P)), axis=-1)[..., ::-1] * 0.9
    ids = np.stack([rng.choice(V, K, replace=False) for _ in range(Y * P)]).reshape(Y, P, K)
    out_ids = ids[-1]
    used = np.unique(np.concatenate([ids.ravel(), np.arange(P)]))
    model = ModelInfo(
        id="synthetic", source="memory", file_sha256=None, revision=None,
        architecture="llama", dtype="float32", attn_implementation="eager",
        tied_embeddings=False, final_logit_softcap=None, unembedding_hash="0" * 64, **shape,
    )  # fmt: skip
    return Trace(
        schema_version=SCHEMA_VERSION,
        mechviz_version="bench",
        model=model,
        prompt="x" * P,
        vocab={int(i): f"tok{i}" for i in used},
        tokens=Tokens(
            ids=np.arange(P), text=["x"] * P, offsets=np.stack([np.arange(P), np.arange(P) + 1], 1)
        ),
        resid=Resid(
            labels=boundary_labels(L),
            norm=np.abs(rng.normal(size=(B, P))).astype(f) * 50,
            pooled=rng.normal(size=(B, P, R)).astype(f) * 3,
            sample_dims=np.arange(S),
            sample=rng.normal(size=(B, P, S)).astype(f),
            full=None,
        ),
        blocks=Blocks(
            attn_out_norm=np.abs(rng.normal(size=(L, P))).astype(f),
            mlp_out_norm=np.abs(rng.normal(size=(L, P))).astype(f),
        ),
        attention=Attention(pattern=pattern.astype(f)),
        mlp=Mlp(
            top_neurons=np.stack([rng.choice(shape["d_mlp"], N, replace=False) for _ in range(L)]),
            top_values=rng.normal(size=(L, N, P)).astype(f),
            pooled=rng.normal(size=(L, P, R)).astype(f),
        ),
        embedding=Embedding(
            W_E_sample=rng.normal(size=(P, S)).astype(f),
            W_E_norm=np.ones(P, f),
            cosine=np.eye(P, dtype=f),
        ),
        lens=Lens(
            labels=boundary_labels(L)[0::2],
            top_ids=ids,
            top_probs=probs.astype(f),
            entropy=np.ones((Y, P), f),
            kl_to_final=np.ones((Y, P), f),
            final_token_rank=np.zeros((Y, P), np.int64),
            final_token_prob=probs[..., 0].astype(f),
        ),
        output=Output(top_ids=out_ids, top_probs=probs[-1].astype(f), entropy=np.ones(P, f)),
    )


def without_v4(trace: Trace) -> Trace:
    """The same trace without the schema-4 sections (what schema 3 wrote)."""
    return dataclasses.replace(trace, schema_version=3, whole=None, neurons=None)


def section_bytes(trace: Trace, name: str) -> int:
    """Bytes one section adds to the packed JSON file."""
    return len(json.dumps({name: trace.to_dict()[name]}, separators=(",", ":")).encode())


def packed_size(trace: Trace) -> int:
    return len(dumps(trace).encode())


def v4_sizes(shape: dict, P: int) -> tuple[int, int]:
    """Packed bytes of synthetic ``whole`` and ``neurons`` sections (no validation)."""
    from mechviz.tracing.schema import _to_json

    out = []
    for section in synthetic_v4(shape, P).values():
        body = {
            fld.name: _to_json(getattr(section, fld.name), fld, True)
            for fld in dataclasses.fields(section)
        }
        out.append(len(json.dumps(body, separators=(",", ":")).encode()))
    return out[0], out[1]


def plain_size(trace: Trace) -> int:
    """Bytes of the same trace with every array a nested list (the schema v1 layout)."""
    data = trace.to_dict(packed=False)
    return len(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from mechviz.model.load import load_model
    from mechviz.tracing.record import TraceOptions, trace_prompt

    loaded = load_model()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (5, 10, 16, 64):
            prompt = "The capital of France is" if n == 5 else prompt_of(loaded.tokenizer, n)
            trace = trace_prompt(loaded, prompt, TraceOptions())
            path = save_trace(trace, Path(tmp) / f"{n}.json")
            assert path.stat().st_size == packed_size(trace)
            rows.append(
                (f"{loaded.id}, {trace.n_positions} tokens", path.stat().st_size,
                 packed_size(without_v4(trace)), section_bytes(trace, "whole"),
                 section_bytes(trace, "neurons"), plain_size(without_v4(trace)),
                 median_load(path, args.repeat))
            )  # fmt: skip
        for name, shape in SHAPES.items():
            for P in (16, 64):
                trace = synthetic(shape, P)
                path = Path(tmp) / f"{name}-{P}.json"
                path.write_text(dumps(trace))
                whole, neurons = v4_sizes(shape, P)
                L, H = shape["n_layers"], shape["n_heads"]
                rows.append(
                    (f"{name} shape ({L} x {H}), {P} tokens, synthetic",
                     path.stat().st_size + whole + neurons, path.stat().st_size, whole, neurons,
                     plain_size(trace), median_load(path, args.repeat))
                )  # fmt: skip
    print(
        f"schema version {SCHEMA_VERSION}; v3 = the same trace without 'whole' and 'neurons'; "
        f"load = median of {args.repeat} load_trace calls (synthetic: of the v3 part)"
    )
    print(
        f"{'trace':<52}{'v4 MB':>8}{'v3 MB':>8}{'whole KB':>10}{'neurons KB':>12}"
        f"{'v3 lists MB':>13}{'load s':>8}"
    )
    for name, size, v3, whole, neurons, plain, load_s in rows:
        print(
            f"{name:<52}{size / 1e6:>8.2f}{v3 / 1e6:>8.2f}{whole / 1e3:>10.0f}"
            f"{neurons / 1e3:>12.0f}{plain / 1e6:>13.2f}{load_s:>8.3f}"
        )


if __name__ == "__main__":
    main()
