"""mechviz's Manim scenes; each reads a trace and animates one idea.

Installed as ``mechviz.scenes``; ``manim -ql scenes/residual_flow.py ResidualFlow``
works from a checkout too.
"""

from __future__ import annotations

# name -> (module, one line for `mechviz scenes`); modules import manim, so
# they are imported only when a scene is rendered.
SCENES: dict[str, tuple[str, str]] = {
    "Embedding": ("embedding", "Tokens become ids, ids pick rows of W_E, rows become vectors."),
    "ResidualFlow": ("residual_flow", "The residual stream rises; the logit lens reads it."),
    "Attention": ("attention", "One head's query-by-key pattern, as a grid and as arcs."),
    "Unembedding": ("unembedding", "Final norm and W_U turn the last vector into next-token odds."),
    "Story": ("story", "The four scenes above as one explainer, with transitions."),
    "WholeModel": ("whole_model", "Every block's attention, residual and MLP rows in one picture."),
    "Neurons": ("neurons", "Which MLP neurons fire on which tokens, from early to late layers."),
    "LogitAttribution": (
        "logit_attribution",
        "What each layer's attention and MLP add to a logit.",
    ),
    "Dictionaries": ("dictionaries", "Each layer's stream read with the model's own token tables."),
    "EmbeddingSimilarity": (
        "embedding_similarity",
        "Which words W_E puts close, and how often token products are positive.",
    ),
    "WeightStats": (
        "weight_stats",
        "sigma/mean(|w|) by layer, the parameter tally, layer-0 heads.",
    ),
    "TunedLens": (
        "tuned_lens",
        "The logit lens beside a trained tuned lens; held-out bits per byte by layer.",
    ),
    "Features": (
        "features",
        "One residual vector as a sum of sparse-autoencoder features plus dark matter.",
    ),
    "Ablation": ("ablation", "The prediction and lens before and after heads are ablated."),
    "Patching": ("patching", "Which clean-run activations restore the answer in a corrupt run."),
    "Compare": ("compare", "Two traces of one prompt length: the last position, A into B."),
}
