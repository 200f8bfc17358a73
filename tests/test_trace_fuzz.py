"""Hostile traces: every corrupt input is refused with one sentence naming the field.

Each case changes one thing in a valid trace (a tiny tied Llama); the control
test loads the unchanged trace in both encodings, so a refusal is the change's.
"""

from __future__ import annotations

import base64
import copy
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import run_cli

from mechviz.errors import MechvizError
from mechviz.tracing.io import dumps, load_trace
from mechviz.tracing.schema import Trace

Change = Callable[[dict], Any]


@pytest.fixture(scope="module")
def plain(tiny_trace: Trace) -> dict:
    """The tiny trace as JSON data with every array a nested list."""
    return tiny_trace.to_dict(packed=False)


@pytest.fixture(scope="module")
def packed(tiny_trace: Trace) -> dict:
    return json.loads(dumps(tiny_trace))


def _node(data: dict, path: str) -> tuple[Any, Any]:
    *parents, key = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, int(key) if isinstance(node, list) else key


def put(path: str, value: Any) -> Change:
    def change(data: dict) -> None:
        node, key = _node(data, path)
        node[key] = value

    return change


def edit(path: str, fn: Callable[[Any], Any]) -> Change:
    def change(data: dict) -> None:
        node, key = _node(data, path)
        node[key] = fn(node[key])

    return change


