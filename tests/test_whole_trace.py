"""The schema-4 sections on tiny random models of every family: ``whole`` and ``neurons``.

The neuron's activation is computed here by hand from each family's MLP weights
(the input of the down projection), the residual rows from the model's own
hidden states, the pooling and the selection rule with NumPy; the trace must
agree with all of them. Also: validation of the new sections.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import FAMILIES, Tiny, make_tiny

from mechviz.errors import MechvizError
from mechviz.tracing.io import load_trace
from mechviz.tracing.record import TraceOptions, build_trace
from mechviz.tracing.schema import Trace

GATED = {"llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text"}
F16 = 2**-11  # float16's relative rounding


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for name, m in model.named_modules() if name.endswith(".mlp")]


def _by_hand(family: str, mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The down projection's input from the MLP's input ``x`` ``[P, d_model]`` and its weights."""
    if family in GATED:
        gate = F.linear(x, mlp.gate_proj.weight, mlp.gate_proj.bias)
        up = F.linear(x, mlp.up_proj.weight, mlp.up_proj.bias)
        return mlp.act_fn(gate) * up
    if family == "phi3":  # one fused matrix: gate rows first, then up
        gate, up = F.linear(x, mlp.gate_up_proj.weight).chunk(2, dim=-1)
        return mlp.activation_fn(gate) * up
    if family == "gpt2":  # Conv1D: weight is [in, out]
        return mlp.act(x @ mlp.c_fc.weight + mlp.c_fc.bias)
    if family == "gpt_neox":
        return mlp.act(F.linear(x, mlp.dense_h_to_4h.weight, mlp.dense_h_to_4h.bias))
    if family == "phi":
        return mlp.activation_fn(F.linear(x, mlp.fc1.weight, mlp.fc1.bias))
    raise AssertionError(family)


