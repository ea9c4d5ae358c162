"""A Grafana dashboard's panels drawn from Prometheus's own answers: each target's `expr` asked
with /api/v1/query_range, the panels placed as Grafana lays them out (gridPos x, y, w, h on a
24-column grid), time series as lines with their legendFormat, stat panels as their last value.
Grafana is on no registry this project reaches; this draws the same queries, not a screenshot.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.dev.prometheus import PrometheusProcess

GRID_COLUMNS = 24
# Grafana's grid: rows 30 px high with 8 px between; the page here 1,280 px wide at 80 dpi.
ROW_PX = 38
PAGE_PX = 1280
HEADER_PX = 60
GUTTER_PX = 4
# Inside a panel (left, top, right, bottom px): its title; a time series' axis labels.
STAT_INSET = (4, 28, 4, 4)
TIMESERIES_INSET = (62, 30, 12, 22)
DPI = 80
# What Grafana puts for $__rate_interval and $__interval at a 1-2 s scrape interval, about.
INTERVALS = {"$__rate_interval": "15s", "$__interval": "2s"}
# Grafana's dark theme and palette.
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9"]
COLORS = {"green": "#73bf69", "red": "#f2495c", "yellow": "#fade2a", "orange": "#ff9830",
          "blue": "#5794f2", "purple": "#b877d9"}  # fmt: skip
LEGEND_HEADROOM = 1.3
LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Cell:
    """A panel's place on the grid, in columns and rows from the top left."""

    x: int
    y: int
    w: int
    h: int

    def overlaps(self, other: Cell) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )


@dataclass(frozen=True)
class Series:
    label: str
    times: list[float]
    values: list[float]


def cells(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], Cell]]:
    """Each panel and its place, as gridPos says."""
    return [(panel, Cell(**panel["gridPos"])) for panel in dashboard["panels"]]


def expression(expr: str) -> str:
    """A target's expr with Grafana's interval variables replaced."""
    for variable, value in INTERVALS.items():
        expr = expr.replace(variable, value)
    return expr


def legend(legend_format: str | None, labels: dict[str, str], expr: str) -> str:
    """Grafana's series name: the legendFormat with {{label}} filled in; `__auto` (or none) is
    the series' labels, or the query itself when it has none."""
    if legend_format and legend_format != "__auto":
        return LABEL.sub(lambda match: labels.get(match.group(1), ""), legend_format)
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in shown.items()) + "}" if shown else expr


def panel_series(
    prometheus: PrometheusProcess, panel: dict[str, Any], *, start: float, end: float, step_s: float
) -> list[Series]:
    """Every series the panel's targets answer over [start, end]."""
    found = []
    for target in panel["targets"]:
        matrix = prometheus.query_range(
            expression(target["expr"]), start=start, end=end, step_s=step_s
        )
        for result in matrix:
            times = [float(at) for at, _ in result["values"]]
            values = [float(value) for _, value in result["values"]]  # "NaN" is a gap
            label = legend(target.get("legendFormat"), result["metric"], target["expr"])
            found.append(Series(label, times, values))
    return found


def formatted(value: float, unit: str) -> str:
    """A value as Grafana shows it in the panel's unit (the few units the dashboard uses)."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    if unit == "s":
        return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"
    number = f"{value / 1000:.3g}K" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{number} ops/s" if unit == "ops" else number


def draw(
    dashboard: dict[str, Any],
    series: dict[str, list[Series]],
    *,
    start: float,
    end: float,
    output: Path,
) -> None:
    """The dashboard's grid into a PNG at `output`: `series` by panel title."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    from matplotlib import pyplot

    placed = cells(dashboard)
    rows = max(cell.y + cell.h for _, cell in placed)
    height_px = HEADER_PX + rows * ROW_PX
    figure = pyplot.figure(figsize=(PAGE_PX / DPI, height_px / DPI), facecolor=BACKGROUND)
    figure.text(0.01, 1 - 22 / height_px, dashboard["title"], color=TEXT, fontsize=16,
                weight="bold", va="center")  # fmt: skip
    figure.text(0.01, 1 - 46 / height_px, _caption(start, end), color=TEXT, fontsize=9,
                alpha=0.8, va="center")  # fmt: skip
    for panel, cell in placed:
        stat = panel["type"] == "stat"
        _panel_frame(figure, panel, cell, height_px)
        axes = figure.add_axes(
            _box(cell, height_px, STAT_INSET if stat else TIMESERIES_INSET), facecolor=PANEL
        )
        _axes_style(axes)
        found = series.get(panel["title"], [])
        axes.set_xlim(start, end)
        if stat:
            _stat(axes, panel, found)
        else:
            _timeseries(axes, panel, found)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=DPI, facecolor=BACKGROUND)
    pyplot.close(figure)


