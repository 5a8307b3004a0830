"""Exact tests of the smoothed class targets on hand-built assigner outputs."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detection.config import SmoothingConfig
from detection.targets import (
    SmoothedBCEWithLogits,
    SmoothedClassificationLoss,
    patch_detection_criterion,
    smooth_class_targets,
)

NC = 3


def _target_scores() -> torch.Tensor:
    """(bs=2, anchors=5, nc=3): foreground rows with IoU-aware scores, background rows 0."""
    t = torch.zeros(2, 5, NC)
    t[0, 0, 1] = 0.8
    t[0, 3, 0] = 0.35
    t[1, 1, 2] = 1.0
    t[1, 4, 1] = 0.05
    return t


def test_uniform_formula_rows_and_background():
    t = _target_scores()
    out = smooth_class_targets(t, 0.1, "uniform")
    # Foreground row [0, 0.8, 0]: 0.9 * t + 0.1 * 0.8 / 3.
    expected = torch.tensor([0.1 * 0.8 / 3, 0.9 * 0.8 + 0.1 * 0.8 / 3, 0.1 * 0.8 / 3])
    torch.testing.assert_close(out[0, 0], expected, rtol=0, atol=1e-7)
    # Row totals are kept.
    torch.testing.assert_close(out.sum(-1), t.sum(-1), rtol=0, atol=1e-6)
    # Background rows are exactly zero.
    bg = t.sum(-1) == 0
    assert bg.sum() == 6
    assert torch.equal(out[bg], torch.zeros_like(out[bg]))


def test_yolov5_formula():
    t = _target_scores()
    out = smooth_class_targets(t, 0.2, "yolov5")
    # score=1 row: the old smooth_bce(eps=0.2) -> positive 1 - eps/2, negative eps/2.
    torch.testing.assert_close(out[1, 1], torch.tensor([0.1, 0.1, 0.9]), rtol=0, atol=1e-7)
    # score 0.35 row: scaled by the score.
    torch.testing.assert_close(
        out[0, 3],
        torch.tensor([0.8 * 0.35 + 0.2 * 0.175, 0.2 * 0.175, 0.2 * 0.175]),
        rtol=0,
        atol=1e-7,
    )
    bg = t.sum(-1) == 0
    assert torch.equal(out[bg], torch.zeros_like(out[bg]))


def test_zero_factor_is_bit_identical():
    t = torch.rand(2, 7, 5) * (torch.rand(2, 7, 1) > 0.5)
    for mode in ("uniform", "yolov5"):
        assert torch.equal(smooth_class_targets(t, 0.0, mode), t)


def _bce_criterion() -> SimpleNamespace:
    """The smallest thing patch_detection_criterion accepts: an object with a `bce` module."""
    return SimpleNamespace(bce=nn.BCEWithLogitsLoss(reduction="none"))


def test_patch_validates_through_the_config():
    # The values are checked where they enter: SmoothingConfig, which the public
    # patch_detection_criterion goes through (SmoothedBCEWithLogits itself no longer checks).
    crit = _bce_criterion()
    stock = crit.bce
    with pytest.raises(ValueError, match="label_smoothing_mode"):
        patch_detection_criterion(crit, 0.1, "bogus")
    with pytest.raises(ValueError, match="label_smoothing"):
        patch_detection_criterion(crit, 1.5)
    with pytest.raises(TypeError, match="label_smoothing"):
        patch_detection_criterion(crit, "lots")
    assert crit.bce is stock  # nothing patched on bad input
    with pytest.raises(TypeError, match="criterion"):
        patch_detection_criterion(object(), 0.1)
    patch_detection_criterion(crit, 0.25, "YOLOv5")
    assert isinstance(crit.bce, SmoothedBCEWithLogits) and crit.bce.bce is stock
    assert (crit.bce.label_smoothing, crit.bce.mode) == (0.25, "yolov5")


@pytest.mark.parametrize(
    "factor, mode", [(1.5, "uniform"), (-0.1, "uniform"), (float("nan"), "uniform"), (0.1, "x")]
)
def test_one_message_per_bad_value(factor, mode):
    """patch_detection_criterion's errors are SmoothingConfig's, word for word."""
    with pytest.raises(ValueError) as from_config:
        SmoothingConfig(factor, mode)
    with pytest.raises(ValueError) as from_patch:
        patch_detection_criterion(_bce_criterion(), factor, mode)
    assert str(from_patch.value) == str(from_config.value)


def test_unknown_mode_is_never_taken_for_yolov5():
    # smooth_class_targets does not validate (hot path, values already checked), but its
    # dispatch has no default branch: a typo fails instead of silently meaning yolov5.
    t = _target_scores()
    with pytest.raises(ValueError, match=r"`mode` must be one of uniform, yolov5; received 'U'"):
        smooth_class_targets(t, 0.1, "U")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        SmoothedBCEWithLogits(label_smoothing=0.1, mode="bogus")(torch.zeros_like(t), t)


# ---------------------------------------------------------------- real Ultralytics losses


class _FixedAssigner:
    """Stands in for TaskAlignedAssigner: returns hand-built outputs."""

    def __init__(self, target_scores: torch.Tensor, anchors: torch.Tensor):
        self.target_scores = target_scores
        bs, n, _ = target_scores.shape
        self.fg = target_scores.sum(-1) > 0
        # Boxes around each anchor (pixels), so the box/DFL losses are finite and non-trivial.
        xy = anchors.unsqueeze(0).expand(bs, n, 2)
        self.boxes = torch.cat([xy - 6.0, xy + 10.0], -1)

    def __call__(self, *args, **kwargs):
        labels = self.target_scores.argmax(-1)
        gt_idx = torch.zeros_like(labels)
        return labels, self.boxes, self.target_scores.clone(), self.fg, gt_idx


def _model_and_batch(cfg: str):
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG

    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=NC, verbose=False)
    model.args = copy.copy(DEFAULT_CFG)
    model.train()
    img = torch.rand(2, 3, 64, 64)
    batch = {
        "img": img,
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[1.0], [2.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.3, 0.3, 0.2, 0.2]]),
    }
    return model, batch


def _fixed_targets(n_anchors: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(2, n_anchors, NC)
    fg = torch.randperm(n_anchors, generator=g)[: n_anchors // 4]
    cls = torch.randint(0, NC, (fg.numel(),), generator=g)
    t[0, fg, cls] = torch.rand(fg.numel(), generator=g) * 0.9 + 0.05
    t[1, fg[: fg.numel() // 2], cls[: fg.numel() // 2]] = 0.7
    return t


def _losses(model, batch, criterion, preds):
    loss, items = criterion(preds, batch)
    return loss, {k: v.clone() for k, v in items.items()}


def _branches(criterion):
    return [criterion.one2many, criterion.one2one] if hasattr(criterion, "one2one") else [criterion]


@pytest.mark.parametrize("cfg", ["yolo11n.yaml", "yolo26n.yaml"])
def test_real_loss_zero_factor_bit_identical_and_class_term_only(cfg, offline_cfg):
    from ultralytics.utils.tal import make_anchors

    model, batch = _model_and_batch(cfg)
    preds = model(batch["img"])
    stock = model.init_criterion()
    smoothed = model.init_criterion()
    # Same fixed assigner outputs for both criteria and all branches.
    any_preds = preds["one2many"] if "one2many" in preds else preds
    anchors, _ = make_anchors(any_preds["feats"], model.stride, 0.5)
    strides = torch.cat(
        [
            torch.full((f.shape[2] * f.shape[3],), float(s))
            for f, s in zip(any_preds["feats"], model.stride)
        ]
    )
    t = _fixed_targets(anchors.shape[0])
    for crit in (stock, smoothed):
        for br in _branches(crit):
            br.assigner = _FixedAssigner(t, anchors * strides[:, None])

    patch_detection_criterion(smoothed, 0.0, "uniform")
    assert all(isinstance(b.bce, SmoothedBCEWithLogits) for b in _branches(smoothed))
    l0, i0 = _losses(model, batch, stock, preds)
    l1, i1 = _losses(model, batch, smoothed, preds)
    assert torch.equal(l0, l1)
    for k in i0:
        assert torch.equal(i0[k], i1[k]), k

    patch_detection_criterion(smoothed, 0.2, "uniform")
    l2, i2 = _losses(model, batch, smoothed, preds)
    assert not torch.equal(i2["cls_loss"], i0["cls_loss"])
    for k in i0:
        if k != "cls_loss":
            assert torch.equal(i0[k], i2[k]), k

    # The class term matches the formula, computed by hand on one branch (non-E2E model).
    if not hasattr(stock, "one2one"):
        scores = preds["scores"].permute(0, 2, 1)
        score = t.sum(-1, keepdim=True)
        for mode, prior in (("uniform", score / NC), ("yolov5", score / 2)):
            patch_detection_criterion(smoothed, 0.2, mode)
            got = _losses(model, batch, smoothed, preds)[1]["cls_loss"]
            target = 0.8 * t + 0.2 * prior
            bce = F.binary_cross_entropy_with_logits(scores, target, reduction="none").sum()
            expected = bce / t.sum().clamp(min=1) * model.args.cls
            torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-6)


def test_both_e2e_branches_change_and_gradients_flow(offline_cfg):
    from ultralytics.utils.tal import make_anchors

    model, batch = _model_and_batch("yolo26n.yaml")
    preds = model(batch["img"])
    crit = model.init_criterion()
    p = preds["one2many"]
    anchors, _ = make_anchors(p["feats"], model.stride, 0.5)
    strides = torch.cat(
        [torch.full((f.shape[2] * f.shape[3],), float(s)) for f, s in zip(p["feats"], model.stride)]
    )
    t = _fixed_targets(anchors.shape[0], seed=3)
    for br in _branches(crit):
        br.assigner = _FixedAssigner(t, anchors * strides[:, None])
    base = {
        n: crit.__dict__[n].loss(preds[n], batch)[1]["cls_loss"].clone()
        for n in ("one2many", "one2one")
    }
    patch_detection_criterion(crit, 0.3, "yolov5")
    for n in ("one2many", "one2one"):
        assert crit.__dict__[n].bce.label_smoothing == 0.3
        after = crit.__dict__[n].loss(preds[n], batch)[1]["cls_loss"]
        assert not torch.equal(after, base[n]), n
    loss, _ = crit(preds, batch)
    loss.sum().backward()
    grads = [q.grad for q in model.parameters() if q.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_classification_loss_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    cls = torch.tensor([0, 3, 1, 2, 2, 0])
    for a in (0.0, 0.1, 0.5):
        loss, items = SmoothedClassificationLoss(a)(logits, {"cls": cls})
        ref = F.cross_entropy(logits, cls, label_smoothing=a)
        torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
        assert math.isclose(float(items["loss"]), float(ref.detach()), rel_tol=1e-6)
    loss.backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


@pytest.mark.parametrize(
    "model_cls, cfg",
    [
        ("SegmentationModel", "yolo11n-seg.yaml"),
        ("PoseModel", "yolo11n-pose.yaml"),
        ("OBBModel", "yolo11n-obb.yaml"),
        ("SegmentationModel", "yolo26n-seg.yaml"),
    ],
)
def test_segment_pose_obb_criteria_are_patched(model_cls, cfg, offline_cfg):
    import ultralytics.nn.tasks as tasks
    from ultralytics.utils import DEFAULT_CFG

    model = getattr(tasks, model_cls)(cfg, nc=NC, verbose=False)
    model.args = copy.copy(DEFAULT_CFG)
    crit = patch_detection_criterion(model.init_criterion(), 0.1, "uniform")
    branches = _branches(crit)
    assert len(branches) == (2 if "26" in cfg else 1)
    assert all(
        isinstance(b.bce, SmoothedBCEWithLogits) and b.bce.label_smoothing == 0.1 for b in branches
    )


def test_task_trainers_keep_their_task_behaviour():
    from ultralytics.models.yolo.obb import OBBTrainer
    from ultralytics.models.yolo.pose import PoseTrainer
    from ultralytics.models.yolo.segment import SegmentationTrainer

    from detection.trainer import TRAINERS

    assert TRAINERS["segment"].get_model is SegmentationTrainer.get_model
    assert TRAINERS["pose"].get_model is PoseTrainer.get_model
    assert TRAINERS["obb"].get_model is OBBTrainer.get_model
    assert all(issubclass(t, TRAINERS["detect"]) for k, t in TRAINERS.items() if k != "classify")
