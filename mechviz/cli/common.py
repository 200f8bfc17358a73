"""What the commands share: one-sentence errors, model options, prompts and file names."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from mechviz.errors import MechvizError

err = Console(stderr=True)


def fail(message: str) -> None:
    """Print one red sentence (user text shown as typed) and exit with code 2."""
    err.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


def model_options(func):  # type: ignore[no-untyped-def]
    """Options shared by every command that loads a model."""
    options = [
        click.option(
            "--model",
            "-m",
            default=None,
            metavar="MODEL",
            help="Hugging Face id, local folder or .gguf file "
            "[default: SmolLM2-135M-Instruct, offline].",
        ),
        click.option(
            "--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda", "mps"])
        ),
        click.option(
            "--dtype",
            default="float32",
            show_default=True,
            type=click.Choice(["float32", "bfloat16", "float16"]),
        ),
        click.option(
            "--device-map",
            default=None,
            type=click.Choice(["auto"]),
            help="Shard a model too large for one GPU across all of them (accelerate).",
        ),
        click.option(
            "--top-k", default=10, show_default=True, type=int, help="Tokens kept per distribution."
        ),
        click.option(
            "--max-tokens",
            default=64,
            show_default=True,
            type=int,
            help="Refuse prompts longer than this many tokens.",
        ),
        click.option("--full", is_flag=True, help="Also store full residual vectors (large)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_trace(prompt: str | list[str], *, model: str | None, **options: object):  # type: ignore[no-untyped-def]
    """Load the model (once per process) and trace ``prompt`` (imports torch only when called)."""
    from mechviz.api import trace as api_trace

    for name in ("max_tokens", "top_k"):
        if int(options[name]) < 1:  # type: ignore[call-overload]
            flag = "--" + name.replace("_", "-")
            raise MechvizError(f"{flag} must be at least 1; got {options[name]}.")
    return api_trace(prompt, model, **options)  # type: ignore[arg-type]


def read_prompts(source: Path) -> list[str]:
    """One prompt per line of ``source`` (``-`` for stdin); empty lines are skipped."""
    try:
        if str(source) == "-":
            text = sys.stdin.read()
        else:
            text = source.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise MechvizError(f"Prompt file {source} does not exist.") from None
    except IsADirectoryError:
        raise MechvizError(f"{source} is a directory, not a prompt file.") from None
    except UnicodeDecodeError:
        raise MechvizError(f"Prompt file {source} is not UTF-8 text.") from None
    except OSError as exc:
        raise MechvizError(f"Cannot read {source}: {exc.strerror or exc}.") from None
    prompts = [line.rstrip("\r") for line in text.split("\n") if line.strip()]
    if not prompts:
        raise MechvizError(f"Prompt file {source} holds no prompts (one per line).")
    return prompts


def trace_file_names(prompts: list[str]) -> list[str]:
    """``01-the-capital-of-france.json``...: numbered in order, a slug of each prompt."""
    import re
    import unicodedata

    width = max(2, len(str(len(prompts))))
    names = []
    for i, prompt in enumerate(prompts, 1):
        ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
        if len(slug) > 40:  # cut at a word's end
            slug = slug[:41].rsplit("-", 1)[0] if "-" in slug[:41] else slug[:40]
        names.append(f"{i:0{width}d}-{slug or 'prompt'}.json")
    return names


def say(message: str) -> None:
    """A progress or result line on stderr, printed exactly as written."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def csv_values(value: str | None, kind: type, flag: str) -> tuple | None:
    """A comma-separated option as a tuple (``None`` when not given)."""
    if value is None:
        return None
    try:
        items = tuple(kind(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise MechvizError(f"{flag} takes a comma-separated list; got {value!r}.") from None
    if not items:
        raise MechvizError(f"{flag} is empty.")
    return items


def output_format(fmt: str | None, output: Path | None, formats: tuple[str, ...]) -> str:
    """The format: --format, else the extension of -o, else gif; they must agree."""
    ext = output.suffix.lower().lstrip(".") if output is not None else ""
    if fmt and ext and ext != fmt:
        raise MechvizError(f"--format {fmt} does not match the extension of {output}.")
    if not fmt and ext and ext not in formats:
        raise MechvizError(
            f"Cannot tell the format from {output}; use a .gif, .mp4, .png, .mov, .webm or .svg "
            "name "
            "or --format."
        )
    return fmt or ext or "gif"


def slug(text: str) -> str:
    """A file name for a prompt's trace: its words, and a hash so prompts never collide."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{'_'.join(words)[:40] or 'trace'}-{digest}"


def check_layer_head(trace: object, layer: int | None, head: int | None) -> None:
    L, H = trace.model.n_layers, trace.model.n_heads  # type: ignore[attr-defined]
    if layer is not None and not 0 <= layer < L:
        raise MechvizError(f"--layer {layer} is out of range; this model has layers 0 to {L - 1}.")
    if head is not None and not 0 <= head < H:
        raise MechvizError(f"--head {head} is out of range; this model has heads 0 to {H - 1}.")


def learning_model(model: str | None, device: str):  # type: ignore[no-untyped-def]
    from mechviz.api import loaded_model

    return loaded_model(model, device=device, progress=sys.stderr.isatty())
