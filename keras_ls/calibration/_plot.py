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
    TOP_LABEL: ("Confidence (top-label: max p)", "Accuracy", "Accuracy", "confidence"),
    BINARY: (
        "Predicted probability of class 1", "Observed frequency of class 1", "Frequency of 1",
        "probability",
    ),
}
# Colours a reader with a red-green deficiency tells apart (blue / red / amber / green),
# and the two gap kinds differ in hatch too.
_BAR = "#4c72b0"
_OVER = ("#f4a3a3", "#aa0000", "//")  # face, edge, hatch: gap above the bar
_UNDER = ("#f5c96b", "#a06000", "\\\\")  # gap inside the bar's top
_SHARE = "#2e8b57"
_COUNT_ROW = 1.25  # height of one row of counts above the frame, in count font sizes


def _count_rows(ax: Any, widths: np.ndarray, counts: np.ndarray, points: float) -> int:
    """Rows of count labels needed so that the widest label fits its slot (1 to 3)."""
    # The axes' width before layout, less ~20% that the tick and axis labels take.
    axes_inches = 0.8 * ax.get_position().width * ax.figure.get_figwidth()
    bar_inches = float(np.min(widths)) * axes_inches
    digits = max(len(f"{n:.0f}") for n in counts)
    label_inches = (0.62 * digits + 0.8) * points / 72  # digit ~0.62 em, plus a gap
    return int(min(3, max(1, np.ceil(label_inches / max(bar_inches, 1e-9)))))


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
    ``conf_b`` -- red above the bar where the bin is over-confident
    (``conf_b > acc_b``), amber inside the bar's top where it is
    under-confident -- draws the diagonal of perfect calibration and puts
    ``ECE = x.xx%`` in the title. A softmax output ``(N, K)`` is drawn
    top-label (x: confidence ``max p``, y: accuracy); a sigmoid output
    ``(N,)`` / ``(N, 1)`` positive-class (x: predicted probability of class
    1, y: observed frequency of class 1); the axis labels say which. With
    ``show_counts=True`` each bin's number of samples is written above the
    frame, over its bar (in two or three staggered rows when the bars are
    too narrow for one, so that neighbouring counts stay apart); with ``show_histogram=True``
    the share of samples per bin is drawn as a green step line on a
    secondary axis, labelled on the right. The legend, below the x axis,
    names every colour and line drawn. Uses the object-oriented
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
        show_counts: Whether to write the number of samples of each bin.
        binning: ``"uniform"`` or ``"quantile"`` (bars as wide as the bins).
        multi_label: Must stay ``False``: a multi-label output is drawn one
            label at a time (``True`` raises a ``ValueError`` that says so).

    Returns:
        The ``matplotlib.figure.Figure`` holding the plot (``ax.figure`` when
        ``ax`` is given); call ``fig.savefig("reliability.png")`` to save it.
        ``fig.axes[0].get_legend()`` holds the legend: to share one legend
        between panels, take its handles (``legend.legend_handles``) and texts.

    Example:

    >>> fig = reliability_diagram([1, 0, 1, 1], [0.9, 0.8, 0.3, 0.2], num_bins=2)
    >>> ax = fig.axes[0]
    >>> ax.get_xlabel(), ax.get_title()
    ('Predicted probability of class 1', 'ECE = 55.00%')
    >>> [t.get_text() for t in ax.texts]  # samples per bin
    ['2', '2']
    >>> [t.get_text() for t in ax.get_legend().get_texts()]  # doctest: +NORMALIZE_WHITESPACE
    ['Frequency of 1', 'Gap, over-confident (probability > frequency)',
     'Gap, under-confident (probability < frequency)', 'Perfect calibration',
     'Share of samples (right axis)']
    """
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.patches import Patch
    from matplotlib.transforms import ScaledTranslation

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
    xlabel, ylabel, bar_label, x_word = _AXES[reading]
    y_word = "frequency" if reading == BINARY else "accuracy"
    ece = ece_from_bins(bins)
    if ax is None:
        fig = Figure(figsize=(5.0, 5.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure

    filled = bins.counts > 0
    left = edges[:-1][filled]
    width = np.diff(edges)[filled]
    acc = bins.accuracy[filled]
    conf = bins.confidence[filled]
    bars = ax.bar(left, acc, width=width, align="edge", color=_BAR, edgecolor="black",
                  linewidth=0.6, label=bar_label, zorder=2)
    # One bar per bin for the gaps (signed: conf - acc), each styled by its sign. Both
    # are opaque, so the colour on the plot is the legend's (no blend with the bar).
    gaps = ax.bar(left, conf - acc, bottom=acc, width=width, align="edge",
                  linewidth=0.6, label="_gaps", zorder=3)
    over = conf > acc
    for patch, is_over in zip(gaps.patches, over):
        face, edge, hatch = _OVER if is_over else _UNDER
        patch.set(facecolor=face, edgecolor=edge, hatch=hatch)
    (diagonal,) = ax.plot([0, 1], [0, 1], linestyle="--", color="0.35", linewidth=1.0,
                          label="Perfect calibration", zorder=4)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)

    handles: list[Any] = [bars]
    labels = [bar_label]
    for kind, style, drawn in (("over", _OVER, over), ("under", _UNDER, ~over)):
        if np.any(drawn & (conf != acc)):
            face, edge, hatch = style
            handles.append(Patch(facecolor=face, edgecolor=edge, hatch=hatch, linewidth=0.6))
            sign = ">" if kind == "over" else "<"
            labels.append(f"Gap, {kind}-confident ({x_word} {sign} {y_word})")
    handles.append(diagonal)
    labels.append("Perfect calibration")
    if show_histogram:
        total = bins.counts.sum()
        share = bins.counts / total if total > 0 else bins.counts
        ax2 = ax.twinx()
        share_line = ax2.stairs(share, edges, color=_SHARE, linewidth=1.4)
        ax2.set_ylim(0.0, 1.0)
        ax2.set_ylabel("Share of samples", color=_SHARE)
        ax2.tick_params(axis="y", colors=_SHARE)
        handles.append(share_line)
        labels.append("Share of samples (right axis)")

    rows = 0
    count_pt = FontProperties(size="small").get_size_in_points()  # follows rcParams
    row_pt = _COUNT_ROW * count_pt
    if show_counts and filled.any():
        # Above the frame (x in data units, y in axes units): never on a bar or the
        # frame. Narrow bars: alternate 2 or 3 rows, so neighbouring counts do not touch.
        rows = _count_rows(ax, width, bins.counts[filled], count_pt)
        to_axes = ax.get_xaxis_transform()
        for i, (x, n) in enumerate(zip(left + width / 2, bins.counts[filled])):
            lift = (i % rows) * row_pt / 72
            ax.text(x, 1.0, f"{n:.0f}", ha="center", va="bottom", fontsize=count_pt,
                    color="0.15", clip_on=False, zorder=5,
                    transform=to_axes + ScaledTranslation(0, 2 / 72 + lift, fig.dpi_scale_trans))
    # Below the x label, outside the axes: it covers no bar (a constrained layout
    # makes room for it).
    legend = ax.legend(
        handles, labels, loc="upper center", fontsize="small", ncols=1, frameon=False,
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=ax.transAxes + ScaledTranslation(0, -0.42, fig.dpi_scale_trans),
        title="Numbers above the frame: samples per bin" if rows else None,
        title_fontsize="small",
    )
    legend.set_in_layout(True)
    ece_line = f"ECE = {100.0 * ece:.2f}%"
    ax.set_title(f"{title}\n{ece_line}" if title else ece_line,
                 pad=6 + rows * row_pt)
    return fig
