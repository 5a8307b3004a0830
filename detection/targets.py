"""Smoothed class targets for Ultralytics losses (torch only, no Ultralytics import).

Detection (``v8DetectionLoss`` and everything built on it: ``E2ELoss`` branches,
segment, pose, OBB) computes its class term as ``self.bce(pred_scores,
target_scores)``. ``target_scores`` are the task-aligned assigner's IoU-aware
soft one-hots: zero on background anchors, ``score`` on the assigned class of a
foreground anchor. We swap ``self.bce`` for :class:`SmoothedBCEWithLogits`,
which smooths the *target* of that call only, per foreground row::

    uniform:  t' = mix(t, score / nc, a)     # keeps the row total `score`
    yolov5:   t' = mix(t, score / 2,  a)     # the old smooth_bce, scaled by score

with ``score = t.sum(-1)`` and ``mix`` from :mod:`keras_ls.smoothing`. A
background row has ``score = 0``, so both priors are 0 there and the row stays
exactly 0 -- no mask needed. The box/DFL loss and the normaliser
``target_scores.sum()`` are computed from the untouched ``target_scores`` by
Ultralytics itself, so they do not change.

Classification gets :class:`SmoothedClassificationLoss`: cross-entropy toward
``mix(one_hot, 1/K, a)``, computed as a mix of the two loss terms (CE is
linear in its target).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from detection.config import MODES, SmoothingConfig
from keras_ls.smoothing import mix

__all__ = [
    "smooth_class_targets",
    "SmoothedBCEWithLogits",
    "SmoothedClassificationLoss",
    "detection_losses",
    "patch_detection_criterion",
]


def smooth_class_targets(
    target: torch.Tensor, label_smoothing: Any, mode: str = "uniform"
) -> torch.Tensor:
    """Smooth foreground rows of ``target`` (``(..., nc)``) toward ``score/nc`` or ``score/2``.

    Rows summing to 0 (background) come back exactly 0. ``label_smoothing=0``
    returns values bit-identical to ``target``.

    Args:
        target: the assigner's ``target_scores``, shape ``(..., nc)``.
        label_smoothing: factor in [0, 1] (a float or a 0-d tensor); not checked here.
        mode: one of ``MODES``: ``uniform`` (prior ``score/nc``) or ``yolov5`` (``score/2``).

    Returns:
        The smoothed target, same shape and dtype.

    Example:

    >>> t = torch.tensor([[0.0, 0.8, 0.0], [0.0, 0.0, 0.0]])
    >>> smooth_class_targets(t, 0.3, "uniform").sum(-1)
    tensor([0.8000, 0.0000])
    """
    # Deliberately no factor check: this runs on every batch (from SmoothedBCEWithLogits)
    # with a value SmoothingConfig already validated, and like keras_ls.smoothing.mix it is
    # a bare formula that may get a tensor factor. Check user values with SmoothingConfig
    # or go through patch_detection_criterion. A mode outside MODES is not silently taken
    # for yolov5, though: the dispatch below has no default branch.
    score = target.sum(-1, keepdim=True)
    if mode == "uniform":
        prior = score * (1.0 / target.shape[-1])
    elif mode == "yolov5":
        prior = score * 0.5
    else:
        raise ValueError(f"`mode` must be one of {', '.join(MODES)}; received {mode!r}.")
    return mix(target, prior, label_smoothing)


class SmoothedBCEWithLogits(nn.Module):
    """Drop-in for ``v8DetectionLoss.bce`` that smooths the target first.

    Built by :func:`patch_detection_criterion`, which validates the values.
    ``label_smoothing`` is a plain Python float, updated in place by the
    trainer once per epoch (no recompilation, no tensor on the device); since
    it changes after construction, the constructor does not check it.
    """

    def __init__(
        self, bce: nn.Module | None = None, label_smoothing: float = 0.0, mode: str = "uniform"
    ):
        super().__init__()
        self.bce = bce if bce is not None else nn.BCEWithLogitsLoss(reduction="none")
        self.label_smoothing = label_smoothing
        self.mode = mode

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.bce(pred, smooth_class_targets(target, self.label_smoothing, self.mode))

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, mode={self.mode!r}"


def detection_losses(criterion: Any) -> list:
    """The ``v8DetectionLoss``-like objects inside ``criterion`` (itself, or E2E branches)."""
    found = []
    for obj in (
        criterion,
        getattr(criterion, "one2many", None),
        getattr(criterion, "one2one", None),
    ):
        if (
            obj is not None
            and isinstance(getattr(obj, "bce", None), nn.Module)
            and obj not in found
        ):
            found.append(obj)
    return found


def patch_detection_criterion(criterion: Any, label_smoothing: float, mode: str = "uniform") -> Any:
    """Make ``criterion``'s class BCE smooth its targets; returns ``criterion``.

    Works on ``v8DetectionLoss`` and its subclasses (segment, pose, OBB) and on
    the end-to-end wrappers (``E2ELoss``/``E2EDetectLoss``: both branches).
    Idempotent: a second call only updates the factor and mode.

    Args:
        criterion: the model's training loss (``model.init_criterion()``).
        label_smoothing: factor in [0, 1].
        mode: ``uniform`` or ``yolov5`` (see :func:`smooth_class_targets`).

    Returns:
        ``criterion``, patched in place.

    Example:

    ```python
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolo11n.yaml", nc=3, verbose=False)
    model.args = get_cfg()  # the loss gains (box, cls, dfl)
    model.criterion = patch_detection_criterion(model.init_criterion(), 0.1, "uniform")
    ```
    """
    # A public entry for custom loops (and the trainer's per-epoch call): values are
    # checked here, by SmoothingConfig -- the one set of rules -- once per call, never
    # per batch.
    checked = SmoothingConfig(label_smoothing, mode)
    label_smoothing, mode = checked.label_smoothing, checked.label_smoothing_mode
    losses = detection_losses(criterion)
    if not losses:
        raise TypeError(
            "Cannot smooth class targets of criterion "
            f"{type(criterion).__name__}: expected a v8DetectionLoss (or an E2E loss with "
            "one2many/one2one branches) that has a `bce` module."
        )
    for loss in losses:
        if isinstance(loss.bce, SmoothedBCEWithLogits):
            loss.bce.label_smoothing, loss.bce.mode = label_smoothing, mode
        else:
            loss.bce = SmoothedBCEWithLogits(loss.bce, label_smoothing, mode)
    return criterion


class SmoothedClassificationLoss:
    """``v8ClassificationLoss`` with label smoothing toward the uniform prior.

    ``CE(mix(onehot, 1/K, a), p) = mix(-log p[y], -mean_k log p[k], a)``; equal
    to ``F.cross_entropy(..., label_smoothing=a)``. Built by the classification
    trainer from a validated :class:`~detection.config.SmoothingConfig`, which
    rewrites ``label_smoothing`` every epoch; the constructor does not check it.
    """

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, preds: Any, batch: dict[str, torch.Tensor]):
        preds = preds[1] if isinstance(preds, (list, tuple)) else preds
        logp = F.log_softmax(preds.float(), dim=-1)
        nll = -logp.gather(-1, batch["cls"].long().view(-1, 1)).squeeze(-1)
        loss = mix(nll, -logp.mean(-1), self.label_smoothing).mean()
        return loss, {"loss": loss.detach()}
