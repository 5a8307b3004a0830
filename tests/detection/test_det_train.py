"""Training on a COCO128 subset: scratch (CLI), fine-tune, plain reload, resume, DDP, classify.

Tiny settings (imgsz 64, 16 images, 1-3 epochs, CPU) keep the file to about a minute.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detection.config import KEYS

TINY = dict(imgsz=64, batch=8, workers=0, plots=False, device="cpu", seed=0, verbose=False)


def _csv(run: Path) -> list[dict[str, str]]:
    with open(run / "results.csv", newline="") as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def _plain_load(weights: list[Path], image: Path) -> dict:
    """Load checkpoints in a fresh interpreter that imports neither detection nor keras_ls."""
    code = (
        "import json, sys\n"
        "from ultralytics import YOLO\n"
        f"weights, image = {[str(w) for w in weights]!r}, {str(image)!r}\n"
        "out = {}\n"
        "for w in weights:\n"
        "    m = YOLO(w)\n"
        "    r = m.predict(image, imgsz=64, device='cpu', verbose=False)[0]\n"
        "    kind = type(m.model).__module__ + '.' + type(m.model).__name__\n"
        "    out[w] = {'names': m.names, 'cls': kind, 'top': r.probs is not None or\n"
        "              r.boxes is not None}\n"
        "out['mods'] = sorted(k for k in sys.modules if k.split('.')[0] in\n"
        "                     ('detection', 'keras_ls', 'tensorflow', 'keras'))\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_LS_OFFLINE"}
    env["YOLO_OFFLINE"] = "1"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/", timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def scratch_run(subset3, tmp_path_factory) -> Path:
    """yolo11n.yaml from scratch, 1 epoch, through the CLI (python -m detection train)."""
    project = tmp_path_factory.mktemp("runs")
    args = [f"{k}={v}" for k, v in TINY.items()]
    cmd = [
        sys.executable,
        "-m",
        "detection",
        "train",
        "model=yolo11n.yaml",
        f"data={subset3}",
        "epochs=1",
        "label_smoothing=0.1",
        # The issue-17 case: a one-epoch run of a moving schedule keeps the start value.
        "label_smoothing_schedule=cosine",
        "label_smoothing_final=0",
        f"project={project}",
        "name=scratch",
        "offline=true",
        *args,
    ]
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=project,
        timeout=600,
        env={**os.environ, "YOLO_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    run = project / "scratch"
    log = r.stdout + r.stderr
    assert "label_smoothing: 0.1 (mode=uniform, cosine 0.1->0, epoch 1/1)" in log
    assert "label_smoothing_final=0 is not reached" in log
    return run


@pytest.mark.slow
def test_scratch_then_finetune_and_plain_reload(scratch_run, subset3, tmp_path, coco128):
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import unwrap_model

    from detection import SmoothedDetectionTrainer
    from detection.targets import SmoothedBCEWithLogits

    best = scratch_run / "weights" / "best.pt"
    assert best.is_file()
    assert [r["label_smoothing"] for r in _csv(scratch_run)] == ["0.1"]

    seen = []

    def record(trainer):
        crit = unwrap_model(trainer.model).criterion
        assert isinstance(crit.bce, SmoothedBCEWithLogits)
        seen.append((trainer.epoch, crit.bce.label_smoothing, crit.bce.mode))
        # Validation (EMA model) keeps the stock criterion: unsmoothed val loss.
        ema_crit = getattr(trainer.ema.ema, "criterion", None)
        assert ema_crit is None or not isinstance(ema_crit.bce, SmoothedBCEWithLogits)

    model = YOLO(str(best))
    model.add_callback("on_train_batch_end", record)
    model.train(
        data=str(subset3),
        trainer=SmoothedDetectionTrainer,
        epochs=2,
        label_smoothing=0.2,
        label_smoothing_mode="yolov5",
        label_smoothing_schedule="cosine",
        label_smoothing_final=0.05,
        project=str(tmp_path),
        name="ft",
        **TINY,
    )
    run = tmp_path / "ft"
    rows = _csv(run)
    assert [float(r["label_smoothing"]) for r in rows] == [0.2, 0.05]
    assert {(e, a, m) for e, a, m in seen} == {(0, 0.2, "yolov5"), (1, 0.05, "yolov5")}
    args = (run / "args.yaml").read_text()
    assert "label_smoothing_schedule: cosine" in args and "label_smoothing_mode: yolov5" in args

    image = next((coco128 / "images" / "val2017").iterdir())
    out = _plain_load([best, run / "weights" / "best.pt", run / "weights" / "last.pt"], image)
    assert out.pop("mods") == []
    for info in out.values():
        assert info["cls"] == "ultralytics.nn.tasks.DetectionModel"
        assert info["names"] == {"0": "person", "1": "car", "2": "dog"}
        assert info["top"] is True


def test_checkpoint_from_0_1_0_with_step_schedule_resumes(scratch_run, tmp_path):
    """0.1.0 wrote ``label_smoothing_schedule: step`` into train_args; resume must read it."""
    import torch
    from ultralytics.utils.patches import torch_load

    from detection import SmoothedDetectionTrainer

    ckpt = torch_load(scratch_run / "weights" / "last.pt", map_location="cpu")
    stored = {
        "label_smoothing": 0.25,
        "label_smoothing_mode": "yolov5",
        "label_smoothing_schedule": "step",
        "label_smoothing_final": 0.05,
    }
    # What 0.1.0's save_model wrote: the four keys as one `label_smoothing` dict.
    ckpt["train_args"].update(epochs=4, save_dir=str(tmp_path / "run"), label_smoothing=stored)
    ckpt["epoch"] = 1
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)

    trainer = SmoothedDetectionTrainer(overrides={"resume": str(old), "label_smoothing": 0.9})
    assert trainer.resume and trainer.epochs == 4
    assert trainer.smoothing.as_dict() == stored  # the checkpoint's settings win, as given
    assert trainer.args.label_smoothing_schedule == "step"
    factors = [trainer.smoothing.factor(e, trainer.epochs) for e in range(4)]
    assert factors == [0.25, 0.25, 0.05, 0.05]  # step: the start value for the first half


class _Interrupt(RuntimeError):
    pass


@pytest.mark.slow
def test_resume_continues_the_schedule(subset3, tmp_path):
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import unwrap_model

    from detection import SmoothedDetectionTrainer

    def crash_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise _Interrupt("simulated interruption")

    model = YOLO("yolo11n.yaml")
    model.add_callback("on_fit_epoch_end", crash_after_first_epoch)
    kw = dict(TINY, val=False)
    with pytest.raises(_Interrupt):
        model.train(
            data=str(subset3),
            trainer=SmoothedDetectionTrainer,
            epochs=3,
            label_smoothing=0.3,
            label_smoothing_schedule="linear",
            label_smoothing_final=0.0,
            project=str(tmp_path),
            name="r",
            **kw,
        )
    last = tmp_path / "r" / "weights" / "last.pt"
    assert [r["label_smoothing"] for r in _csv(tmp_path / "r")] == ["0.3"]
    # The checkpoint stays stock-resumable: its train_args pass Ultralytics' own checks
    # (check_resume's get_cfg, then the validator's get_cfg on those args).
    from ultralytics.cfg import get_cfg
    from ultralytics.utils.patches import torch_load

    train_args = torch_load(last, map_location="cpu")["train_args"]
    assert train_args["label_smoothing"] == {
        "label_smoothing": 0.3,
        "label_smoothing_mode": "uniform",
        "label_smoothing_schedule": "linear",
        "label_smoothing_final": 0.0,
    }
    assert not any(k in train_args for k in KEYS[1:])
    stock_args = get_cfg(train_args)
    get_cfg(overrides=vars(stock_args))
    assert not hasattr(stock_args, "label_smoothing")

    seen = {}

    def record(trainer):
        seen[trainer.epoch] = unwrap_model(trainer.model).criterion.bce.label_smoothing

    resumed = YOLO(str(last))
    resumed.add_callback("on_train_batch_end", record)
    # Settings given now are ignored on resume (the checkpoint's win), as for Ultralytics keys.
    resumed.train(resume=True, trainer=SmoothedDetectionTrainer, label_smoothing=0.9)
    assert resumed.trainer.start_epoch == 1
    assert seen == {1: pytest.approx(0.15), 2: 0.0}
    assert [float(r["label_smoothing"]) for r in _csv(tmp_path / "r")] == pytest.approx(
        [0.3, 0.15, 0.0]
    )
    assert resumed.trainer.args.label_smoothing_schedule == "linear"


@pytest.mark.slow
def test_ddp_state_rebuilds_the_smoothed_trainer(subset3, tmp_path, offline_cfg):
    """Ultralytics' DDP launcher pickles the class and vars(args); rebuild from them."""
    # Without it Ultralytics would pip-install cloudpickle (network) on first DDP launch.
    pytest.importorskip("cloudpickle")
    from ultralytics.utils.dist import ddp_cleanup, generate_ddp_command
    from ultralytics.utils.patches import torch_load

    from detection import SmoothedDetectionTrainer

    trainer = SmoothedDetectionTrainer(
        overrides=dict(
            model="yolo11n.yaml",
            data=str(subset3),
            epochs=4,
            project=str(tmp_path),
            name="ddp",
            label_smoothing=0.25,
            label_smoothing_mode="yolov5",
            label_smoothing_schedule="step",
            label_smoothing_final=0.05,
            **TINY,
        )
    )
    trainer.world_size = 2  # as for device=0,1; no GPU is needed to write the command
    cmd, file = generate_ddp_command(trainer)
    try:
        assert cmd[1:3] == ["-m", "torch.distributed.run"] and cmd[-1] == file
        assert cmd[cmd.index("--nproc_per_node") + 1] == "2"
        state = torch_load(Path(file).with_suffix(".pt"), map_location="cpu")
        assert state["trainer"] is SmoothedDetectionTrainer
        assert {k: state["args"][k] for k in KEYS} == {
            "label_smoothing": 0.25,
            "label_smoothing_mode": "yolov5",
            "label_smoothing_schedule": "step",
            "label_smoothing_final": 0.05,
        }
        script = Path(file).read_text()
        assert 'trainer = state["trainer"](cfg=cfg, overrides=state["args"]' in script
        # What each worker runs, minus .train(): in a fresh interpreter that never imports
        # `detection` itself (unpickling the class must bring it in).
        code = (
            "import json\n"
            "from ultralytics.utils import DEFAULT_CFG_DICT\n"
            "from ultralytics.utils.patches import torch_load\n"
            f"state = torch_load({str(Path(file).with_suffix('.pt'))!r}, map_location='cpu')\n"
            "cfg = DEFAULT_CFG_DICT.copy(); cfg.update(save_dir='')\n"
            "t = state['trainer'](cfg=cfg, overrides=state['args'],\n"
            "                     _callbacks=state['callbacks'])\n"
            "print(json.dumps([t.smoothing.as_dict(), [t.smoothing.factor(e, t.epochs) "
            "for e in range(4)], len(t.callbacks['on_train_epoch_start'])]))\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
            env={**os.environ, "YOLO_OFFLINE": "1"},
        )
        assert r.returncode == 0, r.stderr[-3000:]
        config, factors, n_cb = json.loads(r.stdout.strip().splitlines()[-1])
        assert config == {k: state["args"][k] for k in KEYS}
        assert factors == [0.25, 0.25, 0.05, 0.05]  # step: start for the first half
        # Our epoch-start hook is registered once, not once per re-creation.
        assert n_cb == len(trainer.callbacks["on_train_epoch_start"])
    finally:
        ddp_cleanup(trainer, file)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(label_smoothing=1.5), ValueError, r"`label_smoothing` must be a finite number"),
        (dict(label_smoothing="lots"), TypeError, r"`label_smoothing` must be a real number"),
        (dict(label_smoothing_mode="soft"), ValueError, r"`label_smoothing_mode` must be one of"),
        (dict(label_smoothing_schedule="exp"), ValueError, r"`label_smoothing_schedule` must be"),
        (dict(label_smoothing_final=0.3), ValueError, r"schedule='constant'"),
        (
            dict(label_smoothing_final=-0.1, label_smoothing_schedule="linear"),
            ValueError,
            r"`label_smoothing_final`",
        ),
        (dict(data="missing.yaml"), FileNotFoundError, r"`data` file not found"),
    ],
)
def test_bad_input_fails_before_training(kw, err, match, subset3, tmp_path):
    from detection import SmoothedDetectionTrainer

    overrides = dict(model="yolo11n.yaml", data=str(subset3), project=str(tmp_path), name="bad")
    overrides.update(kw)
    if overrides["data"] == "missing.yaml":
        overrides["data"] = str(tmp_path / "missing.yaml")
    with pytest.raises(err, match=match):
        SmoothedDetectionTrainer(overrides=overrides)
    assert not (tmp_path / "bad").exists()  # nothing started: no run directory


