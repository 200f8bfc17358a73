"""Terminal views of a trace (``mechviz inspect``), drawn with rich."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mechviz.errors import MechvizError
from mechviz.model.tokens import shown
from mechviz.tracing.schema import ANALYSES, Trace

if TYPE_CHECKING:
    from mechviz.tracing.neurons import Selection

CELL_WIDTH = 14  # characters a lens cell needs: a short token and "0.00"


def lens_table(trace: Trace, width: int = 200) -> Table:
    """Layer-by-position table of the logit lens's top-1 token and probability.

    Only the last positions that fit in ``width`` characters are shown: the
    last one holds the prediction.
    """
    fits = max(1, (width - 10) // (CELL_WIDTH + 3))
    first = max(0, trace.n_positions - fits)
    shown_positions = range(first, trace.n_positions)
    title = f"Logit lens: top-1 token after each layer ({escape(trace.model.id)})"
    if first:
        title += f"\nlast {len(shown_positions)} of {trace.n_positions} positions"
    table = Table(title=title)
    table.add_column("layer", justify="right", style="dim", no_wrap=True, min_width=5)
    for p in shown_positions:
        table.add_column(
            Text(shown(trace.tokens.text[p])),
            no_wrap=True,
            max_width=CELL_WIDTH,
            overflow="ellipsis",
        )
    for b, label in enumerate(trace.lens.labels):
        cells = []
        for p in shown_positions:
            token = trace.token_text(trace.lens.top_ids[b, p, 0])
            prob = float(trace.lens.top_probs[b, p, 0])
            style = "bold green" if prob >= 0.5 else ("yellow" if prob >= 0.1 else "")
            cells.append(Text(f"{shown(token)[: CELL_WIDTH - 5]} {prob:.2f}", style=style))
        table.add_row(label.removesuffix("_post"), *cells)
    return table


def print_report(trace: Trace, console: Console | None = None, *, position: int = -1) -> None:
    """The lens table and the prediction, then a table for every analysis the trace holds.

    ``position`` is the position the attribution and dictionary tables read
    (negative counts from the end).
    """
    console = console or Console()
    pos = checked_position(trace, position)
    m = trace.model
    console.print(
        f"[bold]{escape(m.id)}[/] ({m.architecture}, {m.n_layers} layers, {m.n_heads} heads, "
        f"d_model {m.d_model}, {m.dtype}) on {escape(repr(trace.prompt))}",
        highlight=False,
    )
    console.print(lens_table(trace, console.width))
    token, prob = trace.prediction
    console.print(
        f"Prediction after the last token: [bold green]{escape(repr(trace.token_text(token)))}[/] "
        f"with probability {prob:.3f}",
        highlight=False,
    )
    if trace.attribution is not None:
        console.print(attribution_table(trace, pos))
    if trace.dictionaries is not None:
        console.print(dictionary_table(trace, pos))
    if trace.similarity is not None:
        console.print(similarity_table(trace))
    if trace.weights is not None:
        for table in weight_tables(trace):
            console.print(table)
    if trace.tuned_lens is not None:
        console.print(tuned_lens_table(trace, pos))
    if trace.features is not None:
        print_features(trace, console, position=pos, top=5)
    missing = [name for name in ANALYSES if getattr(trace, name) is None]
    if missing:
        console.print(
            f"[dim]Not analysed: {', '.join(missing)} (add with `mechviz analyze`).[/]",
            highlight=False,
        )


def checked_position(trace: Trace, position: int) -> int:
    """``position`` as an index in ``[0, P)``, or one sentence when it is out of range."""
    P = trace.n_positions
    if not -P <= position < P:
        raise MechvizError(
            f"--position {position} is out of range; this prompt has positions 0 to {P - 1} "
            "(or -1 for the last)."
        )
    return position % P


def _at(trace: Trace, pos: int) -> str:
    return f"position {pos} ({escape(shown(trace.tokens.text[pos]))})"


def _tok(trace: Trace, token_id: int) -> str:
    return escape(shown(trace.token_text(int(token_id))))


ATTRIBUTION_ROWS = 12  # parts listed by |contribution|; the rest are summed on one row


def attribution_table(trace: Trace, pos: int, rows: int = ATTRIBUTION_ROWS) -> Table:
    """The largest parts of the top-1 logit at ``pos`` (and of the difference with ``versus``).

    The rows not listed are summed on one line, so the column adds up to the
    recorded logit on screen.
    """
    a = trace.attribution
    target = _tok(trace, a.token[pos])
    title = f"Direct logit attribution of {target} at {_at(trace, pos)}"
    names = boundary_parts(trace.n_layers)
    table = Table(title=title)
    table.add_column("part", style="dim", no_wrap=True)
    table.add_column(f"logit {target}", justify="right")
    if a.versus is not None:
        table.add_column(f"{target} − {_tok(trace, a.versus)}", justify="right")
    parts = a.parts[:, pos]  # [T, B]
    order = np.argsort(-np.abs(parts[0]), kind="stable")
    listed, rest = order[:rows], order[rows:]
    for i in listed:
        table.add_row(names[i], *(f"{v:+.3f}" for v in parts[:, i]))
    if len(rest):
        table.add_row(f"{len(rest)} other parts", *(f"{v:+.3f}" for v in parts[:, rest].sum(-1)))
    table.add_row("bias (final norm, W_U)", *(f"{v:+.3f}" for v in a.bias[:, pos]))
    table.add_section()
    table.add_row("sum of parts", *(f"{v:.3f}" for v in parts.sum(-1) + a.bias[:, pos]))
    table.add_row("recorded logit", *(f"{v:.3f}" for v in a.logit[:, pos]), style="bold")
    if not np.allclose(a.output[:, pos], a.logit[:, pos]):
        table.add_row("after the soft cap", *(f"{v:.3f}" for v in a.output[:, pos]))
    heads = a.heads[0, pos]  # [L, H]
    top = np.argsort(-np.abs(heads).ravel(), kind="stable")[:5]
    table.caption = "largest heads: " + ", ".join(
        f"L{i // heads.shape[1]}.H{i % heads.shape[1]} {heads.ravel()[i]:+.2f}" for i in top
    )
    return table


def boundary_parts(n_layers: int) -> list[str]:
    """Names of ``attribution.parts``: ``embed``, then ``L{l} attn``, ``L{l} MLP``."""
    names = ["embed"]
    for layer in range(n_layers):
        names += [f"L{layer} attn", f"L{layer} MLP"]
    return names


DICTIONARY_SHOWN = 3  # matches per cell


def dictionary_table(trace: Trace, pos: int, shown_k: int = DICTIONARY_SHOWN) -> Table:
    """Per layer boundary at ``pos``: the top matches under each dictionary, and the lens."""
    d = trace.dictionaries
    tied = trace.model.tied_embeddings
    title = f"Dictionaries at {_at(trace, pos)}: normalised amplitudes A = cos(state, entry)"
    table = Table(title=title)
    table.add_column("layer", justify="right", style="dim")
    columns = [("input W_E" + (" = output W_U (tied)" if tied else ""), "input")]
    if not tied:
        columns.append(("output W_U", "output"))
    columns.append((f"middle ({d.middle_layers} layers, prompt tokens)", "middle"))
    for head, _ in columns:
        table.add_column(head)
    table.add_column("logit lens top-1")
    for y, label in enumerate(trace.lens.labels):
        cells = []
        for _, name in columns:
            ids, amp = getattr(d, f"{name}_ids")[y, pos], getattr(d, f"{name}_amp")[y, pos]
            cells.append("  ".join(f"{_tok(trace, i)} {a:.2f}" for i, a in zip(ids[:shown_k], amp)))
        lens = f"{_tok(trace, trace.lens.top_ids[y, pos, 0])} {trace.lens.top_probs[y, pos, 0]:.2f}"
        table.add_row(label.removesuffix("_post"), *cells, lens)
    return table


def similarity_table(trace: Trace) -> Table:
    """Cosines of W_E rows for the words, and the share of positive inner products."""
    s = trace.similarity
    table = Table(title="Cosine similarity of W_E rows")
    table.add_column("", style="dim")
    words = [escape(shown(w)) for w in s.words]
    for w in words:
        table.add_column(w, justify="right")
    for w, row in zip(words, s.cosine):
        table.add_row(w, *(f"{v:.2f}" for v in row))
    table.caption = (
        f"{s.positive_share:.1%} of inner products are positive over the "
        f"{s.sample * (s.sample - 1) // 2:,} pairs of {s.sample:,} sampled tokens "
        "(seed 004: 81% for Llama-2 7B)"
    )
    return table


def weight_tables(trace: Trace) -> list[Table]:
    """Sigma / mean(|w|) per layer, the parameter tally, and layer 0's head tokens."""
    w = trace.weights
    ratios = Table(title="sigma / mean(|w|) per layer (a zero-centred Gaussian: 1.25)")
    ratios.add_column("layer", justify="right", style="dim")
    for name in w.ratio_names:
        ratios.add_column(f"{name} model", justify="right")
        ratios.add_column(f"{name} heads", justify="right")
    for layer in range(trace.n_layers):
        cells = []
        for m in range(len(w.ratio_names)):
            cells += [f"{w.ratio_model[layer, m]:.3f}", f"{w.ratio_heads[layer, m]:.3f}"]
        ratios.add_row(str(layer), *cells)
    tally = Table(title="Parameters by component")
    tally.add_column("component")
    tally.add_column("parameters", justify="right")
    tally.add_column("share", justify="right")
    for name, count in zip(w.tally_names, w.tally_counts):
        tally.add_row(escape(name), f"{int(count):,}", f"{count / max(w.total, 1):.1%}")
    tally.add_section()
    tally.add_row("total", f"{w.total:,}", "100.0%", style="bold")
    heads = Table(title="Layer 0: tokens that give each head its largest queries and keys")
    heads.add_column("head", justify="right", style="dim")
    heads.add_column("query tokens")
    heads.add_column("key tokens")
    for h in range(w.query_ids.shape[0]):
        q = " ".join(_tok(trace, i) for i in w.query_ids[h, :6])
        k = " ".join(_tok(trace, i) for i in w.key_ids[h, :6])
        heads.add_row(str(h), q, k)
    return [ratios, tally, heads]


