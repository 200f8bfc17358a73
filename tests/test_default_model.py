"""The real default model (SmolLM2-135M-Instruct, from the local cache)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from mechviz.model.load import DEFAULT_MODEL, GGUF_SHA256
from mechviz.tracing.io import load_trace
from mechviz.tracing.record import TraceOptions, build_trace, record, tokenize

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"
PROB_ATOL = 1e-5


@pytest.fixture(scope="module")
def paris(default_model):  # noqa: ANN001, ANN201
    ids = tokenize(default_model, PROMPT, 64)
    rec = record(default_model, ids)
    trace = build_trace(default_model, PROMPT, rec, TraceOptions())
    return ids, rec, trace


def _cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env=dict(os.environ, COLUMNS="200"), timeout=timeout)


def test_default_model_provenance(default_model, paris) -> None:  # noqa: ANN001
    _, _, trace = paris
    m = trace.model
    assert (m.id, m.source, m.architecture) == (DEFAULT_MODEL, "default", "llama")
    assert m.file_sha256 == GGUF_SHA256
    assert (m.n_layers, m.n_heads, m.d_model, m.d_vocab) == (30, 9, 576, 49152)
    assert m.tied_embeddings is True and m.final_logit_softcap is None
    assert (m.dtype, m.attn_implementation) == ("float32", "eager")


def test_next_token_is_paris(default_model, paris) -> None:  # noqa: ANN001
    ids, rec, trace = paris
    assert default_model.tokenizer.decode([int(rec.logits[-1].argmax())]) == " Paris"
    token, prob = trace.prediction
    assert trace.token_text(token) == " Paris"
    assert prob > 0.3


def test_lens_at_last_boundary_is_the_model_output(default_model, paris) -> None:  # noqa: ANN001
    ids, rec, trace = paris
    with torch.no_grad():
        lens = default_model.adapter.logit_lens(rec.boundaries()[-1])
        independent = default_model.model(ids[None], use_cache=False).logits[0]
    p_lens = lens.double().softmax(-1)
    assert (p_lens - rec.logits.double().softmax(-1)).abs().max() <= PROB_ATOL
    assert (p_lens - independent.double().softmax(-1)).abs().max() <= PROB_ATOL


def test_kl_to_final_is_zero_at_the_last_layer_and_never_negative(paris) -> None:  # noqa: ANN001
    """KL(final || lens) is 0 where the lens is the output, and never below 0."""
    _, _, trace = paris
    assert abs(trace.lens.kl_to_final[-1]).max() <= 1e-4
    assert trace.lens.kl_to_final.min() >= -1e-4
    assert (trace.lens.entropy >= -1e-4).all()


def test_trace_lens_and_output_rows_are_the_model_distribution(paris) -> None:  # noqa: ANN001
    """Both stored rows hold the model's own probabilities to 1e-5 (docs/trace-format.md).

    The reference is the float64 softmax of the model's logits: with 49152 tokens a
    float32 softmax on the CPU is only good to about 2e-5.
    """
    _, rec, trace = paris
    truth = rec.logits.double().softmax(-1)  # [P, V]
    assert (trace.lens.top_ids[-1] == trace.output.top_ids).all()
    ids = torch.as_tensor(trace.output.top_ids)
    expected = truth.gather(-1, ids).numpy()
    assert abs(trace.lens.top_probs[-1] - expected).max() <= PROB_ATOL
    assert abs(trace.output.top_probs - expected).max() <= PROB_ATOL
    assert abs(trace.lens.top_probs[-1] - trace.output.top_probs).max() <= PROB_ATOL


def test_lens_normalises_each_boundary_by_itself(default_model, paris) -> None:  # noqa: ANN001
    _, rec, _ = paris
    model = default_model.model
    resid = rec.boundaries()
    eps = model.config.rms_norm_eps
    w = model.model.norm.weight.detach().double()
    W_U = model.lm_head.weight.detach().double()
    for b in (0, 15, 31, resid.shape[0] - 1):
        x = resid[b].double()
        ref = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w) @ W_U.T
        with torch.no_grad():
            lens = default_model.adapter.logit_lens(resid[b])
        assert (lens.double().softmax(-1) - ref.softmax(-1)).abs().max() <= PROB_ATOL, b


def test_embed_lens_points_at_the_input_token(default_model, paris) -> None:  # noqa: ANN001
    ids, _, trace = paris
    top = trace.lens.top_ids[0]  # [P, K] at `embed`
    ids = ids.tolist()
    assert all(token in top[p, :5].tolist() for p, token in enumerate(ids)), top[:, :5]
    # " France" reads as "<filename>" first (quantised weights), France second
    assert sum(int(top[p, 0]) == token for p, token in enumerate(ids)) >= len(ids) - 1


def test_attention_on_the_real_model(paris) -> None:  # noqa: ANN001
    _, _, trace = paris
    pattern = torch.as_tensor(trace.attention.pattern)
    assert pattern.shape == (30, 9, 5, 5)
    assert torch.allclose(pattern.sum(-1), torch.ones(30, 9, 5), atol=1e-5, rtol=0)
    assert (pattern[..., torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)] == 0).all()


def test_cli_trace_is_byte_identical_small_and_fast_to_load(tmp_path: Path) -> None:
    outputs = []
    for name in ("first.json", "second.json"):
        result = _cli("trace", PROMPT, "-o", name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Paris" in result.stderr
        outputs.append(tmp_path / name)
    first, second = (p.read_bytes() for p in outputs)
    assert first == second
    assert len(first) <= 2 * 1024 * 1024
    start = time.perf_counter()
    trace = load_trace(outputs[0])
    elapsed = time.perf_counter() - start
    print(f"trace file {len(first) / 1024:.0f} KiB, load_trace {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0  # about 0.05 s; the budget is 0.2 s, noisy machines get slack
    assert trace.token_text(trace.prediction[0]) == " Paris"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.json", "second.json"]

    result = _cli("inspect", "first.json", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Logit lens" in result.stdout
    assert "Paris" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# --- direct effects of heads: the indirect-object prompt -------------------------------

IOI = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture(scope="module")
def mary(default_model):  # noqa: ANN001, ANN201
    """The IOI prompt traced, and our own hooks' view of the same forward pass."""
    model = default_model.model
    ids = tokenize(default_model, IOI, 64)
    trace = build_trace(default_model, IOI, record(default_model, ids), TraceOptions())
    got: dict = {"attn": [], "mlp": []}

    def keep(kind: str):  # noqa: ANN202
        def hook(module, args, output):  # noqa: ANN001, ANN202
            got[kind].append((output[0] if isinstance(output, tuple) else output)[0, -1].double())

        return hook

    def final_in(module, args):  # noqa: ANN001, ANN202
        got["final_in"] = args[0][0, -1].double()

    def embed(module, args, output):  # noqa: ANN001, ANN202
        got["embed"] = output[0, -1].double()

    handles = [model.model.norm.register_forward_pre_hook(final_in)]
    handles.append(model.model.embed_tokens.register_forward_hook(embed))
    for layer in model.model.layers:
        handles.append(layer.self_attn.register_forward_hook(keep("attn")))
        handles.append(layer.mlp.register_forward_hook(keep("mlp")))
    try:
        with torch.no_grad():
            got["logits"] = model(ids[None], use_cache=False).logits[0, -1].double()
    finally:
        for h in handles:
            h.remove()
    x = got["final_in"]
    eps = model.config.rms_norm_eps
    w = model.model.norm.weight.detach().double()
    u = model.lm_head.weight.detach()[trace.heads.answer].double()
    got["d"] = w * torch.rsqrt(x.pow(2).mean() + eps) * u  # RMSNorm frozen at x, onto W_U[answer]
    return trace, got