def _refused(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
    with pytest.raises(MechvizError) as info:
        load_trace(path)
    message = str(info.value)
    assert "\n" not in message and message.endswith("."), message
    assert message.startswith(f"{path}: "), message
    return message


def _scale_row(factor: float) -> Change:
    def change(data: dict) -> None:
        row = data["attention"]["pattern"][0][0][-1]
        data["attention"]["pattern"][0][0][-1] = [v * factor for v in row]

    return change


def _above_diagonal(data: dict) -> None:
    row = data["attention"]["pattern"][1][2][0]
    row[0], row[1] = 0.5, 0.5  # sums to 1, but query 0 looks at key 1


def _empty_top_k(data: dict) -> None:
    for section in ("lens", "output"):
        for key in ("top_ids", "top_probs"):
            arr = np.asarray(data[section][key])
            data[section][key] = np.zeros(arr.shape[:-1] + (0,)).tolist()


def _unsorted_top_k(data: dict) -> None:
    row = data["lens"]["top_probs"][2][3]
    row[0], row[1] = row[1], row[0] + 1e-3 if row[0] == row[1] else row[0]


def _repeated_top_id(data: dict) -> None:
    row = data["output"]["top_ids"][0]
    row[1] = row[0]


def _deep(data: dict) -> None:
    node: list = []
    data["resid"]["norm"] = node
    for _ in range(50):  # deep but loadable: refused by shape, not by a crash
        node.append([])
        node = node[0]


# name: (change, words the one-sentence message must contain)
CASES: dict[str, tuple[Change, list[str]]] = {
    # exact types
    "schema_version_true": (put("schema_version", True), ["'schema_version'", "integer"]),
    "schema_version_float": (put("schema_version", 2.0), ["'schema_version'", "integer"]),
    "string_as_number": (put("lens.entropy.0.0", "0.5"), ["'lens.entropy'", 'holds "0.5"']),
    "true_in_number_array": (put("resid.norm.0.0", True), ["'resid.norm'", "holds true"]),
    "null_in_number_array": (put("blocks.mlp_out_norm.0.0", None), ["'blocks.mlp_out_norm'"]),
    "float_as_token_id": (put("tokens.ids.1", 7042.7), ["'tokens.ids'", "integers"]),
    "whole_float_as_token_id": (put("tokens.ids.1", 20.0), ["'tokens.ids'", "integers"]),
    "dict_as_token_text": (put("tokens.text.0", {"a": 1}), ["'tokens.text'", "string"]),
    "dict_as_vocab_text": (put("vocab.1", {"a": 1}), ["'vocab.1'", "string"]),
    "list_as_prompt": (put("prompt", ["hi"]), ["'prompt'", "string"]),
    "n_layers_float": (put("model.n_layers", 3.0), ["'model.n_layers'", "integer"]),
    "n_heads_bool": (put("model.n_heads", True), ["'model.n_heads'", "integer"]),
    "d_vocab_zero": (put("model.d_vocab", 0), ["'model.d_vocab'", "at least 1"]),
    "tied_as_string": (put("model.tied_embeddings", "yes"), ["'model.tied_embeddings'"]),
    "negative_softcap": (put("model.final_logit_softcap", -1.0), ["'model.final_logit_softcap'"]),
    "unknown_top_key": (put("extra", 1), ["unknown key", "'extra'"]),
    "unknown_section_key": (put("lens.extra", []), ["'lens'", "'extra'"]),
    "vocab_key_negative": (put("vocab.-1", "x"), ["'vocab'", '"-1"']),
    "vocab_key_out_of_range": (put("vocab.999", "x"), ["'vocab'", "999", "d_vocab"]),
    "section_as_list": (put("blocks", []), ["'blocks'", "an object"]),
    "array_as_string": (put("attention.pattern", "0.5"), ["'attention.pattern'", "array"]),
    # numbers that do not fit
    "float64_only_value": (put("resid.sample.0.0.0", 1e300), ["'resid.sample'", "float32"]),
    "huge_integer_float": (put("resid.norm.0.1", 10**400), ["'resid.norm'", "too large"]),
    "huge_integer_id": (put("tokens.ids.0", 10**400), ["'tokens.ids'", "too large"]),
    "nan": (put("lens.top_probs.1.0.0", float("nan")), ["'lens.top_probs'", "NaN"]),
    "infinity": (put("output.entropy.0", float("inf")), ["'output.entropy'", "infinite"]),
    # meaning: probabilities
    "prob_above_one": (put("lens.top_probs.1.0.0", 7.5), ["'lens.top_probs'", "7.5", "[0, 1]"]),
    "prob_negative": (put("output.top_probs.0.4", -3.0), ["'output.top_probs'", "-3", "[0, 1]"]),
    "final_token_prob_above_one": (
        put("lens.final_token_prob.0.0", 1.5),
        ["'lens.final_token_prob'"],
    ),
    "attention_row_sums_to_5": (_scale_row(5.0), ["'attention.pattern'", "summing to 5"]),
    "attention_row_sums_to_half": (_scale_row(0.5), ["'attention.pattern'", "sum to 1"]),
    "attention_looks_ahead": (_above_diagonal, ["'attention.pattern'", "above the diagonal"]),
    "top_k_unsorted": (_unsorted_top_k, ["'lens.top_probs'", "sorted"]),
    "top_k_repeated_id": (_repeated_top_id, ["'output.top_ids'", "distinct"]),
    "top_k_width_zero": (_empty_top_k, ["'lens.top_ids'", "K = 0"]),
    # meaning: ids, ranks and indices
    "token_id_negative": (put("tokens.ids.1", -1), ["'tokens.ids'", "-1", "d_vocab"]),
    "token_id_beyond_vocab": (
        put("output.top_ids.5.0", 300),
        ["'output.top_ids'", "300", "d_vocab"],
    ),
    "lens_id_beyond_vocab": (put("lens.top_ids.0.0.0", 10**6), ["'lens.top_ids'", "d_vocab"]),
    "rank_negative": (put("lens.final_token_rank.1.1", -2), ["'lens.final_token_rank'", "-2"]),
    "rank_beyond_vocab": (put("lens.final_token_rank.1.1", 300), ["'lens.final_token_rank'"]),
    "neuron_negative": (put("mlp.top_neurons.0.0", -1), ["'mlp.top_neurons'", "d_mlp"]),
    "neuron_beyond_d_mlp": (put("mlp.top_neurons.0.0", 128), ["'mlp.top_neurons'", "128"]),
    "sample_dim_beyond_d_model": (
        put("resid.sample_dims.0", 64),
        ["'resid.sample_dims'", "d_model"],
    ),
    "sample_dim_repeated": (put("resid.sample_dims.1", 0), ["'resid.sample_dims'", "distinct"]),
    "offset_beyond_prompt": (put("tokens.offsets.2", [0, 999]), ["'tokens.offsets'", "prompt"]),
    "offset_negative": (put("tokens.offsets.2", [-4, 1]), ["'tokens.offsets'", "prompt"]),
    "offset_reversed": (put("tokens.offsets.2", [5, 2]), ["'tokens.offsets'", "[5, 2)"]),
    # meaning: statistics
    "entropy_negative": (put("lens.entropy.0.0", -1.0), ["'lens.entropy'", "nats"]),
    "entropy_above_max": (put("output.entropy.0", 99.0), ["'output.entropy'", "nats"]),
    "kl_negative": (put("lens.kl_to_final.0.0", -0.5), ["'lens.kl_to_final'", "negative"]),
    "norm_negative": (put("resid.norm.0.0", -1.0), ["'resid.norm'", "negative"]),
    "cosine_above_one": (put("embedding.cosine.0.1", 2.0), ["'embedding.cosine'", "[-1, 1]"]),
    # shapes
    "ragged": (edit("resid.norm.0", lambda row: row[:-1]), ["'resid.norm'", "rectangular"]),
    "deeply_nested": (_deep, ["'resid.norm'", "51 dimensions"]),
    "labels_renamed": (put("resid.labels.1", "0_post"), ["'resid.labels'"]),
    "lens_labels_renamed": (put("lens.labels.0", "start"), ["'lens.labels'"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_plain_trace_is_refused(plain: dict, tmp_path: Path, case: str) -> None:
    change, words = CASES[case]
    data = copy.deepcopy(plain)
    change(data)
    message = _refused(tmp_path, data)
    for word in words:
        assert word in message, (word, message)


def test_unchanged_trace_loads_in_both_encodings(plain: dict, packed: dict, tmp_path: Path) -> None:
    """The control for every case: the valid trace loads, plain or packed."""
    for name, data in [("plain", plain), ("packed", packed)]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        assert load_trace(path).to_dict(packed=name == "packed") == data


# --- packed arrays -----------------------------------------------------------------------


def _packed_field(field: str, **changes: Any) -> Change:
    def change(data: dict) -> None:
        section, name = field.split(".")
        blob = data[section][name]
        assert isinstance(blob, dict), f"{field} is not packed in this trace"
        blob.update(changes)

    return change


def spec_decode(blob: dict) -> np.ndarray:
    """The packed encoding exactly as docs/trace-format.md describes it, written apart."""
    assert blob["encoding"] == "shuffle+zlib+base64"
    dtype = np.dtype(blob["dtype"]).newbyteorder("<")
    raw = zlib.decompress(base64.b64decode(blob["data"]))
    planes = np.frombuffer(raw, dtype=np.uint8).reshape(dtype.itemsize, -1)
    arr = np.ascontiguousarray(planes.T).view(dtype).reshape(blob["shape"])
    return arr / blob["divisor"] if "divisor" in blob else arr


def spec_encode(arr: np.ndarray, dtype: str, divisor: int | None = None) -> dict:
    if divisor:
        arr = np.round(arr * divisor)
    out = np.ascontiguousarray(arr.astype(np.dtype(dtype).newbyteorder("<")))
    planes = out.view(np.uint8).reshape(-1, out.itemsize).T
    blob = {
        "encoding": "shuffle+zlib+base64",
        "dtype": out.dtype.name,
        "shape": list(out.shape),
        "data": base64.b64encode(zlib.compress(planes.tobytes())).decode(),
    }
    return {**blob, "divisor": divisor} if divisor else blob


def _repack(field: str, fn: Callable[[np.ndarray], np.ndarray], dtype: str | None = None) -> Change:
    """Decode a packed field, change its values, pack it again (validly encoded)."""

    def change(data: dict) -> None:
        section, name = field.split(".")
        blob = data[section][name]
        arr = fn(spec_decode(blob).copy())
        divisor = None if dtype else blob.get("divisor")
        data[section][name] = spec_encode(arr, dtype or blob["dtype"], divisor)

    return change


def test_spec_decoder_reads_every_packed_field(packed: dict, tiny_trace: Trace) -> None:
    """A reader written from the documentation gets the same arrays as mechviz."""
    loaded = Trace.from_dict(packed)
    seen = 0
    for section, fields in packed.items():
        if not isinstance(fields, dict):
            continue
        for name, blob in fields.items():
            if isinstance(blob, dict) and "encoding" in blob:
                ours = getattr(getattr(loaded, section), name)
                np.testing.assert_array_equal(spec_decode(blob).astype(ours.dtype), ours)
                seen += 1
    assert seen >= 10
    assert packed["attention"]["pattern"]["dtype"] == "uint16"
    assert packed["resid"]["pooled"]["dtype"] == "float16"


def test_unit_fractions_keep_every_row_sum() -> None:
    from mechviz.tracing.encoding import unit_fractions

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 64)) * 3
    logits[:, 40:] = -np.inf  # a causal row: zeros after the query
    rows = np.exp(logits - logits.max(-1, keepdims=True))
    rows /= rows.sum(-1, keepdims=True)
    q = unit_fractions(rows, 65535)
    assert (q.sum(-1) == 65535).all()
    assert (q[:, 40:] == 0).all()
    assert np.abs(q / 65535 - rows).max() < 1 / 65535
    naive = np.round(rows * 65535).sum(-1)
    assert (naive != 65535).any()  # the case the method exists for


def _bomb(data: dict) -> None:
    blob = data["attention"]["pattern"]
    blob["shape"] = [1 << 20, 1 << 20]
    blob["data"] = base64.b64encode(zlib.compress(bytes(1 << 20))).decode()


def _set_float16_inf(arr: np.ndarray) -> np.ndarray:
    arr.reshape(-1)[3] = np.inf
    return arr


PACKED_CASES: dict[str, tuple[Change, list[str]]] = {
    "bad_base64": (_packed_field("attention.pattern", data="%%%not base64"), ["zlib+base64"]),
    "bad_zlib": (
        _packed_field("attention.pattern", data=base64.b64encode(b"plain bytes").decode()),
        ["'attention.pattern'", "shuffle+zlib+base64"],
    ),
    "short_data": (
        _packed_field("attention.pattern", data=base64.b64encode(zlib.compress(b"ab")).decode()),
        ["'attention.pattern'", "wrong length"],
    ),
    "unknown_encoding": (
        _packed_field("resid.pooled", encoding="gzip"),
        ["'resid.pooled'", "gzip"],
    ),
    "divisor_on_ids": (_packed_field("lens.top_ids", divisor=7), ["'lens.top_ids'", "divisor"]),
    "divisor_zero": (_packed_field("attention.pattern", divisor=0), ["'attention.pattern'"]),
    "divisor_bool": (_packed_field("attention.pattern", divisor=True), ["'attention.pattern'"]),
    "divisor_too_small": (
        _packed_field("attention.pattern", divisor=1000),
        ["'attention.pattern'", "summing to 65.54"],
    ),
    "dtype_missing": (_packed_field("resid.sample", dtype=None), ["'resid.sample'", "dtype"]),
    "data_not_a_string": (_packed_field("resid.sample", data=[1, 2]), ["'resid.sample'", "data"]),
    "unknown_dtype": (
        _packed_field("resid.pooled", dtype="complex64"),
        ["'resid.pooled'", "dtype"],
    ),
    "float_dtype_for_ids": (
        _repack("lens.top_ids", lambda a: a, dtype="float32"),
        ["'lens.top_ids'", "integer dtypes"],
    ),
    "shape_not_a_list": (_packed_field("resid.pooled", shape="3x4"), ["'resid.pooled'", "shape"]),
    "shape_of_bools": (_packed_field("resid.pooled", shape=[True, 2]), ["'resid.pooled'", "shape"]),
    "decompression_bomb": (_bomb, ["'attention.pattern'", "too large"]),
    "shape_disagrees_with_model": (
        _repack("attention.pattern", lambda a: a[:, :-1]),
        ["'attention.pattern'", "shape", "H=4"],
    ),
    "float16_infinity": (_repack("resid.pooled", _set_float16_inf), ["'resid.pooled'", "infinite"]),
    "packed_prob_above_one": (
        _repack("lens.top_probs", lambda a: a * 3),
        ["'lens.top_probs'", "[0, 1]"],
    ),
    "packed_id_beyond_vocab": (
        _repack("lens.top_ids", lambda a: a + 1000),
        ["'lens.top_ids'", "d_vocab"],
    ),
}


@pytest.mark.parametrize("case", list(PACKED_CASES))
def test_hostile_packed_trace_is_refused(packed: dict, tmp_path: Path, case: str) -> None:
    change, words = PACKED_CASES[case]
    data = copy.deepcopy(packed)
    change(data)
    message = _refused(tmp_path, data)
    for word in words:
        assert word in message, (word, message)


# --- files that are not traces at all ------------------------------------------------------


def test_nested_100000_levels_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(MechvizError, match="nested too deeply"):
        load_trace(path)


def test_dev_null_is_not_reported_missing() -> None:
    with pytest.raises(MechvizError) as info:
        load_trace("/dev/null")
    assert "does not exist" not in str(info.value)
    assert "not a regular file" in str(info.value)


def test_schema_version_one_still_reads() -> None:
    """The committed small trace is schema version 1 (nested lists): it must still load."""
    path = Path(__file__).parent / "data" / "small_trace.json"
    assert json.loads(path.read_text())["schema_version"] == 1
    trace = load_trace(path)
    assert trace.schema_version == 1 and trace.n_positions > 1


def test_published_json_schema_is_current() -> None:
    """docs/trace.schema.json is what mechviz.tracing.validate.json_schema() builds."""
    from mechviz.tracing.validate import json_schema

    published = Path(__file__).parents[1] / "docs" / "trace.schema.json"
    assert json.loads(published.read_text()) == json_schema(), (
        "regenerate with: python -m mechviz.tracing.validate > docs/trace.schema.json"
    )


# --- the CLI never shows a traceback for these ---------------------------------------------


@pytest.mark.parametrize("case", ["top_k_width_zero", "prob_above_one", "deeply_nested"])
@pytest.mark.parametrize("command", ["inspect", "scene"])
def test_cli_refuses_hostile_traces(plain: dict, tmp_path: Path, case: str, command: str) -> None:
    data = copy.deepcopy(plain)
    CASES[case][0](data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    args = (
        ["inspect", str(path)]
        if command == "inspect"
        else ["scene", "Unembedding", "--trace", str(path), "-o", str(tmp_path / "x.gif")]
    )
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Error:") and str(path) in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_every_hostile_trace_is_one_sentence_through_the_cli(
    plain: dict, packed: dict, tmp_path: Path
) -> None:
    """All the cases above through `mechviz inspect` (in process): exit 2, one line, no file."""
    from click.testing import CliRunner

    from mechviz.cli.main import main

    cases = [(plain, change) for change, _ in CASES.values()]
    cases += [(packed, change) for change, _ in PACKED_CASES.values()]
    for base, change in cases:
        data = copy.deepcopy(base)
        change(data)
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
        result = CliRunner().invoke(main, ["inspect", str(path)])
        assert result.exit_code == 2, (result.output, result.exception)
        assert isinstance(result.exception, SystemExit)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]
    assert len(cases) == len(CASES) + len(PACKED_CASES) >= 70
