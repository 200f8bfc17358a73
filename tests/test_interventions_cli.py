"""Interventions from the command line and the Python API, on the real default model.

A changed run is recorded with what changed and the run before; a run without
changes is the same trace as before, byte for byte; bad input is one sentence
(exit code 2, nothing written; a ValueError in Python).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mechviz
from mechviz.cli.main import main
from mechviz.tracing.io import dumps, load_trace

PROMPT = "The capital of France is"


def test_no_changes_is_the_trace_from_before(default_model) -> None:  # type: ignore[no-untyped-def]
    plain = mechviz.trace(PROMPT)
    empty = mechviz.trace(PROMPT, ablate=[], ablate_mlp=[], freeze=[])
    assert plain.interventions is None and empty.interventions is None
    assert dumps(plain) == dumps(empty)


def test_ablated_run_records_the_change_and_the_run_before(default_model) -> None:  # type: ignore[no-untyped-def]
    plain = mechviz.trace(PROMPT)
    ablated = mechviz.trace(PROMPT, ablate=["23.4", "29.1"])
    iv = ablated.interventions
    assert iv.ablate == ["23.4", "29.1"] and iv.mode == "zero" and iv.freeze_from is None
    np.testing.assert_array_equal(iv.before_output_ids, plain.output.top_ids[-1])
    np.testing.assert_allclose(iv.before_output_probs, plain.output.top_probs[-1], atol=1e-6)
    np.testing.assert_array_equal(iv.before_lens_ids, plain.lens.top_ids[:, -1])
    paris = ablated.token_text(ablated.prediction[0])
    assert paris == " Paris" and ablated.prediction[1] < plain.prediction[1] - 0.3
    # the two heads write nothing, in the changed run as recorded
    assert ablated.heads.direct[23, 4] == 0 and ablated.heads.direct[29, 1] == 0
    np.testing.assert_array_equal(ablated.tokens.ids, plain.tokens.ids)


def test_frozen_heads_keep_the_other_prompts_pattern(default_model) -> None:  # type: ignore[no-untyped-def]
    other = mechviz.trace("The capital of Italy is")
    frozen = mechviz.trace(PROMPT, freeze=["23.4"], freeze_from="The capital of Italy is")
    np.testing.assert_allclose(
        frozen.attention.pattern[23, 4], other.attention.pattern[23, 4], atol=2e-5
    )
    assert frozen.interventions.freeze == ["23.4"]
    assert frozen.interventions.freeze_from == "The capital of Italy is"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (
            {"ablate": ["30.1"]},
            "--ablate 30.1: layer 30 is out of range; this model has layers 0 to 29.",
        ),
        ({"ablate": ["5.9"]}, "head 9 is out of range; this model has heads 0 to 8"),
        ({"ablate": ["5"]}, "is not a head: write LAYER.HEAD"),
        ({"ablate_mlp": [30]}, "--ablate-mlp 30 is out of range"),
        ({"ablate": ["1.1"], "ablate_mode": "max"}, "--ablate-mode must be zero or mean"),
        ({"freeze": ["1.1"]}, "--freeze needs --freeze-from"),
        ({"freeze": ["1.1"], "freeze_from": "Hello"}, "has 1 token but the prompt has 5 tokens"),
    ],
)
def test_bad_changes_are_one_value_error(default_model, kwargs: dict, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError) as info:
        mechviz.trace(PROMPT, **kwargs)
    assert words in str(info.value)
    assert isinstance(info.value, mechviz.MechvizError)


def test_patch_in_python_restores_its_clean_run(default_model) -> None:  # type: ignore[no-untyped-def]
    t = mechviz.patch(PROMPT, "The capital of Italy is", answer=" Paris", wrong=" Rome")
    pt = t.patching
    assert t.prompt == PROMPT and pt.corrupt_prompt == "The capital of Italy is"
    assert t.token_text(pt.answer) == " Paris" and t.token_text(pt.wrong) == " Rome"
    assert pt.resid[-1, -1] == pytest.approx(1.0, abs=1e-4)
    assert np.abs(pt.resid[:, :3]).max() < 1e-4  # "The capital of" is the same in both
    assert pt.resid[0, 3] == pytest.approx(1.0, abs=1e-4)  # the only token that differs
    assert pt.clean_diff > 0 > pt.corrupt_diff
    with pytest.raises(ValueError, match="5 tokens long and the corrupt prompt 6 tokens"):
        mechviz.patch(PROMPT, "The capital of the Netherlands is")
    with pytest.raises(ValueError, match="' Paris Texas' is not a single token"):
        mechviz.patch(PROMPT, "The capital of Italy is", answer=" Paris Texas")


def cli(*args: str):  # type: ignore[no-untyped-def]
    """The command line in this process: the model the tests loaded is loaded already."""
    from types import SimpleNamespace

    result = CliRunner().invoke(main, list(args))
    return SimpleNamespace(returncode=result.exit_code, stderr=result.output)


def test_cli_trace_with_ablation_and_bad_input(default_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "ablated.json"
    done = cli("trace", PROMPT, "--ablate", "23.4", "--ablate", "29.*", "-o", str(out))
    assert done.returncode == 0, done.stderr
    iv = load_trace(out).interventions
    assert iv.ablate == ["23.4"] + [f"29.{h}" for h in range(9)]
    bad = tmp_path / "bad.json"
    for args, words in [
        (["--ablate", "30.1"], "layer 30 is out of range"),
        (["--freeze", "1.1"], "--freeze needs --freeze-from"),
        (["--freeze-from", "Hello"], "--freeze-from needs --freeze"),
    ]:
        result = cli("trace", PROMPT, *args, "-o", str(bad))
        assert result.returncode == 2, result.stderr
        assert words in result.stderr and "Traceback" not in result.stderr
        assert not bad.exists()


def test_cli_patch(default_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "patch.json"
    bad = cli(
        "patch", "--clean", PROMPT, "--corrupt", "The capital of the Netherlands is", "-o", str(out)
    )
    assert bad.returncode == 2 and "5 tokens long and the corrupt prompt 6 tokens" in bad.stderr
    assert not out.exists()
    done = cli(
        "patch",
        "--clean",
        PROMPT,
        "--corrupt",
        "The capital of Italy is",
        "--answer",
        " Paris",
        "--wrong",
        " Rome",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "mechviz scene Patching" in done.stderr
    pt = load_trace(out).patching
    assert pt.resid.shape == (31, 5) and pt.heads.shape == (30, 9) and pt.mlp.shape == (30,)
