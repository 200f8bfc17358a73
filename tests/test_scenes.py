"""Scenes: last frames rendered from a small committed trace, checked against controls.

Like Manim's ``frames_comparison``, each scene's last frame at low quality is
compared with ``.npz`` control data in ``tests/control``; set
``MECHVIZ_UPDATE_CONTROLS=1`` to rewrite them after a deliberate visual change
(and look at the PNGs before committing them). Each test also checks what must
be on screen, so a control cannot bless an empty or broken frame.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mechviz.rendering.scene import render_scene
from mechviz.scenes import SCENES
from mechviz.tracing.io import load_trace
from mechviz.visual import style
from mechviz.visual.settings import SceneSettings

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "tests" / "data" / "small_trace.json"
CONTROL = ROOT / "tests" / "control"


def render_last_frame(name: str, tmp_path: Path, **settings: object) -> np.ndarray:
    out = render_scene(
        name,
        SceneSettings(trace=SMALL, **settings),
        "low",
        "png",
        tmp_path / f"{name}.png",
        progress=False,
    )
    return np.asarray(Image.open(out).convert("RGB")).astype(np.int16)


def near(frame: np.ndarray, color: object, tol: int = 40) -> np.ndarray:
    rgb = np.array(color.to_rgb()) * 255  # type: ignore[attr-defined]
    return np.abs(frame - rgb).max(axis=-1) <= tol


def check_control(name: str, frame: np.ndarray) -> None:
    path = CONTROL / f"{name}.npz"
    if os.environ.get("MECHVIZ_UPDATE_CONTROLS") or not path.exists():
        if not os.environ.get("MECHVIZ_UPDATE_CONTROLS"):
            pytest.fail(f"no control data {path}; run with MECHVIZ_UPDATE_CONTROLS=1")
        np.savez_compressed(path, frame=frame.astype(np.uint8))
        return
    control = np.load(path)["frame"].astype(np.int16)
    assert control.shape == frame.shape
    differs = (np.abs(control - frame).max(axis=-1) > 48).mean()
    assert differs < 0.01, f"{name}: {differs:.2%} of pixels differ from the control frame"


DARK = style.DARK


def check_not_blank(frame: np.ndarray) -> None:
    background = near(frame, DARK.background, tol=12)
    assert frame.shape == (480, 854, 3)
    assert (~background).mean() > 0.05, "the frame is almost empty"


def test_scene_registry_matches_modules() -> None:
    for _name, (module, line) in SCENES.items():
        assert (ROOT / "scenes" / f"{module}.py").is_file()
        assert line and len(line) < 80


def test_residual_flow_last_frame(tmp_path: Path) -> None:
    frame = render_last_frame("ResidualFlow", tmp_path)
    check_not_blank(frame)
    # The prediction readout (green) sits right of the streams.
    assert near(frame[:, 520:], DARK.highlight).sum() > 300
    # The streams fill the left: many non-background pixels there.
    assert (~near(frame[90:360, 60:460], DARK.background, 12)).mean() > 0.3
    check_control("ResidualFlow", frame)


def test_embedding_last_frame(tmp_path: Path) -> None:
    trace = load_trace(SMALL)
    frame = render_last_frame("Embedding", tmp_path)
    check_not_blank(frame)
    # The cosine matrix has P red cells on its diagonal (cosine 1).
    red = near(frame, DARK.positive, tol=30)
    assert red.sum() > 150 * trace.n_positions  # at least ~12 x 12 px per diagonal cell
    check_control("Embedding", frame)


def test_attention_last_frame(tmp_path: Path) -> None:
    frame = render_last_frame("Attention", tmp_path)
    check_not_blank(frame)
    assert near(frame, DARK.highlight).sum() > 200  # the chosen head's frame
    assert near(frame, DARK.attention, tol=30).sum() > 2000  # attention weights
    check_control("Attention", frame)


def test_attention_honours_layer_and_head(tmp_path: Path) -> None:
    from mechviz.scenes.attention import choose_head

    trace = load_trace(SMALL)
    assert choose_head(trace, 2, 3) == (2, 3)
    layer, head = choose_head(trace)
    assert 0 <= layer < trace.n_layers and 0 <= head < trace.model.n_heads


def test_unembedding_last_frame(tmp_path: Path) -> None:
    frame = render_last_frame("Unembedding", tmp_path)
    check_not_blank(frame)
    assert near(frame, DARK.highlight).sum() > 300  # the final prediction, framed
    assert near(frame, DARK.prob, tol=40).sum() > 2000  # confident lens cells
    check_control("Unembedding", frame)


def test_scenes_import_without_torch() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['transformers'] = None\n"
        "from mechviz.scenes import SCENES\n"
        "from mechviz.rendering.scene import scene_class\n"
        "for name in SCENES: scene_class(name)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
