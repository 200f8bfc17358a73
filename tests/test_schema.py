"""The trace format: round trips, canonical JSON, validated loads, atomic writes."""

from __future__ import annotations

import copy
import dataclasses
import errno
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Tiny, make_tiny

import mechviz.files as mio
from mechviz.errors import MechvizError
from mechviz.files import atomic_write
from mechviz.tracing.io import dumps, load_trace, save_trace
from mechviz.tracing.schema import READABLE_VERSIONS, SCHEMA_VERSION, SECTIONS, Trace


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _assert_same(a: Trace, b: Trace, rtol: float = 1e-5) -> None:
    """Equal up to the storage precision: 6 digits, or float16 for low-precision fields."""
    assert a.schema_version == b.schema_version
    assert a.mechviz_version == b.mechviz_version
    assert a.model == b.model
    assert a.prompt == b.prompt
    assert a.vocab == b.vocab
    for name in SECTIONS:
        sa, sb = getattr(a, name), getattr(b, name)
        if sa is None or sb is None:  # an optional section (heads)
            assert sa is sb is None, name
            continue
        for f in dataclasses.fields(sa):
            va, vb = getattr(sa, f.name), getattr(sb, f.name)
            where = f"{name}.{f.name}"
            if isinstance(va, np.ndarray):
                assert isinstance(vb, np.ndarray), where
                assert va.shape == vb.shape, where
                if va.dtype.kind in "iu":
                    assert vb.dtype.kind in "iu", where
                    assert (va == vb).all(), where
                elif f.metadata.get("storage") == "float16":
                    np.testing.assert_allclose(vb, va, rtol=2**-11, atol=1e-7, err_msg=where)
                elif f.metadata.get("storage") == "unit16":
                    np.testing.assert_allclose(vb, va, rtol=0, atol=1 / 65535, err_msg=where)
                else:
                    np.testing.assert_allclose(vb, va, rtol=rtol, atol=1e-30, err_msg=where)
            else:
                assert va == vb, where


# --- round trips ------------------------------------------------------------------


def test_to_dict_from_dict_round_trip(tiny_trace: Trace) -> None:
    data = tiny_trace.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION
    back = Trace.from_dict(copy.deepcopy(data))
    _assert_same(tiny_trace, back)
    # serialising what was loaded gives the same dictionary again (rounding is stable)
    assert back.to_dict() == data
    assert back.resid.full is None


def test_round_trip_with_full_residuals(tmp_path: Path) -> None:
    trace = make_tiny("gpt2", top_k=3, full=True).trace
    assert trace.resid.full is not None
    back = load_trace(save_trace(trace, tmp_path / "full.json"))
    _assert_same(trace, back)
    assert back.resid.full.shape == trace.resid.full.shape


def test_save_and_load_round_trip(tiny_trace: Trace, tmp_path: Path) -> None:
    path = save_trace(tiny_trace, tmp_path / "trace.json")
    assert path == tmp_path / "trace.json"
    text = path.read_text(encoding="utf-8")
    assert text == dumps(tiny_trace)
    _strict_json(text)
    start = time.perf_counter()
    back = load_trace(path)
    assert time.perf_counter() - start < 1.0
    _assert_same(tiny_trace, back)
    assert dumps(back) == text
    # loaded arrays are read-only: a trace is built once, then read
    with pytest.raises(ValueError):
        back.attention.pattern[0, 0, 0, 0] = 0.5
    # and a second save of the loaded trace is byte-identical
    assert save_trace(back, tmp_path / "again.json").read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.json", "trace.json"]


def test_dumps_is_deterministic_and_canonical(tiny_trace: Trace) -> None:
    text = dumps(tiny_trace)
    assert dumps(tiny_trace) == text
    # a fresh model built from the same seed, traced again, gives the same bytes
    assert dumps(make_tiny("llama", top_k=5, full=False).trace) == text
    data = _strict_json(text)
    assert list(data) == sorted(data)
    assert ", " not in text[:200] and ": " not in text[:200]  # compact separators
    assert list(data["vocab"]) == sorted(data["vocab"])  # sort_keys: as strings


