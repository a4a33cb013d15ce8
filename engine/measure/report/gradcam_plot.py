"""Grad-CAM overlays: a numpy colour map (shared with the GUI) and a side-by-side PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.measure.report.plots import _pyplot, _save

# Anchor colours of matplotlib's 'inferno' map at 0, 0.25, 0.5, 0.75, 1.
_INFERNO = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
    dtype=np.float32,
)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8 colours."""
    v = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0) * (len(_INFERNO) - 1)
    lo = np.floor(v).astype(np.int64)
    hi = np.minimum(lo + 1, len(_INFERNO) - 1)
    frac = (v - lo)[..., None]
    return (_INFERNO[lo] * (1 - frac) + _INFERNO[hi] * frac + 0.5).astype(np.uint8)


def diverging(diff: np.ndarray) -> np.ndarray:
    """(H, W) values in [-1, 1] -> (H, W, 3) uint8: blue (negative), white (0), red (positive)."""
    d = np.clip(np.asarray(diff, dtype=np.float32), -1.0, 1.0)[..., None]
    white = np.array([255, 255, 255], dtype=np.float32)
    red = np.array([178, 24, 43], dtype=np.float32)
    blue = np.array([33, 102, 172], dtype=np.float32)
    out = np.where(d >= 0, white + (red - white) * d, white + (blue - white) * (-d))
    return (out + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured heatmap over a (H, W, 1|3) uint8 image; returns (H, W, 3) uint8."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return (img * (1 - alpha) + colorize(heatmap).astype(np.float32) * alpha + 0.5).astype(np.uint8)


def gradcam_figure(outcome, path: str | Path) -> Path:
    """The input, then each model's overlay (and the difference to the first), in one row."""
    plt = _pyplot()
    maps = outcome.maps
    panels = 1 + len(maps) + (1 if len(maps) > 1 else 0)
    fig, axes = plt.subplots(1, panels, figsize=(2.6 * panels, 2.9))
    axes = np.atleast_1d(axes)
    img = maps[0].image
    axes[0].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
    axes[0].set_title("input", fontsize=8)
    for ax, m, corr in zip(axes[1:], maps, outcome.correlation, strict=False):
        ax.imshow(overlay(m.image, m.heatmap))
        note = "" if m is maps[0] else f"\nr={corr:.3f}"
        ax.set_title(f"{m.model} [{m.recipe}]\np({m.class_name})={m.class_probability:.2f}{note}", fontsize=7)
    if len(maps) > 1:
        diff = maps[-1].heatmap - maps[0].heatmap
        im = axes[-1].imshow(diff, cmap="RdBu_r", vmin=-1, vmax=1)
        axes[-1].set_title(f"{maps[-1].recipe} − {maps[0].recipe}", fontsize=8)
        fig.colorbar(im, ax=axes[-1], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"Grad-CAM at {maps[0].layer}", fontsize=9)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
