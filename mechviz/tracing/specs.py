"""Head and layer specs of interventions (``5.3``, ``7.*``), parsed without torch.

:mod:`mechviz.tracing.validate` reads them back from a trace, so this module stays
light; :mod:`mechviz.interventions.run` uses them to build a plan, and the command
line checks :class:`Changes` with them before it loads a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mechviz.errors import MechvizError

MODES = ("zero", "mean")
_HEAD_SPEC = re.compile(r"^\s*(\d+)\s*\.\s*(\d+|\*)\s*$")


def parse_heads(
    specs: Sequence[str], n_layers: int, n_heads: int, flag: str = "--ablate"
) -> tuple[tuple[int, int], ...]:
    """``["5.3", "7.*"]`` to sorted, distinct ``(layer, head)`` pairs; one sentence when bad."""
    heads: set[tuple[int, int]] = set()
    for spec in specs:
        match = _HEAD_SPEC.match(str(spec))
        if match is None:
            raise MechvizError(
                f"{flag} {spec!r} is not a head: write LAYER.HEAD, such as 5.3, or LAYER.* "
                "for every head of a layer."
            )
        layer = int(match.group(1))
        if not 0 <= layer < n_layers:
            raise MechvizError(
                f"{flag} {spec}: layer {layer} is out of range; this model has layers 0 to "
                f"{n_layers - 1}."
            )
        if match.group(2) == "*":
            heads |= {(layer, h) for h in range(n_heads)}
            continue
        head = int(match.group(2))
        if not 0 <= head < n_heads:
            raise MechvizError(
                f"{flag} {spec}: head {head} is out of range; this model has heads 0 to "
                f"{n_heads - 1} in each layer."
            )
        heads.add((layer, head))
    return tuple(sorted(heads))


def parse_layers(
    specs: Sequence[int | str], n_layers: int, flag: str = "--ablate-mlp"
) -> tuple[int, ...]:
    """Layer numbers to sorted, distinct ints; one sentence when one is bad or out of range."""
    layers: set[int] = set()
    for spec in specs:
        text = str(spec).strip()
        if not text.isdigit():
            raise MechvizError(f"{flag} {spec!r} is not a layer number.")
        layer = int(text)
        if not 0 <= layer < n_layers:
            raise MechvizError(
                f"{flag} {layer} is out of range; this model has layers 0 to {n_layers - 1}."
            )
        layers.add(layer)
    return tuple(sorted(layers))


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise MechvizError(f"--ablate-mode must be zero or mean; got {mode!r}.")
    return mode


@dataclass(frozen=True)
class Changes:
    """What the user asked to change, as written (``"5.3"``, ``"7.*"``), before parsing."""

    ablate: tuple[str, ...] = ()
    ablate_mlp: tuple[int | str, ...] = ()
    mode: str = "zero"
    freeze: tuple[str, ...] = ()
    freeze_from: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.ablate or self.ablate_mlp or self.freeze)

    def check(self) -> None:
        """What can be checked without the model: the mode, and freeze with freeze_from."""
        check_mode(self.mode)
        if self.freeze and self.freeze_from is None:
            raise MechvizError(
                "--freeze needs --freeze-from: the prompt whose attention patterns the heads keep."
            )
        if self.freeze_from is not None and not self.freeze:
            raise MechvizError("--freeze-from needs --freeze: the heads whose patterns to fix.")