# --- mechviz neurons --------------------------------------------------------------------------

NEURON_STYLES = {  # the seed's colours; a background, so that a token's extent shows
    "high": "bold white on red3",
    "mid": "black on dark_orange",
    "low": "white on grey30",
    "neg": "bold white on blue3",
}


def neuron_tokens(
    tokens: list[str], values: np.ndarray, hi: float, lo: float, margin: float
) -> Text:
    """The prompt's tokens, each on the colour of its activation class.

    Args:
        tokens: ``[P]`` token texts.
        values: ``[P]`` one neuron's activation at each position.
        hi: Upper threshold (activation units).
        lo: Lower threshold (activation units).
        margin: Red starts at ``hi + margin``.

    Returns:
        A rich ``Text``; token ``p`` carries ``NEURON_STYLES[class of values[p]]``.

    """
    from mechviz.tracing.neurons import activation_class

    line = Text()
    for p, (text, value) in enumerate(zip(tokens, values)):
        if p:
            line.append(" ")  # apart, so two tokens of one colour stay two
        kind = activation_class(float(value), hi, lo, margin)
        line.append(shown(text), style=NEURON_STYLES[kind])
    return line


def neuron_legend(sel: Selection) -> Text:
    """One line: which colour means which range (the rule's own units)."""
    from mechviz.tracing.neurons import MARGIN

    units = " std" if sel.relative else ""
    top = sel.above + MARGIN
    parts = [
        (f"red > {top:g}{units}", "high"),
        (f"orange {sel.above:g} to {top:g}{units}", "mid"),
        (f"grey {sel.below:g} to {sel.above:g}{units}", "low"),
        (f"blue < {sel.below:g}{units}", "neg"),
    ]
    line = Text("colours: ")
    for i, (label, kind) in enumerate(parts):
        line.append(label, style=NEURON_STYLES[kind])
        if i < len(parts) - 1:
            line.append("  ")
    return line