@torch.no_grad()
def _hand(tiny: Tiny) -> dict[str, np.ndarray]:
    """Activations ``[L, P, F]`` by hand, and the ``L + 1`` residual rows ``[Q, P, D]``."""
    model = tiny.loaded.model
    mlps = _blocks(model)
    layers = tiny.loaded.adapter.layers
    inputs: dict[int, torch.Tensor] = {}
    posts: dict[int, torch.Tensor] = {}
    handles = []
    for i, mlp in enumerate(mlps):
        handles.append(
            mlp.register_forward_pre_hook(
                lambda m, a, kw, i=i: inputs.__setitem__(i, (a[0] if a else kw["x"])[0]),
                with_kwargs=True,
            )
        )
    for i, block in enumerate(layers):
        handles.append(
            block.register_forward_hook(
                lambda m, a, o, i=i: posts.__setitem__(i, (o[0] if isinstance(o, tuple) else o)[0])
            )
        )
    try:
        out = model(tiny.ids[None], output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    acts = torch.stack([_by_hand(tiny.family, mlps[i], inputs[i]) for i in range(len(mlps))])
    rows = torch.stack([out.hidden_states[0][0]] + [posts[i] for i in range(len(layers))])
    return {"act": acts.float().numpy(), "rows": rows.float().numpy()}


def _pool(x: np.ndarray, width: int) -> np.ndarray:
    """Max-|x| pooling in NumPy: column c takes [floor(c D / w), floor((c + 1) D / w))."""
    D = x.shape[-1]
    width = min(width, D)
    out = np.empty(x.shape[:-1] + (width,), dtype=x.dtype)
    for c in range(width):
        group = x[..., c * D // width : (c + 1) * D // width]
        pick = np.abs(group).argmax(axis=-1)[..., None]
        out[..., c] = np.take_along_axis(group, pick, axis=-1)[..., 0]
    return out


@pytest.fixture(scope="module")
def hand(tiny: Tiny) -> dict[str, np.ndarray]:
    return _hand(tiny)


def test_tiny_fixture_covers_every_family() -> None:
    assert len(FAMILIES) == 10 and {"gpt2", "gpt_neox", "phi", "phi3"} < set(FAMILIES)


def test_neuron_is_the_down_projection_input(tiny: Tiny, hand: dict) -> None:
    act = hand["act"]
    L, P, Fm = act.shape
    assert Fm == tiny.trace.model.d_mlp and L == tiny.trace.n_layers
    recorded = np.stack([a.numpy() for a in tiny.rec.mlp_act])
    np.testing.assert_allclose(recorded, act, rtol=1e-5, atol=1e-5)
    n = tiny.trace.neurons
    for layer in range(L):
        for k, neuron in enumerate(n.ids[layer]):
            if neuron >= 0:
                np.testing.assert_allclose(n.values[layer, k], act[layer, :, neuron], atol=1e-5)


def test_peak_is_max_and_min_over_positions(tiny: Tiny, hand: dict) -> None:
    act = hand["act"]
    peak = tiny.trace.neurons.peak
    assert peak.shape == (act.shape[0], act.shape[2], 2)
    for i, reduce in enumerate((np.max, np.min)):
        want = reduce(act, axis=1)
        np.testing.assert_allclose(peak[..., i], want, rtol=F16, atol=1e-5)


def test_whole_rows_pool_the_embedding_and_each_post(tiny: Tiny, hand: dict) -> None:
    whole = tiny.trace.whole
    rows, act = hand["rows"], hand["act"]
    Q, P, D = rows.shape
    per_token = -(-whole.width // P)
    assert whole.width == 1000 and Q == tiny.trace.n_layers + 1
    assert whole.resid.shape == (Q, P, min(D, per_token))
    assert whole.mlp.shape == (act.shape[0], P, min(act.shape[2], per_token))
    # whole.resid[0] pools the embedding (hidden state 0), whole.resid[q] pools {q-1}_post
    np.testing.assert_allclose(whole.resid[0], _pool(rows[0], per_token), rtol=F16, atol=1e-4)
    for q in range(1, Q):
        np.testing.assert_allclose(
            whole.resid[q], _pool(rows[q], per_token), rtol=F16, atol=1e-4, err_msg=f"row {q}"
        )
    np.testing.assert_allclose(whole.mlp, _pool(act, per_token), rtol=F16, atol=1e-4)


@pytest.fixture(scope="module")
def llama() -> Tiny:
    return make_tiny("llama")


@pytest.mark.parametrize("width", [7, 52, 100, 5000])
def test_width_sets_values_per_token(llama: Tiny, width: int) -> None:
    trace = build_trace(llama.loaded, llama.trace.prompt, llama.rec, TraceOptions(width=width))
    P = trace.n_positions
    per = -(-width // P)  # 100 px over 26 tokens: 4 of 64 per token, groups of 16
    assert trace.whole.width == width
    assert trace.whole.resid.shape[-1] == min(trace.model.d_model, per)
    assert trace.whole.mlp.shape[-1] == min(trace.model.d_mlp, per)
    rows = _hand(llama)["rows"]
    np.testing.assert_allclose(trace.whole.resid, _pool(rows, per), rtol=F16, atol=1e-4)


def _numpy_count(act: np.ndarray, above: float, below: float, relative: bool) -> tuple:
    """Count per layer from full activations; and neurons within float16 rounding of a threshold."""
    L = act.shape[0]
    std = act.reshape(L, -1).astype(np.float64).std(axis=-1)
    scale = std if relative else np.ones(L)
    hi, lo = above * scale, below * scale
    top, bottom = act.max(axis=1), act.min(axis=1)
    count = ((top > hi[:, None]) | (bottom < lo[:, None])).sum(-1)
    close = lambda v, t: np.abs(v - t[:, None]) <= 2 * F16 * np.abs(v) + 1e-6  # noqa: E731
    borderline = (close(top, hi) | close(bottom, lo)).sum(-1)
    return count, borderline


@pytest.mark.parametrize("rule", ["seed", "absolute", "relative"])
def test_count_follows_the_rule(tiny: Tiny, hand: dict, rule: str) -> None:
    act = hand["act"]
    if rule == "seed":
        above, below, relative = 3.0, 0.0, False
    elif rule == "absolute":  # thresholds inside this model's range, so some neurons pass
        above = round(float(np.quantile(act.max(axis=1), 0.7)), 3)
        below = round(float(np.quantile(act.min(axis=1), 0.2)), 3)
        relative = False
    else:
        above, below, relative = 2.5, -1.5, True
    options = TraceOptions(neuron_above=above, neuron_below=below, neuron_relative=relative)
    trace = build_trace(tiny.loaded, tiny.trace.prompt, tiny.rec, options)
    n = trace.neurons
    assert (n.above, n.below, n.relative) == (above, below, relative)
    want, borderline = _numpy_count(act, above, below, relative)
    assert (np.abs(n.count - want) <= borderline).all(), (n.count, want, borderline)
    assert (n.count[borderline == 0] == want[borderline == 0]).all()
    L, Fm = n.peak.shape[:2]
    np.testing.assert_allclose(n.std, act.reshape(L, -1).std(-1), rtol=1e-5)
    if rule != "seed":  # these rules select some neurons, not all
        assert ((n.count > 0) & (n.count < Fm)).any(), n.count


def test_stored_neurons_are_the_most_extreme_selected(tiny: Tiny, hand: dict) -> None:
    act = hand["act"]
    above = round(float(np.quantile(act.max(axis=1), 0.9)), 3)
    below = round(float(np.quantile(act.min(axis=1), 0.05)), 3)
    options = TraceOptions(neuron_above=above, neuron_below=below, neuron_cap=8)
    n = build_trace(tiny.loaded, tiny.trace.prompt, tiny.rec, options).neurons
    score = np.abs(n.peak).max(-1)  # [L, F]
    selected = (n.peak[..., 0] > above) | (n.peak[..., 1] < below)
    assert (n.count > 8).any() and (n.count < act.shape[2]).all()  # the cap bites, not all pass
    for layer in range(act.shape[0]):
        ids = n.ids[layer]
        kept = ids[ids >= 0]
        assert len(kept) == min(8, int(n.count[layer]))
        assert (ids[len(kept) :] == -1).all() and (n.values[layer, len(kept) :] == 0).all()
        assert selected[layer, kept].all()
        assert (np.diff(score[layer, kept]) <= 0).all()  # most extreme first
        rest = np.setdiff1d(np.flatnonzero(selected[layer]), kept)
        if rest.size:
            assert score[layer, rest].max() <= score[layer, kept].min()


def test_new_sections_survive_a_round_trip(tiny_trace: Trace, tmp_path: Path) -> None:
    path = tiny_trace.save(tmp_path / "t.json")
    back = load_trace(path)
    assert back.whole.width == tiny_trace.whole.width
    np.testing.assert_array_equal(back.neurons.peak, tiny_trace.neurons.peak)  # stored as decided
    np.testing.assert_array_equal(back.neurons.std, tiny_trace.neurons.std)
    np.testing.assert_array_equal(back.neurons.count, tiny_trace.neurons.count)
    np.testing.assert_array_equal(back.neurons.ids, tiny_trace.neurons.ids)


# --- validation of the new sections ---------------------------------------------------------


def _bad(tiny_trace: Trace, tmp_path: Path, change) -> str:  # type: ignore[no-untyped-def]
    data = tiny_trace.to_dict(packed=False)
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(MechvizError) as info:
        load_trace(path)
    return str(info.value)


def _edit(field: str, edit):  # type: ignore[no-untyped-def]
    def change(data: dict) -> None:
        section, name = field.split(".")
        data[section][name] = edit(data[section][name])

    return change


def _put(field: str, index: tuple, value):  # type: ignore[no-untyped-def]
    def edit(x):  # type: ignore[no-untyped-def]
        arr = np.array(x, dtype=object)
        arr[index] = value
        return arr.tolist()

    return _edit(field, edit)


INVALID = {
    "width_zero": (_edit("whole.width", lambda _: 0), ["'whole.width'"]),
    "resid_wrong_width": (
        _edit("whole.resid", lambda x: [[row[:-1] for row in q] for q in x]),
        ["'whole.resid'", "shape"],
    ),
    "mlp_missing_layer": (_edit("whole.mlp", lambda x: x[:-1]), ["'whole.mlp'", "shape"]),
    "peak_not_finite": (_put("neurons.peak", (0, 0, 0), 1e39), ["'neurons.peak'", "finite"]),
    "peak_max_below_min": (
        _put("neurons.peak", (0, 0, 0), -1e6),
        ["'neurons.peak'"],
    ),
    "count_above_d_mlp": (_put("neurons.count", (0,), 10**6), ["'neurons.count'", "d_mlp"]),
    "count_wrong": (_edit("neurons.count", lambda x: [c - 1 for c in x]), ["'neurons.count'"]),
    "id_out_of_range": (_put("neurons.ids", (0, 0), 10**6), ["'neurons.ids'", "-1"]),
    "id_below_minus_one": (_put("neurons.ids", (0, 0), -2), ["'neurons.ids'", "-1"]),
    "above_not_above_below": (
        _edit("neurons.above", lambda _: -1.0),
        ["'neurons.above'", "above > below"],
    ),
    "above_is_a_string": (_edit("neurons.above", lambda _: "3"), ["'neurons.above'"]),
    "relative_not_bool": (_edit("neurons.relative", lambda _: 1), ["'neurons.relative'"]),
    "std_negative": (_put("neurons.std", (0,), -1.0), ["'neurons.std'"]),
    "values_shape": (_edit("neurons.values", lambda x: x[:-1]), ["'neurons.values'", "shape"]),
    "unknown_key": (lambda d: d["whole"].update(extra=1), ["'whole'", "'extra'"]),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_new_sections_are_refused(tiny_trace: Trace, tmp_path: Path, case: str) -> None:
    change, words = INVALID[case]
    message = _bad(tiny_trace, tmp_path, change)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_valid_trace_passes_and_pads_are_checked(tiny_trace: Trace) -> None:
    n = tiny_trace.neurons
    assert n.ids.shape == (tiny_trace.n_layers, 32)
    ids = np.array(n.ids)
    stored = int((ids[0] >= 0).sum())
    if stored < ids.shape[1]:  # a value where the id is -1
        values = np.array(n.values)
        values[0, stored, 0] = 1.0
        with pytest.raises(MechvizError, match="0 where"):
            dataclasses.replace(tiny_trace, neurons=dataclasses.replace(n, values=values))
    with pytest.raises(MechvizError, match="count"):
        dataclasses.replace(tiny_trace, neurons=dataclasses.replace(n, count=n.count * 0 + 1))
