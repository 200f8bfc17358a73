"""mechviz.tracing.neurons (select, activation_class) and the `mechviz neurons` terminal view."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rich.console import Console

from mechviz.cli.main import main
from mechviz.cli.report import NEURON_STYLES, neuron_tokens, print_neurons
from mechviz.errors import MechvizError
from mechviz.tracing.neurons import activation_class, select
from mechviz.tracing.schema import Trace

EXAMPLE = Path(__file__).parents[1] / "assets" / "traces" / "capital_of_france.json"


@pytest.mark.parametrize(
    "value, kind",
    [(3.6, "high"), (3.5, "mid"), (3.01, "mid"), (3.0, "low"), (0.0, "low"), (-0.01, "neg")],
)
def test_activation_class_follows_the_seed(value: float, kind: str) -> None:
    # red > 3.5, orange 3..3.5, grey 0..3, blue < 0
    assert activation_class(value, 3.0, 0.0) == kind


def test_activation_class_with_other_thresholds_and_margin() -> None:
    assert activation_class(1.3, 1.0, -1.0, margin=0.2) == "high"
    assert activation_class(1.1, 1.0, -1.0, margin=0.2) == "mid"
    assert activation_class(-0.5, 1.0, -1.0, margin=0.2) == "low"
    assert activation_class(-1.5, 1.0, -1.0, margin=0.2) == "neg"


def _count(trace: Trace, above: float, below: float, relative: bool) -> np.ndarray:
    n = trace.neurons
    scale = n.std if relative else np.ones_like(n.std)
    hi, lo = np.float32(above) * scale, np.float32(below) * scale
    return ((n.peak[..., 0] > hi[:, None]) | (n.peak[..., 1] < lo[:, None])).sum(-1)


def test_select_defaults_to_the_trace_rule(tiny_trace: Trace) -> None:
    sel = select(tiny_trace)
    n = tiny_trace.neurons
    assert (sel.above, sel.below, sel.relative) == (n.above, n.below, n.relative) == (3, 0, False)
    np.testing.assert_array_equal(sel.count, n.count)
    for layer in range(tiny_trace.n_layers):
        np.testing.assert_array_equal(sel.ids[layer], n.ids[layer][n.ids[layer] >= 0])


@pytest.mark.parametrize("relative", [False, True])
def test_select_recounts_other_thresholds_from_peak(tiny_trace: Trace, relative: bool) -> None:
    peak = tiny_trace.neurons.peak
    above = 2.0 if relative else float(np.quantile(peak[..., 0], 0.8))
    below = -1.0 if relative else float(np.quantile(peak[..., 1], 0.1))
    sel = select(tiny_trace, above, below, relative)
    want = _count(tiny_trace, above, below, relative)
    np.testing.assert_array_equal(sel.count, want)
    assert ((want > 0) & (want < tiny_trace.model.d_mlp)).any()  # not all, not none
    std = tiny_trace.neurons.std if relative else 1.0
    np.testing.assert_allclose(sel.hi, np.float32(above) * std)
    np.testing.assert_allclose(sel.lo, np.float32(below) * std)
    np.testing.assert_allclose(sel.margin, 0.5 * np.ones(tiny_trace.n_layers) * std, rtol=1e-6)
    n = tiny_trace.neurons
    for layer, ids in enumerate(sel.ids):
        stored = list(n.ids[layer])
        order = [stored.index(i) for i in ids]
        assert order == sorted(order)  # the trace's order: most extreme first
        top, bottom = peak[layer, ids, 0], peak[layer, ids, 1]
        assert ((top > sel.hi[layer]) | (bottom < sel.lo[layer])).all()
        np.testing.assert_array_equal(sel.values[layer], n.values[layer][order])


def test_select_refuses_bad_rules_and_old_traces(tiny_trace: Trace) -> None:
    with pytest.raises(MechvizError, match="greater than the lower"):
        select(tiny_trace, above=0.0, below=0.0)
    old = dataclasses.replace(tiny_trace, schema_version=3, whole=None, neurons=None)
    with pytest.raises(MechvizError, match="no `neurons` section.*mechviz trace"):
        select(old)


def test_tokens_are_coloured_by_class() -> None:
    values = np.array([4.0, 3.2, 1.0, -0.5], dtype=np.float32)
    line = neuron_tokens(["a", " b", "c", "d"], values, 3.0, 0.0, 0.5)
    assert line.plain == "a ·b c d"
    styles = [str(span.style) for span in line.spans]
    assert styles == [NEURON_STYLES[k] for k in ("high", "mid", "low", "neg")]


def _printed(trace: Trace, **kwargs: object) -> str:
    console = Console(record=True, width=200, color_system=None)
    print_neurons(trace, console, **kwargs)  # type: ignore[arg-type]
    return console.export_text()


def test_print_neurons_counts_and_shows_the_most_extreme(tiny_trace: Trace) -> None:
    text = _printed(tiny_trace, top=2)
    sel = select(tiny_trace)
    F = tiny_trace.model.d_mlp
    for layer in range(tiny_trace.n_layers):
        assert f"layer {layer}: {sel.count[layer]} of {F} selected" in text
        for neuron in sel.ids[layer][:2]:
            assert re.search(rf"^  n{neuron} ", text, re.M)
    assert len(re.findall(r"^  n\d+ ", text, re.M)) == 2 * tiny_trace.n_layers
    assert "red > 3.5" in text and "blue < 0" in text


def test_print_neurons_one_layer(tiny_trace: Trace) -> None:
    text = _printed(tiny_trace, layer=1, top=3)
    assert "layer 1:" in text and "layer 0:" not in text and "layer 2:" not in text
    assert len(re.findall(r"^  n\d+ ", text, re.M)) == 3


# --- the command ----------------------------------------------------------------------------


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["neurons", *args], env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def tiny_file(tiny_trace: Trace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_trace.save(tmp_path_factory.mktemp("neurons") / "tiny.json")


def test_cli_prints_counts(tiny_file: Path, tiny_trace: Trace) -> None:
    peak = tiny_trace.neurons.peak
    above, below = float(np.quantile(peak[..., 0], 0.8)), float(np.quantile(peak[..., 1], 0.1))
    result = _run(str(tiny_file), "--above", repr(above), "--below", repr(below), "--top", "1")
    assert result.exit_code == 0, result.output
    want = _count(tiny_trace, above, below, False)
    for layer, count in enumerate(want):
        assert f"layer {layer}: {count} of {tiny_trace.model.d_mlp} selected" in result.stdout
    rel = _run(str(tiny_file), "--relative", "--above", "2", "--below", "-1", "--layer", "0")
    assert rel.exit_code == 0, rel.output
    assert f"layer 0: {_count(tiny_trace, 2.0, -1.0, True)[0]} of" in rel.stdout
    assert "standard deviations" in rel.stdout and "layer 1:" not in rel.stdout


def _one_sentence(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert result.stdout == ""  # nothing printed before the error
    return lines[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--layer", "3"], ["--layer 3", "0 to 2"]),
        (["--layer", "-1"], ["--layer -1"]),
        (["--above", "0", "--below", "1"], ["--above 0", "--below 1"]),
        (["--above", "1", "--below", "1"], ["greater"]),
        (["--top", "0"], ["--top"]),
    ],
)
def test_cli_bad_input_is_one_sentence(tiny_file: Path, args: list[str], words: list[str]) -> None:
    message = _one_sentence(_run(str(tiny_file), *args))
    for word in words:
        assert word in message, message


def test_cli_old_trace_says_how_to_retrace(tiny_trace: Trace, tmp_path: Path) -> None:
    data = tiny_trace.to_dict()
    del data["whole"], data["neurons"], data["lens_mid"]
    data["schema_version"] = 3
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    message = _one_sentence(_run(str(path)))
    assert "no `neurons` section" in message and "trace it again" in message
    assert "mechviz trace" in message and tiny_trace.prompt in message


def test_example_trace_has_the_default_rule() -> None:
    from mechviz.tracing.io import load_trace

    trace = load_trace(EXAMPLE)
    n = trace.neurons
    assert (n.above, n.below, n.relative) == (3.0, 0.0, False)
    assert trace.model.d_mlp == 1536 and n.ids.shape == (trace.n_layers, 32)
    np.testing.assert_array_equal(select(trace).count, n.count)
    assert trace.whole.width == 1000 and trace.whole.resid.shape[-1] == 200  # 1000 px / 5 tokens


@pytest.mark.parametrize(
    "args, words",
    [
        (["--width", "0"], ["--width", "at least 1"]),
        (["--neuron-above", "0", "--neuron-below", "1"], ["--neuron-above 0", "--neuron-below 1"]),
    ],
)
def test_trace_options_are_checked_before_the_model_loads(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    out = tmp_path / "t.json"
    result = CliRunner().invoke(main, ["trace", "The capital of France is", "-o", str(out), *args])
    message = _one_sentence(result)
    for word in words:
        assert word in message, message
    assert not out.exists()


def test_trace_options_reach_the_trace(tmp_path: Path) -> None:
    from mechviz.tracing.io import load_trace

    out = tmp_path / "t.json"
    result = CliRunner().invoke(
        main,
        ["trace", "The capital of France is", "-o", str(out), "--width", "500"]
        + ["--neuron-above", "2", "--neuron-below", "-3", "--relative"],
    )
    assert result.exit_code == 0, result.output
    trace = load_trace(out)
    assert trace.whole.width == 500 and trace.whole.resid.shape[-1] == 100  # 500 px / 5 tokens
    n = trace.neurons
    assert (n.above, n.below, n.relative) == (2.0, -3.0, True)
    np.testing.assert_array_equal(n.count, _count(trace, 2.0, -3.0, True))
    assert (n.count < trace.model.d_mlp).all()