def test_bad_data_files_fail_before_training(tmp_path):
    from detection import SmoothedDetectionTrainer

    bad = tmp_path / "bad.yaml"
    bad.write_text("names: {0: a}\ntrain: images\n")
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['val'\]"):
        SmoothedDetectionTrainer(
            overrides=dict(model="yolo11n.yaml", data=str(bad), project=str(tmp_path), name="bad")
        )
    assert not (tmp_path / "bad").exists()


def _cls_folder(coco128: Path, root: Path) -> Path:
    """person / car / dog crops from COCO128 boxes: root/{train,val}/<class>/*.jpg."""
    from PIL import Image

    ids = {0: "person", 2: "car", 16: "dog"}
    counts: dict[tuple[str, str], int] = {}
    for split, src in (("train", "train2017"), ("val", "val2017")):
        for lbl in sorted((coco128 / "labels" / src).glob("*.txt")):
            rows = [r.split() for r in lbl.read_text().splitlines() if r.strip()]
            img = None
            for r in rows:
                c = int(r[0])
                if c not in ids or counts.get((split, ids[c]), 0) >= 6:
                    continue
                img = img or Image.open(coco128 / "images" / src / lbl.with_suffix(".jpg").name)
                x, y, w, h = (float(v) for v in r[1:5])
                W, H = img.size
                box = (
                    int((x - w / 2) * W),
                    int((y - h / 2) * H),
                    int((x + w / 2) * W),
                    int((y + h / 2) * H),
                )
                if box[2] - box[0] < 8 or box[3] - box[1] < 8:
                    continue
                out = root / split / ids[c]
                out.mkdir(parents=True, exist_ok=True)
                k = counts.get((split, ids[c]), 0)
                img.crop(box).convert("RGB").save(out / f"{lbl.stem}_{k}.jpg")
                counts[(split, ids[c])] = k + 1
    return root