def print_neurons(
    trace: Trace,
    console: Console | None = None,
    *,
    layer: int | None = None,
    above: float | None = None,
    below: float | None = None,
    relative: bool | None = None,
    top: int = 5,
) -> None:
    """Print, per layer, how many neurons the rule selects and the most extreme of them.

    Counts are re-counted from ``trace.neurons.peak`` under the given rule; the
    neurons shown are those the trace stored (most extreme first) that pass it.

    Raises:
        MechvizError: No ``neurons`` section, ``above <= below``, ``layer`` out
            of range or ``top < 1``, before anything is printed.

    """
    from mechviz.tracing.neurons import select

    console = console or Console()
    sel = select(trace, above, below, relative)
    L = trace.n_layers
    if layer is not None and not 0 <= layer < L:
        raise MechvizError(f"--layer {layer} is out of range; this model has layers 0 to {L - 1}.")
    if top < 1:
        raise MechvizError(f"--top must be at least 1; got {top}.")
    kind = "standard deviations of each layer" if sel.relative else "activation units"
    console.print(
        f"[bold]{escape(trace.model.id)}[/] on {escape(repr(trace.prompt))}: MLP neurons above "
        f"{sel.above:g} or below {sel.below:g} ({kind}) on at least one token",
        highlight=False,
    )
    console.print(neuron_legend(sel))
    for l in [layer] if layer is not None else range(L):  # noqa: E741
        _print_layer(trace, console, sel, l, top)