def test_trace_readers(tiny_trace: Trace) -> None:
    L = tiny_trace.n_layers
    assert tiny_trace.boundary("embed") == 0
    assert tiny_trace.boundary(f"{L - 1}_post") == 2 * L
    assert tiny_trace.resid_pre(0) == 0 and tiny_trace.resid_pre(1) == tiny_trace.resid_post(0)
    assert tiny_trace.resid.labels[tiny_trace.resid_mid(1)] == "1_mid"
    with pytest.raises(MechvizError, match="'nope'"):
        tiny_trace.boundary("nope")
    token, prob = tiny_trace.prediction
    assert token == tiny_trace.output.top_ids[-1, 0] and 0 < prob <= 1
    assert isinstance(tiny_trace.token_text(token), str)


# --- validated loads ------------------------------------------------------------------


def _load_error(path: Path) -> str:
    with pytest.raises(MechvizError) as info:
        load_trace(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.rstrip().endswith("."), message
    return message


def _write_modified(tmp_path: Path, trace: Trace, change: Callable[[dict], Any]) -> Path:
    data = trace.to_dict(packed=False)  # nested lists, easy to corrupt
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
    return path


@pytest.mark.parametrize("text", ["[]", '{"a": 1}', "null", '"trace"', "42"])
def test_json_that_is_not_a_trace(tmp_path: Path, text: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(text)
    message = _load_error(path)
    assert "not a mechviz trace" in message and "'schema_version'" in message
    assert str(path) in message


@pytest.mark.parametrize(
    "content",
    [
        b"this is not json {",
        b"",
        b"\x89PNG\r\n\x1a\n\x00\xff\xfe",
        b'{"schema_version": 1, "model": {',
    ],
    ids=["text", "empty", "binary", "truncated"],
)
def test_file_that_is_not_json(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.json"
    path.write_bytes(content)
    message = _load_error(path)
    assert "not a mechviz trace" in message and "not valid JSON" in message
    assert str(path) in message


def test_missing_file(tmp_path: Path) -> None:
    message = _load_error(tmp_path / "nowhere.json")
    assert "does not exist" in message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert "is a directory" in _load_error(tmp_path)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, key = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[key] = value

    return change


def _delete(path: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, key = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[key]

    return change


def _drop_one_head(data: dict) -> None:
    data["attention"]["pattern"] = [layer[:-1] for layer in data["attention"]["pattern"]]


def _nan_in_top_probs(data: dict) -> None:
    data["lens"]["top_probs"][1][0][0] = float("nan")


def _inf_in_entropy(data: dict) -> None:
    data["output"]["entropy"][0] = float("inf")


def _ragged_norm(data: dict) -> None:
    data["resid"]["norm"][0] = data["resid"]["norm"][0][:-1]


def _drop_vocab_of_first_token(data: dict) -> None:
    del data["vocab"][str(data["tokens"]["ids"][0])]


def _one_label_too_many(data: dict) -> None:
    data["resid"]["labels"].append("extra")


def _answer_not_top1(data: dict) -> None:
    top = data["output"]["top_ids"][-1]
    data["heads"]["answer"] = top[1]


def _nan_in_direct(data: dict) -> None:
    data["heads"]["direct"][1][2] = float("nan")


def _one_layer_short(data: dict) -> None:
    data["heads"]["direct"] = data["heads"]["direct"][:-1]


INVALID = {
    # name: (change, words the message must contain)
    "newer_schema": (
        _set("schema_version", SCHEMA_VERSION + 1),
        [f"schema version {SCHEMA_VERSION + 1}", "newer", "upgrade"],
    ),
    "older_schema": (_set("schema_version", 0), ["schema version 0"]),
    "schema_not_int": (_set("schema_version", "1"), ["'schema_version'", "integer"]),
    "missing_attention_pattern": (_delete("attention.pattern"), ["missing", "'attention.pattern'"]),
    "missing_section": (_delete("lens"), ["missing", "'lens'"]),
    "missing_model_field": (_delete("model.d_model"), ["missing", "'model.d_model'"]),
    "missing_prompt": (_delete("prompt"), ["missing", "'prompt'"]),
    "prompt_not_str": (_set("prompt", 5), ["'prompt'"]),
    "one_head_short": (_drop_one_head, ["'attention.pattern'", "shape", "H=4"]),
    "nan_in_lens": (_nan_in_top_probs, ["'lens.top_probs'", "NaN"]),
    "inf_in_output": (_inf_in_entropy, ["'output.entropy'", "infinite"]),
    "ragged_array": (_ragged_norm, ["'resid.norm'", "rectangular"]),
    "missing_vocab_entry": (_drop_vocab_of_first_token, ["'vocab'", "token id 1"]),
    "vocab_key_not_int": (_set("vocab.x", "x"), ["'vocab'"]),
    "text_not_strings": (_set("tokens.text", [1, 2]), ["'tokens.text'"]),
    "labels_wrong_count": (_one_label_too_many, ["'resid.labels'"]),
    "n_layers_not_int": (_set("model.n_layers", "3"), ["'model.n_layers'"]),
    "answer_not_top1": (_answer_not_top1, ["'heads.answer'", "top-1", "'output.top_ids'"]),
    "answer_outside_vocab": (_set("heads.answer", 10**6), ["'heads.answer'", "d_vocab"]),
    "answer_not_int": (_set("heads.answer", 3.0), ["'heads.answer'", "integer"]),
    "negative_answer": (_set("heads.answer", -1), ["'heads.answer'", "at least 0"]),
    "position_past_the_end": (_set("heads.position", 99), ["'heads.position'", "[0, 26)"]),
    "nan_in_direct": (_nan_in_direct, ["'heads.direct'", "NaN"]),
    "direct_one_layer_short": (_one_layer_short, ["'heads.direct'", "shape", "L=3"]),
    "bias_missing": (_delete("heads.bias"), ["missing", "'heads.bias'"]),
    "unknown_heads_key": (_set("heads.total", 1.0), ["'heads'", "'total'", "version 6"]),
    "heads_null": (_set("heads", None), ["'heads'", "object"]),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_trace_is_refused_naming_the_field(
    tiny_trace: Trace, tmp_path: Path, case: str
) -> None:
    change, words = INVALID[case]
    path = _write_modified(tmp_path, tiny_trace, change)
    message = _load_error(path)
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, (word, message)


def test_nan_written_as_json_text_is_refused(tiny_trace: Trace, tmp_path: Path) -> None:
    """A NaN typed into the file by hand (Python's json reads the bare token)."""
    data = tiny_trace.to_dict(packed=False)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    first = json.dumps(data["lens"]["top_probs"][0][0][0])
    marker = '"top_probs":[[[' + first
    assert marker in text
    path = tmp_path / "nan.json"
    path.write_text(text.replace(marker, '"top_probs":[[[NaN', 1), encoding="utf-8")
    message = _load_error(path)
    assert "'lens.top_probs'" in message and "NaN" in message


def test_unmodified_dictionary_loads(tiny_trace: Trace, tmp_path: Path) -> None:
    """Control for the cases above: the unmodified dictionary loads."""
    path = _write_modified(tmp_path, tiny_trace, lambda data: None)
    _assert_same(tiny_trace, load_trace(path))


# --- atomic writes ------------------------------------------------------------------------


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "interrupted"],
)
def test_write_failing_midway_leaves_nothing(
    tiny_trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    real_write_text = Path.write_text
    seen: list[Path] = []

    def half_then_fail(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        seen.append(self)
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        assert self.exists() and self.parent == tmp_path
        raise exc

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises((type(exc), MechvizError)):
        save_trace(tiny_trace, tmp_path / "trace.json")
    monkeypatch.undo()
    assert seen and seen[0] != tmp_path / "trace.json"  # it wrote a temporary file
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_the_previous_file(
    tiny_trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "trace.json"
    target.write_text("previous contents")

    def fail(tmp: Path) -> None:
        tmp.write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "previous contents"
    assert _leftovers(tmp_path) == ["trace.json"]


def test_failed_rename_leaves_nothing(
    tiny_trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rename(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(mio.os, "replace", no_rename)
    with pytest.raises((OSError, MechvizError)):
        save_trace(tiny_trace, tmp_path / "trace.json")
    monkeypatch.undo()
    assert _leftovers(tmp_path) == []


def test_output_in_a_missing_directory(tiny_trace: Trace, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "deeper" / "trace.json"
    with pytest.raises(MechvizError, match="does not exist") as info:
        save_trace(tiny_trace, target)
    assert str(target) in str(info.value)
    assert _leftovers(tmp_path) == []


def test_output_path_that_is_a_directory(tiny_trace: Trace, tmp_path: Path) -> None:
    (tmp_path / "out.json").mkdir()
    with pytest.raises(MechvizError, match="is a directory"):
        save_trace(tiny_trace, tmp_path / "out.json")
    assert _leftovers(tmp_path) == ["out.json"]
    assert _leftovers(tmp_path / "out.json") == []


def test_output_in_a_read_only_directory(tiny_trace: Trace, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes here")
        with pytest.raises(MechvizError, match="not writable"):
            save_trace(tiny_trace, ro / "trace.json")
        assert _leftovers(ro) == []
    finally:
        ro.chmod(0o755)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_output_in_a_directory_nobody_can_write(tiny_trace: Trace) -> None:
    # /proc/self refuses new files even to root, and os.access knows it.
    with pytest.raises(MechvizError, match="not writable"):
        save_trace(tiny_trace, "/proc/self/mechviz-trace.json")


def test_output_refused_by_the_os_is_a_clear_error(
    tiny_trace: Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The permission check can pass while creating the file still fails.

    As root, os.access says yes to /sys and to read-only-by-mode folders; on a
    network mount or a full disk the same happens. The user must still get one
    sentence (MechvizError, exit code 2), not a traceback.
    """

    def refuse(*args: Any, **kwargs: Any) -> Any:
        tmp = tmp_path / ".trace.json.x.tmp"
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp))

    monkeypatch.setattr(mio.tempfile, "mkstemp", refuse)
    with pytest.raises(MechvizError) as info:
        save_trace(tiny_trace, tmp_path / "trace.json")
    monkeypatch.undo()
    assert str(tmp_path / "trace.json") in str(info.value)
    assert _leftovers(tmp_path) == []


# --- schema versions ----------------------------------------------------------------------

SMALL_V1 = Path(__file__).parent / "data" / "small_trace.json"


def test_version_six_writes_heads_and_lens_mid(tiny_trace: Trace) -> None:
    assert SCHEMA_VERSION == 6 and READABLE_VERSIONS == (1, 2, 3, 4, 5, 6)
    data = tiny_trace.to_dict()
    assert data["lens_mid"]["labels"] == [f"{layer}_mid" for layer in range(tiny_trace.n_layers)]
    assert set(data["lens_mid"]) == set(data["lens"])
    assert not {"attribution", "dictionaries", "similarity", "weights"} & set(data)
    data = tiny_trace.to_dict()
    assert set(data["heads"]) == {"answer", "position", "direct", "bias"}
    assert data["heads"]["answer"] == tiny_trace.prediction[0]
    assert data["heads"]["position"] == tiny_trace.n_positions - 1


def test_version_one_and_two_load_without_heads(tiny_trace: Trace, tmp_path: Path) -> None:
    v1 = load_trace(SMALL_V1)
    assert v1.schema_version == 1 and v1.heads is None
    data = tiny_trace.to_dict()
    for name in ("heads", "whole", "neurons", "lens_mid"):
        del data[name]
    data["schema_version"] = 2
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    v2 = load_trace(path)
    assert v2.schema_version == 2 and v2.heads is None
    assert "heads" not in v2.to_dict()  # written back as it came
    _assert_same(
        dataclasses.replace(
            tiny_trace, schema_version=2, heads=None, whole=None, neurons=None, lens_mid=None
        ),
        v2,
    )


def test_version_two_with_heads_is_refused(tiny_trace: Trace, tmp_path: Path) -> None:
    data = tiny_trace.to_dict()
    for name in ("whole", "neurons", "lens_mid"):
        del data[name]
    data["schema_version"] = 2
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    message = _load_error(path)
    assert "schema version 2" in message and "'heads'" in message and "version 3" in message


def test_version_three_without_heads_loads(tiny_trace: Trace, tmp_path: Path) -> None:
    """The section is optional in every version: a tracer may have nothing to put there."""
    path = _write_modified(tmp_path, tiny_trace, _delete("heads"))
    assert load_trace(path).heads is None


def test_version_three_loads_without_whole_and_neurons(tiny_trace: Trace, tmp_path: Path) -> None:
    data = tiny_trace.to_dict()
    del data["whole"], data["neurons"], data["lens_mid"]
    data["schema_version"] = 3
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    v3 = load_trace(path)
    assert v3.schema_version == 3 and v3.whole is None and v3.neurons is None
    assert v3.heads is not None
    assert {"whole", "neurons"}.isdisjoint(v3.to_dict())


@pytest.mark.parametrize("name", ["whole", "neurons"])
def test_version_three_with_a_version_four_section_is_refused(
    tiny_trace: Trace, tmp_path: Path, name: str
) -> None:
    other = "neurons" if name == "whole" else "whole"
    path = tmp_path / "bad.json"
    data = tiny_trace.to_dict()
    del data[other], data["lens_mid"]
    data["schema_version"] = 3
    path.write_text(json.dumps(data), encoding="utf-8")
    message = _load_error(path)
    assert "schema version 3" in message and f"'{name}'" in message and "version 4" in message


def test_version_four_loads_without_lens_mid(tiny_trace: Trace, tmp_path: Path) -> None:
    data = tiny_trace.to_dict()
    del data["lens_mid"]
    data["schema_version"] = 4
    path = tmp_path / "v4.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    v4 = load_trace(path)
    assert v4.schema_version == 4 and v4.lens_mid is None and v4.neurons is not None
    assert "lens_mid" not in v4.to_dict()


def test_version_four_with_lens_mid_is_refused(tiny_trace: Trace, tmp_path: Path) -> None:
    path = _write_modified(tmp_path, tiny_trace, _set("schema_version", 4))
    message = _load_error(path)
    assert "schema version 4" in message and "'lens_mid'" in message and "version 5" in message


def test_lens_mid_is_the_lens_between_rows(tiny: Tiny) -> None:
    """``lens_mid`` reads resid_mid exactly as ``lens`` reads resid_post (one lens pass)."""
    from mechviz.tracing.record import lens_statistics

    rec, trace = tiny.rec, tiny.trace
    stats = lens_statistics(tiny.loaded.adapter, rec.boundaries()[1::2], rec.logits, 5)
    np.testing.assert_array_equal(trace.lens_mid.top_ids, stats["top_ids"].numpy())
    np.testing.assert_allclose(trace.lens_mid.top_probs, stats["top_probs"].numpy(), atol=1e-6)
    np.testing.assert_allclose(trace.lens_mid.entropy, stats["entropy"].numpy(), atol=1e-5)
