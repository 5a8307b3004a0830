"""Ultralytics trainers whose class targets are label-smoothed.

Use them as ``YOLO("yolo11n.pt").train(data=..., trainer=SmoothedDetectionTrainer,
label_smoothing=0.1, label_smoothing_mode="uniform", label_smoothing_schedule="cosine",
label_smoothing_final=0.0, ...)``.

Design notes (why it is built this way):

- The four smoothing keys are popped from the overrides before
  ``BaseTrainer.__init__``: ``get_cfg`` raises ``SyntaxError`` on unknown keys
  and drops ``label_smoothing`` with a warning. They are then set on
  ``self.args``, so they land in ``args.yaml`` and in ``vars(args)``, which is
  what Ultralytics' DDP launcher hands to the trainer it re-creates in each
  worker. Checkpoints carry them in ``train_args`` as one ``label_smoothing``
  dict (a key stock ``get_cfg`` drops), so resume reads them back and plain
  Ultralytics can still load *and* resume the file. The validator re-checks
  its args with ``get_cfg``, so it is built without them.
- The model stays a stock ``DetectionModel`` / ``ClassificationModel``; only
  its live ``criterion`` is patched, once per epoch start. Ultralytics saves
  the EMA copy with ``criterion=None``, so ``best.pt`` / ``last.pt`` are plain
  Ultralytics checkpoints, and validation (which builds its own criterion on
  the EMA model) reports the *unsmoothed* loss.
- The factor is a pure function of the epoch (``keras_ls.schedules``), so a
  resumed run continues with the right value at the right epoch.
"""

from __future__ import annotations

from typing import Any

from ultralytics.models.yolo.classify import ClassificationTrainer
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.models.yolo.obb import OBBTrainer
from ultralytics.models.yolo.pose import PoseTrainer
from ultralytics.models.yolo.segment import SegmentationTrainer
from ultralytics.utils import DEFAULT_CFG, LOGGER, RANK, YAML
from ultralytics.utils.torch_utils import unwrap_model

from detection.config import KEYS, SmoothingConfig, pop_config
from detection.data import check_detection_data
from detection.targets import (
    SmoothedBCEWithLogits,
    SmoothedClassificationLoss,
    detection_losses,
    patch_detection_criterion,
)

__all__ = [
    "SmoothedDetectionTrainer",
    "SmoothedSegmentationTrainer",
    "SmoothedPoseTrainer",
    "SmoothedOBBTrainer",
    "SmoothedClassificationTrainer",
    "TRAINERS",
    "CSV_COLUMN",
]

#: Name of the results.csv column holding the epoch's smoothing factor.
CSV_COLUMN = "label_smoothing"


def _on_train_epoch_start(trainer: Any) -> None:
    # Module-level so that it pickles by reference into Ultralytics' DDP state file.
    if hasattr(trainer, "apply_label_smoothing"):
        trainer.apply_label_smoothing(trainer.epoch)


class _SmoothingMixin:
    """Shared logic; mixed in front of an Ultralytics trainer class."""

    smoothing: SmoothingConfig
    label_smoothing_value: float

    def __init__(
        self, cfg: Any = DEFAULT_CFG, overrides: dict | None = None, _callbacks: dict | None = None
    ):
        overrides = dict(overrides or {})
        given = {k for k in KEYS if k in overrides}
        if isinstance(cfg, dict):
            cfg = dict(cfg)
        self.smoothing = pop_config(cfg if isinstance(cfg, dict) else None, overrides)
        self._check_smoothing_inputs(overrides)
        super().__init__(cfg, overrides, _callbacks)
        if self.resume:
            self.smoothing = self._smoothing_from_checkpoint(given)
        for key, value in self.smoothing.as_dict().items():
            setattr(self.args, key, value)
        if RANK in {-1, 0}:  # BaseTrainer wrote args.yaml before the keys were set
            YAML.save(self.save_dir / "args.yaml", vars(self.args))
        self.label_smoothing_value = self.smoothing.factor(0, self.epochs)
        note = self.smoothing.short_run_warning(self.epochs)
        if note and RANK in {-1, 0}:
            LOGGER.warning(note)
        if _on_train_epoch_start not in self.callbacks["on_train_epoch_start"]:
            self.add_callback("on_train_epoch_start", _on_train_epoch_start)

    # -- hooks -----------------------------------------------------------------------------

    def _check_smoothing_inputs(self, overrides: dict) -> None:
        """Task-specific checks that must fail before any training starts."""

    def _smoothing_from_checkpoint(self, given: set[str]) -> SmoothingConfig:
        from ultralytics.nn.tasks import torch_safe_load

        ckpt, _ = torch_safe_load(self.args.resume)
        train_args = ckpt.get("train_args") or {}
        stored = train_args.get("label_smoothing")  # a dict, see save_model()
        if not isinstance(stored, dict):
            stored = {k: train_args[k] for k in KEYS if k in train_args}
        if not stored:
            LOGGER.warning(
                f"{self.args.resume} was not trained with label smoothing; resuming it with "
                f"{self.smoothing.as_dict()}."
            )
            return self.smoothing
        config = SmoothingConfig(**stored)
        if given and any(getattr(self.smoothing, k) != getattr(config, k) for k in given):
            LOGGER.warning(
                f"Resume ignores the label smoothing settings given now; using the checkpoint's "
                f"{config.as_dict()}. Start a new run to change them."
            )
        return config

    def _install_criterion(self, model: Any, factor: float) -> None:  # pragma: no cover
        raise NotImplementedError

    def _criterion_is_smoothed(self, criterion: Any) -> bool:  # pragma: no cover
        raise NotImplementedError

    # -- per-epoch update ------------------------------------------------------------------

    def apply_label_smoothing(self, epoch: int) -> float:
        """Set this epoch's factor on the training criterion; returns it."""
        factor = self.smoothing.factor(epoch, self.epochs)
        self.label_smoothing_value = factor
        model = unwrap_model(self.model)
        if getattr(model, "criterion", None) is None:
            model.criterion = model.init_criterion()
        self._install_criterion(model, factor)
        # Validation runs on the EMA copy with its own criterion. A deepcopy made after
        # patching (NaN recovery rebuilds the EMA) would carry ours: drop it, so the
        # validation loss stays the stock, unsmoothed one.
        ema = getattr(getattr(self, "ema", None), "ema", None)
        if ema is not None and self._criterion_is_smoothed(getattr(ema, "criterion", None)):
            ema.criterion = None
        if RANK in {-1, 0}:
            s = self.smoothing
            sched = s.label_smoothing_schedule
            if sched != "constant":
                sched += f" {s.label_smoothing:g}->{s.label_smoothing_final:g}"
            LOGGER.info(
                f"label_smoothing: {factor:.4g} (mode={s.label_smoothing_mode}, {sched}, "
                f"epoch {epoch + 1}/{self.epochs})"
            )
        return factor

    def get_validator(self) -> Any:
        """The stock validator; it re-checks ``args`` with ``get_cfg``, so hide our keys."""
        saved = {k: vars(self.args).pop(k) for k in KEYS if k in vars(self.args)}
        try:
            return super().get_validator()
        finally:
            vars(self.args).update(saved)

    def save_model(self) -> bool:
        """Stock checkpoint; the four keys travel in ``train_args`` as one ``label_smoothing`` dict.

        ``get_cfg`` drops a ``label_smoothing`` key (removed in Ultralytics 8.4) but
        rejects unknown ones, so this keeps ``last.pt`` resumable by plain Ultralytics
        too (without smoothing), while our resume reads the dict back.
        """
        flat = {k: vars(self.args).pop(k) for k in KEYS if k in vars(self.args)}
        vars(self.args)["label_smoothing"] = dict(flat)
        try:
            return super().save_model()
        finally:
            vars(self.args).update(flat)

    def save_metrics(self, metrics: dict) -> None:
        """Add the epoch's factor as a ``label_smoothing`` column of results.csv."""
        super().save_metrics({**metrics, CSV_COLUMN: self.label_smoothing_value})


