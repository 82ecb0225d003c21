"""Mechanical legibility checks of a matplotlib figure (shared by the report tests)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def overlaps(a, b) -> bool:
    """Whether two display-space bounding boxes intersect."""
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def assert_legible(fig: Figure, name: str) -> None:
    """No legend covers a data point or an axis label or title; the suptitle touches no panel title."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [leg for ax in fig.axes for leg in [ax.get_legend()] if leg is not None] + list(fig.legends)
    boxes = [leg.get_window_extent(renderer) for leg in legends]
    for ax in fig.axes:
        for line in ax.get_lines():
            points = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
            for box in boxes:
                inside = ((points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0)
                          & (points[:, 1] < box.y1))
                assert not inside.any(), f"{name}: legend over the line {line.get_label()}"
        for label in (ax.xaxis.label, ax.yaxis.label, ax.title):
            if label.get_text():
                for box in boxes:
                    assert not overlaps(label.get_window_extent(renderer), box), f"{name}: legend over {label}"
    for text in fig.texts:
        for ax in fig.axes:
            if ax.get_title():
                assert not overlaps(text.get_window_extent(renderer), ax.title.get_window_extent(renderer)), name
