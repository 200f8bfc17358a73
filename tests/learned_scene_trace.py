"""A small trace with ``tuned_lens`` and ``features`` sections, from a tiny model (no training).

Both scene tests (TunedLens, Features) draw it, so they never wait for a
trained lens or SAE. The translators are nudged off the identity so the two
lenses differ.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from conftest import TINY_PROMPT, make_tiny
from test_learned_trace import _lens_meta, _sae

from mechviz.learned.tuned_lens import TunedLens
from mechviz.tracing.record import TraceOptions, build_trace
from mechviz.tracing.schema import Trace


@lru_cache(maxsize=1)
def learned_trace() -> Trace:
    """The tiny llama's trace of the tiny prompt, with both learned sections."""
    tiny = make_tiny("llama", top_k=5, full=False)
    lens = TunedLens.for_model(tiny.loaded)
    torch.manual_seed(1)
    with torch.no_grad():
        for translator in lens.translators:
            translator.weight.add_(0.3 * torch.randn_like(translator.weight))
    lens.meta = _lens_meta(tiny.trace.n_layers + 1)
    sae = _sae(tiny.trace.model.d_model)
    options = TraceOptions(top_k=5, tuned_lens=lens, sae=sae)
    return build_trace(tiny.loaded, TINY_PROMPT, tiny.rec, options)
