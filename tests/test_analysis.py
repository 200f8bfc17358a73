"""`mechviz analyze`: analyses stored in the trace, checked on load, refused for other weights.

The attribution identity (parts + bias == the real logit) is checked as
stored, after a JSON round trip, on tiny models of every family and on the
real default model; the CLI's bad input gives one sentence, exit code 2, and
leaves the trace file as it was.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import Tiny, make_tiny

from mechviz.analyses.analyze import analyze, check_same_weights
from mechviz.analyses.attribution import attribution_table
from mechviz.cli.main import main
from mechviz.errors import MechvizError
from mechviz.model.load import single_token
from mechviz.tracing.io import load_trace
from mechviz.tracing.record import with_sections
from mechviz.tracing.schema import SCHEMA_VERSION, Trace
from mechviz.visual.settings import example_trace

IDENTITY_RTOL = 1e-4  # the bar: relative, or absolute below 1 logit


def _identity_error(trace: Trace) -> float:
    a = trace.attribution
    total = a.parts.astype(np.float64).sum(-1) + a.bias
    return float((np.abs(total - a.logit) / np.maximum(np.abs(a.logit), 1.0)).max())


def _round_trip(trace: Trace, tmp_path: Path) -> Trace:
    return load_trace(trace.save(tmp_path / "t.json"))


def test_stored_attribution_adds_up_on_every_family(tiny: Tiny, tmp_path: Path) -> None:
    versus = int(tiny.rec.logits[-1].argsort()[-2])  # the runner-up at the last position
    done = analyze(
        tiny.trace, tiny.loaded, versus=None, dictionaries=False, similarity=False, weights=False
    )
    table = attribution_table(tiny.loaded.adapter, tiny.rec, versus=versus)
    both = with_sections(tiny.trace, tiny.loaded, attribution=table)
    for trace in (done, both):
        back = _round_trip(trace, tmp_path)
        assert _identity_error(back) <= IDENTITY_RTOL
        np.testing.assert_array_equal(back.attribution.token, tiny.trace.output.top_ids[:, 0])
    a = both.attribution
    assert a.parts.shape == (2, len(tiny.ids), 2 * tiny.trace.n_layers + 1)
    logits = tiny.rec.logits.double()
    P = len(tiny.ids)
    if tiny.loaded.adapter.final_logit_softcap is None:
        want = logits[torch.arange(P), a.token] - logits[:, versus]
        np.testing.assert_allclose(a.logit[1], want.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.output[0], logits.max(-1).values.numpy(), rtol=1e-5, atol=1e-5)
    assert both.vocab[versus]  # the versus token's text is in the vocabulary


def test_analysis_keeps_other_sections_and_bumps_the_version(tmp_path: Path) -> None:
    tiny = make_tiny("llama")
    old = dataclasses.replace(tiny.trace, schema_version=4, lens_mid=None)
    done = analyze(old, tiny.loaded, dictionaries=False, similarity=False, weights=False)
    assert done.schema_version == SCHEMA_VERSION and done.lens_mid is None
    assert done.neurons is tiny.trace.neurons and done.attribution is not None
    assert _round_trip(done, tmp_path).attribution is not None


def test_other_weights_are_refused() -> None:
    tiny = make_tiny("llama")
    other = make_tiny("mistral")
    with pytest.raises(MechvizError, match="other weights than the trace records"):
        check_same_weights(tiny.trace, other.loaded)
    with pytest.raises(MechvizError, match="other weights"):
        analyze(tiny.trace, other.loaded)
    check_same_weights(tiny.trace, tiny.loaded)  # the same model passes


def test_with_sections_refuses_unknown_names() -> None:
    tiny = make_tiny("llama")
    with pytest.raises(ValueError, match="Not optional sections: lens"):
        with_sections(tiny.trace, tiny.loaded, lens=tiny.trace.lens)
    same = with_sections(tiny.trace, tiny.loaded, lens_mid=tiny.trace.lens_mid)  # any optional one
    assert same.vocab == tiny.trace.vocab


def test_middle_layers_out_of_range_is_one_sentence() -> None:
    tiny = make_tiny("llama")
    with pytest.raises(MechvizError, match="--middle-layers must be between 1 and"):
        analyze(tiny.trace, tiny.loaded, middle_layers=0)


# --- validation of stored analyses ---------------------------------------------------------


def _tampered(trace: Trace, tmp_path: Path, change) -> str:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(trace.to_dict(packed=False)))
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(MechvizError) as info:
        load_trace(path)
    return str(info.value)


def test_a_broken_identity_is_refused(tmp_path: Path) -> None:
    tiny = make_tiny("llama")
    done = analyze(tiny.trace, tiny.loaded, dictionaries=False, similarity=False, weights=False)

    def shift(data: dict) -> None:
        data["attribution"]["parts"][0][-1][5] += 0.5

    assert "the parts must sum to the logit" in _tampered(done, tmp_path, shift)

    def head(data: dict) -> None:
        data["attribution"]["heads"][0][-1][0][0] += 0.5  # the total holds; layer 0 does not

    assert "does not add up" in _tampered(done, tmp_path, head)

    def token(data: dict) -> None:
        data["attribution"]["token"][-1] = (data["attribution"]["token"][-1] + 1) % 40

    assert "'attribution.token'" in _tampered(done, tmp_path, token)


# --- the real default model -----------------------------------------------------------------


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("analysis")
    path = folder / "france.json"
    shutil.copy(example_trace(), path)
    return path


def test_example_trace_attribution_adds_up() -> None:
    trace = load_trace(example_trace())
    assert trace.attribution is not None and trace.lens_mid is not None
    assert _identity_error(trace) <= IDENTITY_RTOL
    a = trace.attribution
    assert trace.token_text(a.token[-1]) == " Paris"
    assert trace.token_text(a.versus) == " London"
    assert a.logit[0, -1] == pytest.approx(17.371, abs=0.01)
    assert a.logit[1, -1] == pytest.approx(4.13, abs=0.01)


def test_default_model_attribution_at_every_position(default_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trace = load_trace(example_trace())
    done = analyze(
        trace, default_model, versus=" London", dictionaries=False, similarity=False, weights=False
    )
    back = _round_trip(done, tmp_path)
    assert _identity_error(back) <= IDENTITY_RTOL
    london = single_token(default_model, " London")
    assert back.attribution.versus == london
    # Another CPU's kernels round a few ulps apart: relative, not only absolute, slack.
    parts = back.attribution.parts
    np.testing.assert_allclose(parts, trace.attribution.parts, rtol=1e-5, atol=2e-5)


def test_single_token_says_how_a_word_splits(default_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MechvizError, match=r"' roundabouts' is not a single token .* ' round' \+"):
        single_token(default_model, " roundabouts")
    assert (
        single_token(default_model, " Paris") == load_trace(example_trace()).attribution.token[-1]
    )


def run_cli(*args: str):  # type: ignore[no-untyped-def]
    """The command line in this process (the model the tests loaded is loaded already)."""
    from types import SimpleNamespace

    result = CliRunner().invoke(main, list(args))
    return SimpleNamespace(returncode=result.exit_code, stderr=result.output, stdout=result.output)


def test_cli_analyze_then_inspect(example: Path, default_model) -> None:  # type: ignore[no-untyped-def]
    before = example.read_bytes()
    bad = run_cli("analyze", str(example), "--attribution", "--versus", " Romeo and")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "' Romeo and' is not a single token" in bad.stderr and "' Romeo' + ' and'" in bad.stderr
    assert example.read_bytes() == before  # nothing written
    out = example.with_name("rome.json")
    done = run_cli("analyze", str(example), "--attribution", "--versus", " Rome", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert load_trace(out).token_text(load_trace(out).attribution.versus) == " Rome"
    shown = run_cli("inspect", str(out), "--position", "-1")
    assert shown.returncode == 0, shown.stderr
    assert "Direct logit attribution of ·Paris" in shown.stdout
    assert "recorded logit" in shown.stdout and "17.371" in shown.stdout
    far = run_cli("inspect", str(out), "--position", "9")
    assert far.returncode == 2 and "--position 9 is out of range" in far.stderr
    assert "Logit lens" not in far.stdout  # nothing printed before the sentence


def test_cli_refuses_a_trace_of_other_weights(example: Path, tmp_path: Path, default_model) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(example.read_text(encoding="utf-8"))
    data["model"]["unembedding_hash"] = "0" * 64
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    before = path.read_bytes()
    result = run_cli("analyze", str(path), "--attribution")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has other weights than the trace records" in result.stderr
    assert path.read_bytes() == before


def test_python_analyze_takes_a_path(example: Path, default_model) -> None:  # type: ignore[no-untyped-def]
    import mechviz

    done = mechviz.analyze(
        example, versus=" London", dictionaries=False, similarity=False, weights=False
    )
    assert isinstance(done, mechviz.Trace) and done.schema_version == SCHEMA_VERSION
    assert done.token_text(done.attribution.versus) == " London"
    assert _identity_error(done) <= IDENTITY_RTOL
    with pytest.raises(MechvizError, match="' roundabouts' is not a single token"):
        mechviz.analyze(example, versus=" roundabouts", dictionaries=False)