@pytest.mark.slow
def test_classification_trainer(coco128, tmp_path, offline_cfg):
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import unwrap_model

    from detection import SmoothedClassificationTrainer
    from detection.targets import SmoothedClassificationLoss

    data = _cls_folder(coco128, tmp_path / "clsdata")
    seen = []

    def record(trainer):
        crit = unwrap_model(trainer.model).criterion
        assert isinstance(crit, SmoothedClassificationLoss)
        seen.append(crit.label_smoothing)

    model = YOLO("yolo11n-cls.yaml")
    model.add_callback("on_train_batch_end", record)
    model.train(
        data=str(data),
        trainer=SmoothedClassificationTrainer,
        epochs=2,
        imgsz=32,
        batch=8,
        workers=0,
        plots=False,
        device="cpu",
        label_smoothing=0.2,
        label_smoothing_schedule="linear",
        label_smoothing_final=0.1,
        project=str(tmp_path),
        name="cls",
        verbose=False,
    )
    run = tmp_path / "cls"
    assert [float(r["label_smoothing"]) for r in _csv(run)] == [0.2, 0.1]
    assert set(seen) == {0.2, 0.1}
    image = next((data / "val" / "dog").iterdir())
    out = _plain_load([run / "weights" / "best.pt"], image)
    assert out.pop("mods") == []
    (info,) = out.values()
    assert info["cls"] == "ultralytics.nn.tasks.ClassificationModel"
    assert sorted(info["names"].values()) == ["car", "dog", "person"]
    with pytest.raises(ValueError, match="must be 'uniform' for classification"):
        SmoothedClassificationTrainer(
            overrides=dict(
                model="yolo11n-cls.yaml",
                data=str(data),
                label_smoothing_mode="yolov5",
                project=str(tmp_path),
                name="bad",
            )
        )


@pytest.mark.slow
def test_end_to_end_head_trains_with_both_branches_smoothed(subset3, tmp_path):
    """YOLO26 (E2ELoss: one-to-many + one-to-one) through the trainer, 1 epoch."""
    from ultralytics import YOLO
    from ultralytics.utils.torch_utils import unwrap_model

    from detection import SmoothedDetectionTrainer
    from detection.targets import SmoothedBCEWithLogits

    seen = []

    def record(trainer):
        crit = unwrap_model(trainer.model).criterion
        seen.append(
            [
                (type(b.bce).__name__, b.bce.label_smoothing)
                for b in (crit.one2many, crit.one2one)
                if isinstance(b.bce, SmoothedBCEWithLogits)
            ]
        )

    model = YOLO("yolo26n.yaml")
    model.add_callback("on_train_batch_end", record)
    model.train(
        data=str(subset3),
        trainer=SmoothedDetectionTrainer,
        epochs=1,
        label_smoothing=0.15,
        project=str(tmp_path),
        name="e2e",
        **TINY,
    )
    assert seen and all(s == [("SmoothedBCEWithLogits", 0.15)] * 2 for s in seen)
    assert [float(r["label_smoothing"]) for r in _csv(tmp_path / "e2e")] == [0.15]