def _caption(start: float, end: float) -> str:
    since = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M:%S")
    until = datetime.fromtimestamp(end, UTC).strftime("%H:%M:%S UTC")
    return (
        f"{since} to {until} · each panel's own PromQL, answered by Prometheus's query_range"
        " and drawn by bench/dashboard_render.py (`make dashboard-png`): not a Grafana screenshot"
    )


def _box(
    cell: Cell, height_px: int, inset: tuple[int, int, int, int] = (0, 0, 0, 0)
) -> tuple[float, float, float, float]:
    """The cell, less a gutter and `inset` (left, top, right, bottom px), in figure fractions."""
    column = PAGE_PX / GRID_COLUMNS
    left = cell.x * column + GUTTER_PX + inset[0]
    right = (cell.x + cell.w) * column - GUTTER_PX - inset[2]
    top = HEADER_PX + cell.y * ROW_PX + GUTTER_PX + inset[1]
    bottom = HEADER_PX + (cell.y + cell.h) * ROW_PX - GUTTER_PX - inset[3]
    return (
        left / PAGE_PX,
        1 - bottom / height_px,
        (right - left) / PAGE_PX,
        (bottom - top) / height_px,
    )


def _panel_frame(figure: Any, panel: dict[str, Any], cell: Cell, height_px: int) -> None:
    """The panel's background and its title at the top left, as Grafana draws them."""
    from matplotlib.patches import Rectangle

    left, bottom, width, height = _box(cell, height_px)
    figure.add_artist(
        Rectangle((left, bottom), width, height, transform=figure.transFigure,
                  facecolor=PANEL, edgecolor=GRID, linewidth=0.8, zorder=-1)
    )  # fmt: skip
    figure.text(left + 8 / PAGE_PX, bottom + height - 14 / height_px, panel["title"],
                color=TEXT, fontsize=10, weight="bold", va="center")  # fmt: skip


def _axes_style(axes: Any) -> None:
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.tick_params(colors=TEXT, labelsize=8, length=0)


def _no_data(axes: Any) -> None:
    axes.text(0.5, 0.5, "No data", color=TEXT, alpha=0.6, fontsize=12, ha="center",
              va="center", transform=axes.transAxes)  # fmt: skip


def _stat(axes: Any, panel: dict[str, Any], found: list[Series]) -> None:
    """The last value that is a number, coloured by the panel's thresholds, over its sparkline."""
    axes.set_xticks([])
    axes.set_yticks([])
    points = [(t, v) for s in found[:1] for t, v in zip(s.times, s.values, strict=True)]
    numbers = [(t, v) for t, v in points if not math.isnan(v)]
    if not numbers:
        _no_data(axes)
        return
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    value = numbers[-1][1]
    color = _threshold_color(defaults.get("thresholds", {}).get("steps", []), value)
    axes.set_facecolor(
        color if panel.get("options", {}).get("colorMode") == "background" else PANEL
    )
    times, values = zip(*numbers, strict=True)
    axes.fill_between(times, values, color="white", alpha=0.15, linewidth=0)
    axes.set_ylim(0, max(max(values), 1e-9) * 1.6)
    shown = formatted(value, defaults.get("unit", "short"))
    axes.text(0.5, 0.45, shown, color="white", fontsize=22, weight="bold", ha="center",
              va="center", transform=axes.transAxes)  # fmt: skip


def _highest(found: list[Series]) -> float:
    return max((v for one in found for v in one.values if not math.isnan(v)), default=0.0)


def _threshold_color(steps: list[dict[str, Any]], value: float) -> str:
    """The colour of the last step whose value the number reaches (the first has none)."""
    chosen = "green"
    for step in steps:
        if step.get("value") is None or value >= step["value"]:
            chosen = step["color"]
    return COLORS.get(chosen, chosen)


def _timeseries(axes: Any, panel: dict[str, Any], found: list[Series]) -> None:
    from matplotlib.ticker import FuncFormatter

    axes.grid(color=GRID, linewidth=0.6)
    axes.xaxis.set_major_formatter(
        FuncFormatter(lambda at, _: datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S"))
    )
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: formatted(value, unit)))
    if not found:
        _no_data(axes)
        return
    for n, one in enumerate(found):
        color = PALETTE[n % len(PALETTE)]
        axes.plot(one.times, one.values, color=color, linewidth=1.2, label=one.label)
        axes.fill_between(one.times, one.values, color=color, alpha=0.1, linewidth=0)
    # Headroom above the highest line for the legend (Grafana's is beneath the panel).
    axes.set_ylim(0, max(_highest(found), 1e-9) * LEGEND_HEADROOM)
    axes.legend(loc="upper left", fontsize=7, ncol=3, frameon=False, labelcolor=TEXT)