def test_ioi_answer_is_mary(mary) -> None:  # noqa: ANN001
    trace, _ = mary
    assert trace.token_text(trace.heads.answer) == " Mary"
    assert trace.heads.answer == trace.prediction[0]
    assert trace.heads.position == trace.n_positions - 1
    assert trace.heads.direct.shape == (30, 9)
    assert (trace.heads.bias == 0).all()  # Llama's W_O has no bias


def test_ioi_heads_sum_to_each_layers_attention_readout(mary) -> None:  # noqa: ANN001
    trace, got = mary
    d = got["d"]
    errors = []
    for layer in range(30):
        want = (got["attn"][layer] @ d).item()
        have = float(trace.heads.direct[layer].astype("float64").sum() + trace.heads.bias[layer])
        errors.append(abs(have - want) / max(abs(want), 1e-12))
    print(f"max relative error over 30 layers: {max(errors):.1e}")
    assert max(errors) <= 1e-4, errors


def test_ioi_direct_effects_decompose_the_answer_logit(mary) -> None:  # noqa: ANN001
    """embed + attention (as heads) + MLPs, each through the frozen norm, is the real logit."""
    trace, got = mary
    d = got["d"]
    real = got["logits"][trace.heads.answer].item()
    mlp = sum((m @ d).item() for m in got["mlp"])
    attn = sum((a @ d).item() for a in got["attn"])
    heads = float(trace.heads.direct.astype("float64").sum() + trace.heads.bias.sum())
    for total in ((got["embed"] @ d).item() + attn + mlp, (got["embed"] @ d).item() + heads + mlp):
        print(f"decomposition {total:.5f}, logit {real:.5f}")
        assert abs(total - real) <= 1e-4 * abs(real)


def test_ioi_top_direct_heads_are_name_movers(mary) -> None:  # noqa: ANN001
    """Most of the heads that raise ' Mary' most look from ' to' at ' Mary'."""
    from mechviz.analyses.heads import top_heads

    trace, _ = mary
    rows = top_heads(trace, "direct", n=5)
    assert rows[0].score == trace.heads.direct.max()
    movers = [row for row in rows if row.key_text == " Mary"]
    assert len(movers) >= 3, rows