class SmoothedDetectionTrainer(_SmoothingMixin, DetectionTrainer):
    """``DetectionTrainer`` with label-smoothed class targets on foreground anchors.

    Extra training keys (validated by :class:`~detection.config.SmoothingConfig`):
    ``label_smoothing`` (start factor, default 0.1), ``label_smoothing_mode``
    (``uniform`` | ``yolov5``), ``label_smoothing_schedule`` (``constant`` | ``linear`` |
    ``cosine`` | ``piecewise``, alias ``step``), ``label_smoothing_final``.
    Works for detect/segment/pose/OBB and end-to-end heads (both branches).
    """

    def _check_smoothing_inputs(self, overrides: dict) -> None:
        if not overrides.get("resume"):
            check_detection_data(overrides.get("data"))

    def _install_criterion(self, model: Any, factor: float) -> None:
        patch_detection_criterion(model.criterion, factor, self.smoothing.label_smoothing_mode)

    def _criterion_is_smoothed(self, criterion: Any) -> bool:
        return any(isinstance(x.bce, SmoothedBCEWithLogits) for x in detection_losses(criterion))


class SmoothedSegmentationTrainer(SmoothedDetectionTrainer, SegmentationTrainer):
    """``SegmentationTrainer`` with smoothed class targets (same keys and formula)."""


class SmoothedPoseTrainer(SmoothedDetectionTrainer, PoseTrainer):
    """``PoseTrainer`` with smoothed class targets (same keys and formula)."""


class SmoothedOBBTrainer(SmoothedDetectionTrainer, OBBTrainer):
    """``OBBTrainer`` with smoothed class targets (same keys and formula)."""


class SmoothedClassificationTrainer(_SmoothingMixin, ClassificationTrainer):
    """``ClassificationTrainer`` with label-smoothed cross-entropy (uniform prior).

    Same keys as :class:`SmoothedDetectionTrainer`; only ``label_smoothing_mode=uniform``
    applies to a softmax classifier.
    """

    def _check_smoothing_inputs(self, overrides: dict) -> None:
        if self.smoothing.label_smoothing_mode != "uniform":
            raise ValueError(
                "`label_smoothing_mode` must be 'uniform' for classification (softmax "
                f"cross-entropy); received {self.smoothing.label_smoothing_mode!r}."
            )

    def _install_criterion(self, model: Any, factor: float) -> None:
        if isinstance(model.criterion, SmoothedClassificationLoss):
            model.criterion.label_smoothing = factor
        else:
            model.criterion = SmoothedClassificationLoss(factor)

    def _criterion_is_smoothed(self, criterion: Any) -> bool:
        return isinstance(criterion, SmoothedClassificationLoss)


#: Task name -> smoothed trainer class (what the CLI picks from ``task=``).
TRAINERS = {
    "detect": SmoothedDetectionTrainer,
    "segment": SmoothedSegmentationTrainer,
    "pose": SmoothedPoseTrainer,
    "obb": SmoothedOBBTrainer,
    "classify": SmoothedClassificationTrainer,
}
