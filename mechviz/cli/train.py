"""``mechviz train-lens`` and ``mechviz train-sae``: the learned readouts."""

from __future__ import annotations

import click

from mechviz.cli.common import (
    learning_model,
    say,
)
from mechviz.errors import MechvizError


@click.command(name="train-lens")
@click.option(
    "--tokens",
    type=int,
    default=None,
    help="Stop after this many training tokens (a quick lens: 2000, about 2 minutes).",
)
@click.option(
    "--minutes",
    type=float,
    default=None,
    help="Stop after this many minutes of training [default: 25, without --tokens].",
)
@click.option(
    "--eval-tokens",
    type=int,
    default=2048,
    show_default=True,
    help="Held-out tokens for the per-layer table of both lenses.",
)
@click.option("--fresh", is_flag=True, help="Start again from the identity, not the last run.")
@click.option(
    "--model", "-m", default=None, metavar="MODEL", help="[default: SmolLM2-135M-Instruct]"
)
@click.option(
    "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
)
def train_lens(
    tokens: int | None,
    minutes: float | None,
    eval_tokens: int,
    fresh: bool,
    model: str | None,
    device: str,
) -> None:
    """Train a tuned lens on real text (fetched once from Debian), then compare both lenses.

    One affine translator per layer (Belrose et al. 2023), trained to make each
    layer's readout match the model's final distribution. A second run
    continues the first unless --fresh. Prints, per layer, the logit lens and
    the tuned lens on held-out text (bits per byte against the true next token,
    and KL to the final distribution); `mechviz trace --tuned-lens` records it.
    """
    from mechviz.learned.corpus import load_corpus
    from mechviz.learned.tuned_lens import evaluate, save_tuned_lens, train_tuned_lens

    if eval_tokens < 64:
        raise MechvizError(f"--eval-tokens must be at least 64; got {eval_tokens}.")
    loaded = learning_model(model, device)
    progress = True  # a line rewritten in place on a terminal, else one every 30 s
    corpus = load_corpus(loaded.tokenizer, "train", progress=True)
    lens, state = train_tuned_lens(
        loaded, corpus, tokens=tokens, minutes=minutes, resume=not fresh, progress=progress
    )
    held = load_corpus(loaded.tokenizer, "eval", progress=True)
    evaluation = evaluate(loaded, lens, held, tokens=eval_tokens, progress=progress)
    folder = save_tuned_lens(loaded, lens, state, corpus, evaluation)
    click.echo(evaluation.table())
    say(
        f"Trained on {state.tokens:,} tokens in {state.seconds / 60:.1f} min; saved in {folder}. "
        "Record it in a trace with `mechviz trace PROMPT --tuned-lens`."
    )


@click.command(name="train-sae")
@click.option(
    "--layer", type=int, default=None, help="Read the residual after this layer [default: middle]."
)
@click.option(
    "--tokens",
    type=int,
    default=1 << 20,
    show_default=True,
    help="Activations gathered for training (a quick SAE: 20000).",
)
@click.option("--features", type=int, default=None, help="Dictionary size [default: 8 x d_model].")
@click.option("--k", type=int, default=32, show_default=True, help="Active features per token.")
@click.option(
    "--minutes", type=float, default=None, help="Bound the whole run to this many minutes."
)
@click.option(
    "--model", "-m", default=None, metavar="MODEL", help="[default: SmolLM2-135M-Instruct]"
)
@click.option(
    "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
)
def train_sae(
    layer: int | None,
    tokens: int,
    features: int | None,
    k: int,
    minutes: float | None,
    model: str | None,
    device: str,
) -> None:
    """Train a sparse autoencoder on one layer's residual stream, over real text.

    A TopK SAE (Gao et al. 2024): each token's residual vector written as a sum
    of k features from a dictionary of 8 x d_model, plus an error ("dark
    matter"). Prints its held-out quality and saves feature dashboards (top
    contexts, promoted tokens); `mechviz trace --sae` records the features.
    """
    from mechviz.learned.corpus import load_corpus
    from mechviz.learned.sae import check_layer
    from mechviz.learned.sae import train_sae as run

    if features is not None and features < 1:
        raise MechvizError(f"--features must be at least 1; got {features}.")
    loaded = learning_model(model, device)
    layer = check_layer(loaded, layer)
    corpus = load_corpus(loaded.tokenizer, "train", progress=True)
    sae = run(
        loaded,
        corpus,
        layer=layer,
        tokens=tokens,
        features=features,
        k=k,
        minutes=minutes,
        progress=True,
    )
    ev = sae.meta["evaluation"]
    click.echo(
        f"layer {layer}: {sae.features} features, k = {sae.k}; held out: variance explained "
        f"{ev['fve']:.3f}, mean L0 {ev['l0']:.1f}, dead {ev['dead_share']:.1%}; next-token loss "
        f"{ev['ce_clean']:.3f} nats clean, {ev['ce_sae']:.3f} with the SAE "
        f"(+{ev['ce_sae'] - ev['ce_clean']:.3f}), {ev['ce_zero']:.3f} with the layer zeroed."
    )
    say(f"Record it in a trace with `mechviz trace PROMPT --sae --sae-layer {layer}`.")
