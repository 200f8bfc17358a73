"""Run repeated CPU work at the faster of one torch thread and all of them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


class ThreadChooser:
    """Runs each call at the faster of one thread and all of them, re-measured now and then.

    On two cores shared with other jobs, OpenMP's threads wait on each other:
    measured here while another job ran, a tuned-lens step of the model and four
    boundaries took 3.0-3.7 s on one thread and 13.8-14.2 s on two, and gathering
    SAE activations ran at ~600 tokens/s on one thread against 180-360 on two. On
    idle cores two threads win. So the first calls try each choice, then the
    faster runs, and every ``every``-th call tries the slower one again.
    """

    def __init__(self, every: int = 16) -> None:
        self.every = every
        self.original = torch.get_num_threads()
        self.options = sorted({1, self.original})
        self.rate: dict[int, float] = {}
        self.calls = 0

    def run(self, amount: float, work: Callable[..., Any], *args: Any) -> Any:
        """``work(*args)``, timed: ``amount`` (tokens, rows) per second is the rate compared."""
        unmeasured = [n for n in self.options if n not in self.rate]
        if unmeasured:
            n = unmeasured[0]
        else:
            ranked = sorted(self.options, key=self.rate.__getitem__)
            n = ranked[0] if self.calls % self.every == self.every - 1 else ranked[-1]
        torch.set_num_threads(n)
        t0 = time.perf_counter()
        try:
            out = work(*args)
        finally:
            torch.set_num_threads(self.original)
        rate = amount / max(time.perf_counter() - t0, 1e-9)
        self.rate[n] = rate if n not in self.rate else 0.5 * (self.rate[n] + rate)
        self.calls += 1
        return out
