"""Save any pyqtgraph plot as PNG or SVG (pyqtgraph's exporters), atomically."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pyqtgraph as pg
from pyqtgraph.exporters import ImageExporter, SVGExporter
from PySide6.QtWidgets import QMenu, QPushButton, QWidget

from gui.dialogs import save_file

FORMATS = {".png": "PNG image (*.png)", ".svg": "SVG drawing (*.svg)"}


def export_plot(plot: pg.PlotWidget | pg.PlotItem, path: str | Path, width: int | None = None) -> Path:
    """Write ``plot`` to ``path``; the suffix (.png or .svg) picks the format.

    Args:
        plot: a PlotWidget or PlotItem.
        path: target file; written under a temporary name and renamed into place.
        width: PNG width in pixels (default: twice the on-screen width, for sharp images).

    Raises:
        ValueError: an unsupported suffix.
        OSError: the file cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: plots are saved as .png or .svg, not '{path.suffix}'")
    item = plot.getPlotItem() if hasattr(plot, "getPlotItem") else plot
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        if suffix == ".png":
            exporter = ImageExporter(item)
            w = int(width or max(800, 2 * item.sceneBoundingRect().width()))
            exporter.parameters()["width"] = w
            exporter.parameters()["antialias"] = True
            exporter.export(fileName=str(tmp))
        else:
            with _closed_paths_tolerated():
                SVGExporter(item).export(fileName=str(tmp))
        if not tmp.exists():
            raise OSError(f"{path}: the exporter wrote nothing")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


@contextlib.contextmanager
def _closed_paths_tolerated():
    """Let pyqtgraph's SVG exporter handle closed paths ("... Z") that Qt 6.8+ writes.

    pyqtgraph 0.14's ``correctCoordinates`` reads every token of a path as
    "x,y" and fails on the close-path command (pyqtgraph issue #3495). For the
    duration of one export, Z tokens are taken out before it runs and put back
    after. Every path pyqtgraph draws ends where it started, so the drawing is
    unchanged.
    """
    import sys

    module = sys.modules[SVGExporter.__module__]
    original = module.correctCoordinates

    def tolerant(node, defs, item, options):
        closed = []
        for el in node.getElementsByTagName("path"):
            tokens = el.getAttribute("d").replace("Z", " Z ").replace("z", " z ").split()
            if any(t in ("Z", "z") for t in tokens):
                el.setAttribute("d", " ".join(t for t in tokens if t not in ("Z", "z")))
                closed.append(el)
        result = original(node, defs, item, options)
        for el in closed:
            el.setAttribute("d", el.getAttribute("d").rstrip() + " Z")
        return result

    module.correctCoordinates = tolerant
    try:
        yield
    finally:
        module.correctCoordinates = original


def ask_plot_path(parent: QWidget, default_name: str) -> Path | None:
    """A save dialog for a plot, starting in the last plot folder."""
    picked = save_file(parent, "Save Plot", "plots", default_name, ";;".join(FORMATS.values()))
    if picked is None:
        return None
    p, chosen = picked
    if p.suffix.lower() not in FORMATS:
        p = p.with_suffix(".svg" if "svg" in chosen.lower() else ".png")
    return p


def save_plot_interactively(parent: QWidget, plot: pg.PlotWidget, default_name: str) -> Path | None:
    path = ask_plot_path(parent, default_name)
    if path is None:
        return None
    try:
        out = export_plot(plot, path)
    except (OSError, ValueError) as exc:
        window = parent.window()
        if hasattr(window, "show_error"):
            window.show_error("Saving the plot failed", str(exc))
        return None
    window = parent.window()
    if hasattr(window, "statusBar"):
        window.statusBar().showMessage(f"Saved {out}", 8000)
    return out


def save_plots_button(
    parent: QWidget, plots: Sequence[tuple[str, pg.PlotWidget]] | Callable[[], Sequence[tuple[str, pg.PlotWidget]]]
) -> QPushButton:
    """A "Save Plot…" button whose menu lists each plot (PNG or SVG chosen in the dialog)."""
    button = QPushButton("Save Plot…")
    button.setToolTip("Save a plot as PNG or SVG")
    menu = QMenu(button)

    def populate() -> None:
        menu.clear()
        for name, plot in plots() if callable(plots) else plots:
            slug = "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")
            action = menu.addAction(name)
            action.triggered.connect(lambda _=False, p=plot, s=slug: save_plot_interactively(parent, p, f"{s}.png"))

    menu.aboutToShow.connect(populate)
    button.setMenu(menu)
    return button