def _print_layer(trace: Trace, console: Console, sel: Selection, layer: int, top: int) -> None:
    count, shown_ids = int(sel.count[layer]), sel.ids[layer][:top]
    head = Text(f"\nlayer {layer}: ", style="bold")
    head.append(f"{count} of {sel.d_mlp} selected", style="bold")
    if sel.relative:
        head.append(f" (> {sel.hi[layer]:.3g} or < {sel.lo[layer]:.3g})", style="dim")
    if count > len(sel.ids[layer]):
        head.append(f"; {len(sel.ids[layer])} of them stored in the trace", style="dim")
    console.print(head)
    width = max((len(str(i)) for i in shown_ids), default=1)
    for k, neuron in enumerate(shown_ids):
        values = sel.values[layer][k]
        line = Text(f"  n{neuron:<{width}}  {values.max():6.2f} {values.min():6.2f}  ", style="dim")
        line.append_text(
            neuron_tokens(
                trace.tokens.text,
                values,
                float(sel.hi[layer]),
                float(sel.lo[layer]),
                float(sel.margin[layer]),
            )
        )
        console.print(line, soft_wrap=True)


def tuned_lens_table(trace: Trace, pos: int) -> Table:
    """Both lenses at one position, layer by layer, with their held-out bits per byte."""
    t, lens = trace.tuned_lens, trace.lens
    table = Table(
        title=f"Logit lens and tuned lens at {_at(trace, pos)}\n"
        f"tuned on {t.trained_tokens:,} tokens of {escape(', '.join(t.corpus))}; "
        f"bits per byte on {t.eval_tokens:,} held-out tokens (model: {t.eval_bpb_model:.3f})"
    )
    for name, justify in [("layer", "right"), ("logit lens", "left"), ("tuned lens", "left")]:
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("bpb logit", justify="right")
    table.add_column("bpb tuned", justify="right")
    for y, label in enumerate(t.labels):
        cells = []
        for section in (lens, t):
            token = trace.token_text(section.top_ids[y, pos, 0])
            cells.append(f"{escape(shown(token))} {float(section.top_probs[y, pos, 0]):.2f}")
        table.add_row(
            label.removesuffix("_post"),
            *cells,
            f"{float(t.eval_bpb_logit[y]):.2f}",
            f"{float(t.eval_bpb_tuned[y]):.2f}",
        )
    return table


def print_features(
    trace: Trace, console: Console | None = None, *, position: int | None = None, top: int = 5
) -> None:
    """Each position's most active SAE features, with each feature's short description."""
    console = console or Console()
    f = trace.require("features")
    positions = (
        range(trace.n_positions) if position is None else [checked_position(trace, position)]
    )
    console.print(
        f"[bold]Sparse-autoencoder features after layer {f.layer}[/] of {escape(trace.model.id)}: "
        f"{f.n_features:,} features, {f.k} active per token; held out: variance explained "
        f"{f.eval_fve:.2f}, loss {f.eval_ce_clean:.2f} -> {f.eval_ce_sae:.2f} nats with the SAE",
        highlight=False,
    )
    cards = {int(c): i for i, c in enumerate(f.card_ids)}
    for p in positions:
        share = float(f.error_norm[p] / max(float(f.resid_norm[p]), 1e-30))
        note = "" if f.typical[p] else " [dim](a norm unlike the training text's)[/]"
        table = Table(
            title=f"{_at(trace, p)}: |x| {float(f.resid_norm[p]):.1f}, error (dark matter) "
            f"{float(f.error_norm[p]):.1f} = {share:.0%} of |x|{note}",
            title_justify="left",
        )
        table.add_column("feature", justify="right")
        table.add_column("activation", justify="right")
        table.add_column("what it responds to")
        for a in range(min(top, f.k)):
            act = float(f.acts[p, a])
            if act <= 0:
                break
            fid = int(f.ids[p, a])
            text = f.card_descriptions[cards[fid]] if fid in cards else "(no card kept)"
            table.add_row(str(fid), f"{act:.2f}", escape(text))
        console.print(table)
