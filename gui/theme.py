"""Light and dark appearance that follows the system color scheme, with plots to match.

Qt >= 6.5 reports the system scheme through ``QStyleHints.colorScheme()`` and
signals changes. On macOS the native style already draws dark or light
widgets; elsewhere (Fusion) the app sets a dark palette itself, because not
every Linux platform theme supplies one. pyqtgraph does not read the Qt
palette, so its plots get their background, axes, titles and legends recoloured.

The user may pin the scheme (View ▸ Appearance, stored as ``appearance/scheme``);
``MQS_COLOR_SCHEME=light|dark`` does the same for screenshots and tests.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

from gui.state import settings

LIGHT, DARK, SYSTEM = "light", "dark", "system"
PREFERENCES = (SYSTEM, LIGHT, DARK)
ENV = "MQS_COLOR_SCHEME"
SETTING = "appearance/scheme"


@dataclass(frozen=True)
class PlotColors:
    background: str
    foreground: str  # tick labels, axis labels, titles, legend text
    axis: str
    legend_background: str
    accent: str  # highlighted labels (the Pareto front's)


PLOT_COLORS = {
    LIGHT: PlotColors("#ffffff", "#333333", "#8a8a8a", "#ffffffc8", "#a00000"),
    DARK: PlotColors("#1e1f22", "#d4d4d4", "#8c8c8c", "#2b2d30c8", "#ff7b72"),
}


def plot_colors() -> PlotColors:
    """The colours of the scheme in force (pyqtgraph's configured background tells which)."""
    background = QColor(pg.getConfigOption("background") if isinstance(pg.getConfigOption("background"), str) else "w")
    return PLOT_COLORS[DARK if background.lightness() < 128 else LIGHT]


def dark_palette() -> QPalette:
    """A dark Fusion palette with readable disabled text and a blue accent."""
    p = QPalette()
    window, base, text = QColor("#2b2d30"), QColor("#1e1f22"), QColor("#dfe1e5")
    roles = {
        QPalette.ColorRole.Window: window,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: QColor("#26282b"),
        QPalette.ColorRole.ToolTipBase: QColor("#3c3f41"),
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.PlaceholderText: QColor("#8c8f94"),
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: QColor("#3c3f41"),
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor("#ff6b6b"),
        QPalette.ColorRole.Light: QColor("#4a4d50"),
        QPalette.ColorRole.Midlight: QColor("#3f4245"),
        QPalette.ColorRole.Mid: QColor("#323437"),
        QPalette.ColorRole.Dark: QColor("#1a1b1d"),
        QPalette.ColorRole.Shadow: QColor("#0d0d0e"),
        QPalette.ColorRole.Highlight: QColor("#3574f0"),
        QPalette.ColorRole.HighlightedText: QColor("#ffffff"),
        QPalette.ColorRole.Link: QColor("#589df6"),
        QPalette.ColorRole.LinkVisited: QColor("#a571e6"),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    disabled = QColor("#7a7d82")
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Highlight, QColor("#45484c"))
    return p


def light_palette() -> QPalette:
    """Fusion's light colours, for a light app on a dark desktop."""
    p = QPalette(QColor("#efefef"), QColor("#efefef"))
    text = QColor("#000000")
    for role, color in {
        QPalette.ColorRole.Base: QColor("#ffffff"),
        QPalette.ColorRole.AlternateBase: QColor("#f7f7f7"),
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.ToolTipBase: QColor("#ffffdc"),
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.Highlight: QColor("#308cc6"),
        QPalette.ColorRole.HighlightedText: QColor("#ffffff"),
    }.items():
        p.setColor(role, color)
    return p


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def system_scheme(app: QApplication) -> str:
    """The system's scheme; when Qt cannot tell (offscreen, some X11 desktops), the palette decides."""
    scheme = app.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        return DARK
    if scheme == Qt.ColorScheme.Light:
        return LIGHT
    return DARK if is_dark(app.palette()) else LIGHT


def style_plot(plot: pg.PlotWidget, scheme: str) -> None:
    """Recolour a pyqtgraph plot's background, axes, title and legend for ``scheme``."""
    c = PLOT_COLORS[scheme]
    plot.setBackground(c.background)
    item = plot.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(c.axis)
        axis.setTextPen(c.foreground)
    title = item.titleLabel
    if title.text:
        title.setText(title.text, color=c.foreground)
    legend = item.legend
    if legend is not None:
        legend.setLabelTextColor(c.foreground)
        legend.setBrush(c.legend_background)
        for _sample, label in legend.items:  # setLabelTextColor only sets the colour for new labels
            label.setText(label.text, color=c.foreground)
    for text in item.items:
        if isinstance(text, pg.TextItem):  # point labels: plain or highlighted (the front)
            text.setColor(c.accent if getattr(text, "highlighted", False) else c.foreground)


class ThemeController(QObject):
    """Applies the scheme to the app palette and to every plot; follows system changes."""

    scheme_changed = Signal(str)

    def __init__(self, app: QApplication, parent: QObject | None = None):
        super().__init__(parent)
        self._app = app
        self._native_mac = sys.platform == "darwin" and app.style().name().lower() == "macos"
        self.scheme = LIGHT
        app.styleHints().colorSchemeChanged.connect(self._system_changed)

    # -- preference ------------------------------------------------------------------
    def preference(self) -> str:
        env = os.environ.get(ENV, "").strip().lower()
        if env in PREFERENCES:
            return env
        value = str(settings().value(SETTING, SYSTEM))
        return value if value in PREFERENCES else SYSTEM

    def set_preference(self, preference: str) -> None:
        if preference not in PREFERENCES:
            raise ValueError(f"appearance must be one of {PREFERENCES}, not {preference!r}")
        settings().setValue(SETTING, preference)
        self.apply()

    # -- applying --------------------------------------------------------------------
    def apply(self) -> str:
        """Set the palette and plot colours for the preferred scheme; returns "light" or "dark"."""
        pref = self.preference()
        if self._native_mac:
            # The macOS style draws the system appearance; a pinned scheme is requested from Qt (>= 6.8).
            hints = self._app.styleHints()
            if hasattr(hints, "setColorScheme"):
                wanted = {LIGHT: Qt.ColorScheme.Light, DARK: Qt.ColorScheme.Dark}.get(pref, Qt.ColorScheme.Unknown)
                hints.setColorScheme(wanted)
        else:
            if self._app.style().name().lower() != "fusion":
                self._app.setStyle("Fusion")
            self._app.setPalette(QPalette())  # back to the platform's palette, to see what it is
        scheme = pref if pref != SYSTEM else system_scheme(self._app)
        if not self._native_mac and (scheme == DARK) != is_dark(self._app.palette()):
            self._app.setPalette(dark_palette() if scheme == DARK else light_palette())
        c = PLOT_COLORS[scheme]
        pg.setConfigOptions(background=c.background, foreground=c.foreground)
        for widget in self._app.topLevelWidgets():
            self.style_plots(widget, scheme)
        self.scheme = scheme
        self.scheme_changed.emit(scheme)
        return scheme

    @staticmethod
    def style_plots(root: QWidget, scheme: str) -> None:
        plots = root.findChildren(pg.PlotWidget)
        if isinstance(root, pg.PlotWidget):
            plots.append(root)
        for plot in plots:
            style_plot(plot, scheme)

    @Slot()
    def _system_changed(self, *_) -> None:
        self.apply()
