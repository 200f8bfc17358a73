"""The ``tuned_lens`` and ``features`` trace sections: built, validated, round-tripped, refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import TINY_PROMPT, make_tiny

from mechviz.cli.main import main
from mechviz.errors import MechvizError
from mechviz.learned.sae import Dashboards, SparseAutoencoder, encode_positions
from mechviz.learned.tuned_lens import TunedLens
from mechviz.tracing.io import load_trace, save_trace
from mechviz.tracing.record import TraceOptions, build_trace
from mechviz.tracing.schema import SCHEMA_VERSION, Trace


def _lens_meta(n_rows: int) -> dict:
    rows = np.linspace(3.0, 1.0, n_rows).tolist()
    return {
        "sha256": "ab" * 32,
        "training": {"tokens": 1234},
        "corpus": {"sources": [{"name": "fortunes", "version": "1:1.99.1-7.3", "licence": "BSD"}]},
        "evaluation": {
            "tokens": 500,
            "model_bpb": 1.0,
            "logit_bpb": rows,
            "tuned_bpb": [r * 0.9 for r in rows[:-1]] + rows[-1:],
            "logit_kl": rows,
            "tuned_kl": [r * 0.5 for r in rows[:-1]] + [0.0],
        },
    }


def _sae(d_model: int, features: int = 96, k: int = 6) -> SparseAutoencoder:
    torch.manual_seed(0)
    sae = SparseAutoencoder(d_model, features, k)
    sae.layer, sae.median_norm = 1, 1.0
    sae.meta = {
        "sha256": "cd" * 32,
        "training": {"tokens": 4321},
        "corpus": {"sources": [{"name": "python3.11-doc", "version": "3.11", "licence": "PSF"}]},
        "evaluation": {
            "fve": 0.8,
            "l0": float(k),
            "dead_share": 0.1,
            "ce_clean": 3.0,
            "ce_sae": 3.4,
            "ce_zero": 7.0,
        },
    }
    rng = np.random.default_rng(0)
    contexts = rng.integers(4, 90, size=(features, 3, 7)).astype(np.int32)
    contexts[:, 0, :2] = -1  # a context cut by its window's start
    sae.dashboards = Dashboards(
        acts=np.abs(rng.normal(size=(features, 3))).astype(np.float32),
        contexts=contexts,
        marked=np.full((features, 3), 3, np.int16),
        promoted=rng.integers(4, 90, size=(features, 8)).astype(np.int32),
        promoted_logits=rng.normal(size=(features, 8)).astype(np.float32),
        frequency=rng.uniform(0, 0.1, size=features).astype(np.float32),
        descriptions=np.array([f"feature {f}" for f in range(features)]),
        tokens=1000,
    )
    return sae


@pytest.fixture(scope="module")
def learned():
    tiny = make_tiny("llama", top_k=5, full=False)
    lens = TunedLens.for_model(tiny.loaded)
    lens.meta = _lens_meta(tiny.trace.n_layers + 1)
    sae = _sae(tiny.trace.model.d_model)
    options = TraceOptions(top_k=5, tuned_lens=lens, sae=sae)
    trace = build_trace(tiny.loaded, TINY_PROMPT, tiny.rec, options)
    return tiny, lens, sae, trace


def test_tuned_lens_at_initialisation_is_the_logit_lens_in_the_trace(learned) -> None:
    _, _, _, trace = learned
    t = trace.tuned_lens
    assert trace.schema_version == SCHEMA_VERSION and t.labels == trace.lens.labels
    np.testing.assert_array_equal(t.top_ids, trace.lens.top_ids)
    np.testing.assert_allclose(t.top_probs, trace.lens.top_probs, atol=1e-6)
    np.testing.assert_allclose(t.kl_to_final, trace.lens.kl_to_final, atol=1e-5)
    assert t.corpus == ["fortunes 1:1.99.1-7.3 (BSD)"] and t.trained_tokens == 1234
    assert t.eval_bpb_tuned[0] < t.eval_bpb_logit[0]


def test_features_section_holds_the_saes_own_encoding(learned) -> None:
    tiny, _, sae, trace = learned
    f = trace.features
    ids, acts, err, norm = encode_positions(sae, tiny.rec.resid_post[1])
    np.testing.assert_array_equal(f.ids, ids)
    np.testing.assert_allclose(f.acts, acts)
    np.testing.assert_allclose(f.error_norm, err)
    np.testing.assert_allclose(f.resid_norm, norm)
    # Every position's most active features have a card, with its dashboard's words.
    for p in range(trace.n_positions):
        for fid, act in zip(f.ids[p, :8], f.acts[p, :8]):
            if act > 0:
                i = int(np.searchsorted(f.card_ids, fid))
                assert f.card_ids[i] == fid and f.card_descriptions[i] == f"feature {fid}"
    # The cards' context ids (not the -1 padding) have text in vocab.
    assert set(f.card_contexts[f.card_contexts >= 0].tolist()) <= set(trace.vocab)


def test_learned_sections_survive_a_json_round_trip(learned, tmp_path: Path) -> None:
    _, _, _, trace = learned
    back = load_trace(save_trace(trace, tmp_path / "t.json"))
    np.testing.assert_array_equal(back.tuned_lens.top_ids, trace.tuned_lens.top_ids)
    np.testing.assert_array_equal(back.features.card_contexts, trace.features.card_contexts)
    assert back.features.card_descriptions == trace.features.card_descriptions


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda f: {"ids": np.where(f.ids == f.ids[0, 0], 10**6, f.ids)}, "features.ids"),
        (lambda f: {"acts": f.acts[:, ::-1].copy()}, "features.acts"),
        (lambda f: {"layer": 99}, "features.layer"),
        (lambda f: {"card_ids": f.card_ids[::-1].copy()}, "features.card_ids"),
    ],
)
def test_a_broken_features_section_is_refused_in_one_sentence(learned, change, words) -> None:
    _, _, _, trace = learned
    with pytest.raises(MechvizError, match=words.replace(".", r"\.")):
        dataclasses.replace(
            trace, features=dataclasses.replace(trace.features, **change(trace.features))
        )


def test_a_tuned_lens_whose_last_row_is_not_the_output_is_refused(learned) -> None:
    _, _, _, trace = learned
    t = trace.tuned_lens
    probs = t.top_probs.copy()
    probs[-1] *= 0.9  # still sorted, no longer the output
    with pytest.raises(MechvizError, match="last row"):
        dataclasses.replace(trace, tuned_lens=dataclasses.replace(t, top_probs=probs))


def test_a_version_5_trace_with_a_tuned_lens_is_refused(learned, tmp_path: Path) -> None:
    _, _, _, trace = learned
    data = trace.to_dict()
    data["schema_version"] = 5
    with pytest.raises(MechvizError, match="tuned_lens"):
        Trace.from_dict(data)


def test_trace_asking_for_an_untrained_lens_or_sae_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_model
) -> None:
    import mechviz.learned.sae
    import mechviz.learned.tuned_lens

    monkeypatch.setattr(mechviz.learned.tuned_lens, "lens_dir", lambda loaded: tmp_path / "lens")
    monkeypatch.setattr(
        mechviz.learned.sae, "sae_dir", lambda loaded, layer: tmp_path / f"sae{layer}"
    )
    runner = CliRunner()
    out = tmp_path / "t.json"
    for flags, command in [
        (["--tuned-lens"], "mechviz train-lens"),
        (["--sae"], "mechviz train-sae --layer 15"),
        (["--sae-layer", "3"], "mechviz train-sae --layer 3"),
    ]:
        result = runner.invoke(main, ["trace", "Hello", "-o", str(out), *flags])
        assert result.exit_code == 2, result.output
        assert command in result.output and "Traceback" not in result.output
        assert not out.exists()
    result = runner.invoke(main, ["trace", "Hello", "-o", str(out), "--sae-layer", "30"])
    assert result.exit_code == 2 and "choose a layer from 0 to 29" in result.output
