"""Seconds per extra prompt: `mechviz trace -f prompts.txt` against one process per prompt.

Usage: python bench/multi_prompt_bench.py [--n 10]

Runs, in one go: `mechviz trace PROMPT` for the first prompt alone (a fresh
process: imports, model load, one trace), then `mechviz trace -f` on N prompts
(one process, one model load). Seconds per extra prompt = (t_N - t_1) / (N - 1);
N separate processes would cost about N x t_1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "The capital of France is",
    "When Mary and John went to the store, John gave a drink to",
    "2+2=",
    "William Shakespeare was born in the year",
    "blue pencils fly over moonlit toasters",
    "The opposite of hot is",
    "def fibonacci(n):",
    "The Eiffel Tower is located in the city of",
    "One, two, three, four,",
    "Water boils at a temperature of",
]


def run(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mechviz", "trace", *args], check=True, capture_output=True
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=len(PROMPTS))
    args = parser.parse_args()
    prompts = (PROMPTS * (args.n // len(PROMPTS) + 1))[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        run(prompts[0], "-o", str(Path(tmp) / "warm.json"))  # warm the file cache
        one = run(prompts[0], "-o", str(Path(tmp) / "one.json"))
        listing = Path(tmp) / "prompts.txt"
        listing.write_text("\n".join(prompts) + "\n", encoding="utf-8")
        many = run("-f", str(listing), "-o", str(Path(tmp) / "out"))
    extra = (many - one) / (len(prompts) - 1)
    print(f"one prompt, fresh process:        {one:6.2f} s")
    print(f"{len(prompts)} prompts, one process (-f):   {many:6.2f} s")
    print(f"seconds per extra prompt:         {extra:6.2f} s")
    print(
        f"{len(prompts)} separate processes (about):  {one * len(prompts):6.2f} s "
        f"({one * len(prompts) / many:.1f}x the -f run)"
    )


if __name__ == "__main__":
    main()
