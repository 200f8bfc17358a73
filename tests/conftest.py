"""Shared fixtures: a fake character tokenizer, tiny random models, the default model.

Also two guards that keep the suite independent of order (issue 20):

- every test runs inside :func:`_global_state`, which snapshots the process-wide
  state a test can change (Manim's ``config``, the scene settings in use, a
  pending stop signal, the environment, the working folder, ``sys.path``,
  torch's default dtype, grad mode and threads), restores it afterwards, and fails the
  test that left it changed, naming what it changed;
- ``MECHVIZ_TEST_ORDER=reverse`` runs the test files in reverse order, and
  ``MECHVIZ_TEST_ORDER=shuffle:SEED`` in a seeded random order of files and of
  the tests inside each file (the seed is printed in the header).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

# --- order and global state --------------------------------------------------------


def _order() -> tuple[str, int | None]:
    value = os.environ.get("MECHVIZ_TEST_ORDER", "").strip()
    if value in ("", "file"):
        return "file", None
    if value == "reverse":
        return "reverse", None
    if value.startswith("shuffle:") and value[8:].isdigit():
        return "shuffle", int(value[8:])
    raise pytest.UsageError(
        f"MECHVIZ_TEST_ORDER is {value!r}; use reverse or shuffle:SEED (a whole number)."
    )


def pytest_report_header(config: pytest.Config) -> str:
    kind, seed = _order()
    return f"test order: {kind}" + (f" (seed {seed})" if seed is not None else "")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items) -> None:
    kind, seed = _order()
    if kind == "file":
        return
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(str(item.path), []).append(item)
    groups = list(files.values())
    if kind == "reverse":
        groups.reverse()
    else:
        rng = random.Random(seed)
        rng.shuffle(groups)
        for group in groups:
            rng.shuffle(group)
    items[:] = [item for group in groups for item in group]


def _manim_config() -> dict[str, Any]:
    from manim import config

    return dict(config._d)


def _scene_settings() -> Any:
    from mechviz.visual import settings

    return settings._current


def _stop_signals() -> list[int]:
    from mechviz import errors

    return list(errors._stop_signals)


# Set by pytest itself, or by a library the first time one of its parts is imported
# (torch's optimizers import torch._inductor, which names its cache folder).
_OWN_VARIABLES = {"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR"}


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _OWN_VARIABLES}


def _snapshot() -> dict[str, Any]:
    """The process-wide state a test can change, by name (see :func:`_global_state`)."""
    return {
        "Manim's config": _manim_config(),
        "the scene settings in use (mechviz.visual.settings.use)": _scene_settings(),
        "a pending stop signal": _stop_signals(),
        "os.environ": _environment(),
        "the working folder": os.getcwd(),
        "sys.path": list(sys.path),
        "torch's default dtype": torch.get_default_dtype(),
        "torch's grad mode": torch.is_grad_enabled(),
        "torch's thread count": torch.get_num_threads(),
    }


@pytest.fixture(autouse=True)
def _global_state():
    """Restore what a test changed in the process, and fail the test that changed it."""
    from manim import config

    manim_before = config.copy()
    before = _snapshot()
    yield
    after = _snapshot()
    changed = [name for name in before if before[name] != after[name]]
    if not changed:
        return
    # Put everything back before failing, so one leak fails one test, not the rest.
    config.update(manim_before)
    from mechviz import errors
    from mechviz.visual import settings

    settings._current = before["the scene settings in use (mechviz.visual.settings.use)"]
    errors._stop_signals[:] = before["a pending stop signal"]
    for name in set(after["os.environ"]) - set(before["os.environ"]):
        del os.environ[name]
    os.environ.update(before["os.environ"])
    os.chdir(before["the working folder"])
    sys.path[:] = before["sys.path"]
    torch.set_default_dtype(before["torch's default dtype"])
    torch.set_grad_enabled(before["torch's grad mode"])
    torch.set_num_threads(before["torch's thread count"])
    details = []
    for name in changed:
        if isinstance(before[name], dict):
            keys = sorted(
                k
                for k in set(before[name]) | set(after[name])
                if before[name].get(k) != after[name].get(k)
            )
            details.append(f"{name} ({', '.join(map(str, keys))})")
        else:
            details.append(name)
    pytest.fail("This test left process-wide state changed: " + "; ".join(details), pytrace=False)


# --- a fake tokenizer -------------------------------------------------------------

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
FIRST_CHAR = len(SPECIALS)  # printable ASCII 32..126 follow the special tokens
CHARS = [chr(c) for c in range(32, 127)]


class CharTokenizer:
    """One token per printable ASCII character; ids above the characters are unused.

    Enough of the Hugging Face tokenizer interface for mechviz: ``__call__`` with
    or without ``return_tensors="pt"`` and ``return_offsets_mapping``,
    ``decode`` and ``convert_ids_to_tokens``. It is a "slow" tokenizer
    (``is_fast = False``), so mechviz derives offsets by decoding prefixes.
    """

    is_fast = False
    bos_token_id = 1
    eos_token_id = 2
    pad_token_id = 0
    unk_token_id = 3

    def __init__(self, vocab_size: int = 300, add_bos: bool = True) -> None:
        assert vocab_size > FIRST_CHAR + len(CHARS)
        self.vocab_size = vocab_size
        self.add_bos = add_bos

    def __len__(self) -> int:
        return self.vocab_size

    def token(self, token_id: int) -> str:
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            raise IndexError(f"token id {token_id} outside the vocabulary")
        if token_id < FIRST_CHAR:
            return SPECIALS[token_id]
        if token_id < FIRST_CHAR + len(CHARS):
            return CHARS[token_id - FIRST_CHAR]
        return f"<extra_{token_id}>"

    def encode(self, text: str) -> list[int]:
        ids = [self.bos_token_id] if self.add_bos else []
        for ch in text:
            ids.append(FIRST_CHAR + CHARS.index(ch) if ch in CHARS else self.unk_token_id)
        return ids

    def __call__(
        self,
        text: str,
        return_tensors: str | None = None,
        return_offsets_mapping: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        ids = self.encode(text)
        out: dict[str, Any] = {"input_ids": ids, "attention_mask": [1] * len(ids)}
        if return_offsets_mapping:
            spans = [(0, 0)] if self.add_bos else []
            spans += [(i, i + 1) for i in range(len(text))]
            out["offset_mapping"] = spans
        if return_tensors == "pt":
            out = {k: torch.tensor([v], dtype=torch.long) for k, v in out.items()}
        elif return_tensors is not None:
            raise ValueError(f"unsupported return_tensors={return_tensors!r}")
        return out

    def decode(
        self,
        ids: Any,
        clean_up_tokenization_spaces: bool = False,
        skip_special_tokens: bool = False,
        **kwargs: Any,
    ) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        return "".join(
            self.token(i) for i in ids if not (skip_special_tokens and int(i) < FIRST_CHAR)
        )

    def convert_ids_to_tokens(self, ids: Any) -> Any:
        if isinstance(ids, (list, tuple)):
            return [self.token(i) for i in ids]
        return self.token(ids)


@pytest.fixture()
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


# --- tiny random models ------------------------------------------------------------

VOCAB = 300
HIDDEN = 64
HEADS = 4
HEAD_DIM = HIDDEN // HEADS
INTERMEDIATE = 128
LAYERS = 3
TINY_PROMPT = "Hello, tiny world! Hello?"
# Larger than the usual 0.02 so the tiny models' distributions are peaked and a
# lens that is slightly wrong shows up as a large difference in probability.
INIT_RANGE = 0.3

FAMILIES = [
    "llama",
    "mistral",
    "qwen2",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gpt2",
    "gpt_neox",
    "phi",
    "phi3",
]
TIED = {"llama", "gemma", "gemma2", "gemma3_text", "gpt2"}
GEMMA_NORM = {"gemma", "gemma2", "gemma3_text"}  # RMSNorm scaled by (1 + weight)
LAYER_NORM = {"gpt2", "gpt_neox", "phi"}


def _tiny_config(family: str) -> tuple[Any, type]:
    import transformers as tf

    llama_like = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE,
        max_position_embeddings=128,
        initializer_range=INIT_RANGE,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if family == "llama":
        return tf.LlamaConfig(
            **llama_like, num_key_value_heads=2, tie_word_embeddings=True
        ), tf.LlamaForCausalLM
    if family == "mistral":
        return tf.MistralConfig(
            **llama_like, num_key_value_heads=2, tie_word_embeddings=False
        ), tf.MistralForCausalLM
    if family == "qwen2":
        return tf.Qwen2Config(
            **llama_like, num_key_value_heads=2, tie_word_embeddings=False
        ), tf.Qwen2ForCausalLM
    if family == "gemma":
        return tf.GemmaConfig(
            **llama_like, head_dim=HEAD_DIM, num_key_value_heads=1, tie_word_embeddings=True
        ), tf.GemmaForCausalLM
    if family == "gemma2":
        return tf.Gemma2Config(
            **llama_like,
            head_dim=HEAD_DIM,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            final_logit_softcapping=30.0,
            query_pre_attn_scalar=HEAD_DIM,
        ), tf.Gemma2ForCausalLM
    if family == "gemma3_text":
        return tf.Gemma3TextConfig(
            **llama_like,
            head_dim=HEAD_DIM,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            query_pre_attn_scalar=HEAD_DIM,
        ), tf.Gemma3ForCausalLM
    if family == "gpt2":
        return tf.GPT2Config(
            vocab_size=VOCAB,
            n_embd=HIDDEN,
            n_layer=LAYERS,
            n_head=HEADS,
            n_inner=INTERMEDIATE,
            n_positions=128,
            initializer_range=INIT_RANGE,
            bos_token_id=1,
            eos_token_id=2,
        ), tf.GPT2LMHeadModel
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(**llama_like, tie_word_embeddings=False), tf.GPTNeoXForCausalLM
    if family == "phi":
        return tf.PhiConfig(**llama_like, tie_word_embeddings=False), tf.PhiForCausalLM
    if family == "phi3":
        return tf.Phi3Config(**llama_like, tie_word_embeddings=False), tf.Phi3ForCausalLM
    raise KeyError(family)


def _randomise_norms(model: torch.nn.Module, gemma_convention: bool) -> None:
    """Give every norm non-trivial weights (and biases), so the lens must apply them."""
    with torch.no_grad():
        for module in model.modules():
            if "norm" not in type(module).__name__.lower():
                continue
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.nn.Parameter):
                noise = 0.3 * torch.randn_like(weight)
                weight.copy_(noise if gemma_convention else 1.0 + noise)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.nn.Parameter):
                bias.copy_(0.1 * torch.randn_like(bias))


def build_tiny_model(family: str) -> torch.nn.Module:
    """A small randomly initialised causal LM of ``family``, float32, eager attention."""
    config, cls = _tiny_config(family)
    config._attn_implementation = "eager"  # the path that returns attention weights
    torch.manual_seed(0)
    model = cls(config).float().eval()
    _randomise_norms(model, gemma_convention=family in GEMMA_NORM)
    assert model.config._attn_implementation == "eager"
    assert model.config.model_type == family
    return model


@dataclass
class Tiny:
    """A tiny model traced once on ``TINY_PROMPT``."""

    family: str
    loaded: Any  # LoadedModel
    ids: torch.Tensor  # [P]
    rec: Any  # Recording
    trace: Any  # Trace


def make_tiny(family: str, top_k: int = 5, full: bool = True) -> Tiny:
    from mechviz.model.load import wrap_model
    from mechviz.tracing.record import TraceOptions, build_trace, record, tokenize

    model = build_tiny_model(family)
    loaded = wrap_model(model, CharTokenizer(VOCAB), f"tiny-{family}")
    ids = tokenize(loaded, TINY_PROMPT, max_tokens=64)
    rec = record(loaded, ids)
    trace = build_trace(loaded, TINY_PROMPT, rec, TraceOptions(top_k=top_k, full=full))
    return Tiny(family=family, loaded=loaded, ids=ids, rec=rec, trace=trace)


@pytest.fixture(scope="session", params=FAMILIES)
def tiny(request: pytest.FixtureRequest) -> Tiny:
    return make_tiny(request.param)


@pytest.fixture(scope="session")
def tiny_trace():
    """A trace of a tiny tied Llama (no full residuals), for schema and io tests."""
    return make_tiny("llama", top_k=5, full=False).trace


@pytest.fixture(scope="session")
def default_model():
    """The real default model, loaded once from the cache (shared with ``mechviz.trace``)."""
    from mechviz.api import loaded_model

    return loaded_model(progress=False)


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -m mechviz ARGS`` in a subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "mechviz", *args],
        cwd=cwd,
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
