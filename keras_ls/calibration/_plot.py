"""Reliability diagram (matplotlib's object-oriented API: headless, no pyplot)."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_ls.calibration._checks import (
    BINARY,
    TOP_LABEL,
    check_bool,
)
from keras_ls.calibration._core import bins_and_edges, ece_from_bins

# Axis wording per reading: the diagram says which probability it binned.
_AXES = {
    TOP_LABEL: ("Confidence (top-label: max p)", "Accuracy", "Accuracy"),
    BINARY: (
        "Predicted probability of class 1", "Observed frequency of class 1", "Frequency of 1",
    ),
}


def reliability_diagram(
    y_true: Any,
    y_prob: Any,
    num_bins: int = 15,
    ax: Any = None,
    from_logits: bool = False,
    title: str | None = None,
    *,
    show_histogram: bool = True,
    show_counts: bool = True,
    binning: str = "uniform",
    multi_label: bool = False,
) -> Any:
    """Reliability diagram: accuracy per confidence bin against the diagonal.

    Draws one bar per non-empty bin at height ``acc_b`` (its width is the
    bin's), shades the gap between ``acc_b`` and the bin's mean confidence
    ``conf_b`` in red, draws the diagonal of perfect calibration and puts
    ``ECE = x.xx%`` in the title. A softmax output ``(N, K)`` is drawn
    top-label (x: confidence ``max p``, y: accuracy); a sigmoid output
    ``(N,)`` / ``(N, 1)`` positive-class (x: predicted probability of class
    1, y: observed frequency of class 1); the axis labels say which. With
    ``show_counts=True`` each bar carries its number of samples; with
    ``show_histogram=True`` the share of samples per bin is drawn as a light
    step line on a secondary axis. Uses the object-oriented
    ``matplotlib.figure.Figure`` API, so it works headless (no pyplot state).

    A multi-label output holds one diagram per label: draw them one at a time,
    ``reliability_diagram(y_true[:, j], y_prob[:, j])``.

    Args:
        y_true: Labels (see :func:`calibration_bins`).
        y_prob: Probabilities ``(N,)``, ``(N, 1)`` or ``(N, K)``, or logits
            with ``from_logits=True``.
        num_bins: Number of bins ``M >= 1``.
        ax: Optional matplotlib ``Axes`` to draw into; otherwise a new
            ``Figure`` is created.
        from_logits: Whether ``y_prob`` holds logits.
        title: Optional title line put above the ECE line.
        show_histogram: Whether to draw the per-bin sample share.
        show_counts: Whether to write the number of samples on each bar.
        binning: ``"uniform"`` or ``"quantile"`` (bars as wide as the bins).
        multi_label: Must stay ``False``: a multi-label output is drawn one
            label at a time (``True`` raises a ``ValueError`` that says so).

    Returns:
        The ``matplotlib.figure.Figure`` holding the plot (``ax.figure`` when
        ``ax`` is given); call ``fig.savefig("reliability.png")`` to save it.

    Example:

    >>> fig = reliability_diagram([1, 0, 1, 1], [0.9, 0.8, 0.3, 0.2], num_bins=2)
    >>> ax = fig.axes[0]
    >>> ax.get_xlabel(), ax.get_title()
    ('Predicted probability of class 1', 'ECE = 55.00%')
    >>> [t.get_text() for t in ax.texts]  # samples per bar
    ['2', '2']
    """
    from matplotlib.figure import Figure

    show_histogram = check_bool(show_histogram, "show_histogram")
    show_counts = check_bool(show_counts, "show_counts")
    if check_bool(multi_label, "multi_label"):
        raise ValueError(
            "`multi_label=True`: a reliability diagram draws one reading; draw one per "
            "label, e.g. `reliability_diagram(y_true[:, j], y_prob[:, j])`."
        )
    bins, edges, reading = bins_and_edges(
        y_true, y_prob, num_bins, from_logits, None, False, binning
    )
    xlabel, ylabel, bar_label = _AXES[reading]
    ece = ece_from_bins(bins)
    if ax is None:
        fig = Figure(figsize=(4.5, 4.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure

    filled = bins.counts > 0
    left = edges[:-1][filled]
    width = np.diff(edges)[filled]
    acc = bins.accuracy[filled]
    conf = bins.confidence[filled]
    ax.bar(left, acc, width=width, align="edge", color="#4c72b0", edgecolor="black",
           linewidth=0.6, label=bar_label, zorder=2)
    ax.bar(left, conf - acc, bottom=acc, width=width, align="edge", color="#dd4444",
           alpha=0.35, edgecolor="#aa0000", linewidth=0.6, hatch="//", label="Gap", zorder=3)
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1.0,
            label="Perfect calibration", zorder=4)
    if show_counts:
        many = len(left) > 8
        for x, top, n in zip(left + width / 2, np.maximum(acc, conf), bins.counts[filled]):
            ax.text(x, min(top + 0.02, 0.97), f"{n:.0f}", ha="center", va="bottom",
                    fontsize="xx-small" if many else "x-small",
                    rotation=90 if many else 0, zorder=5)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if show_histogram:
        total = bins.counts.sum()
        share = bins.counts / total if total > 0 else bins.counts
        ax2 = ax.twinx()
        ax2.stairs(share, edges, color="#55a868", linewidth=1.0, alpha=0.8)
        ax2.set_ylim(0.0, 1.0)
        ax2.set_ylabel("Share of samples", color="#55a868")
        ax2.tick_params(axis="y", colors="#55a868")
    ax.legend(loc="upper left", fontsize="small")
    ece_line = f"ECE = {100.0 * ece:.2f}%"
    ax.set_title(f"{title}\n{ece_line}" if title else ece_line)
    return fig
