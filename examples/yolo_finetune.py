"""Fine-tune YOLO with label-smoothed classes on a COCO128 subset, fully offline.

1. write a 3-class COCO128 subset with the subset tool (``detection.make_subset``);
2. train ``yolo11n.yaml`` briefly from scratch with the stock Ultralytics trainer;
3. fine-tune that ``best.pt`` with ``SmoothedDetectionTrainer`` and a cosine
   schedule for the factor (logged per epoch in results.csv);
4. validate the fine-tuned model (the validation loss is the unsmoothed one);
5. predict on the images that ship inside the ultralytics package (``ASSETS``).

    python examples/yolo_finetune.py                       # CPU, a few minutes
    python examples/yolo_finetune.py --device 0 --imgsz 640 --epochs 20 --finetune-epochs 20
    python examples/yolo_finetune.py --imgsz 64 --max-images 8 --epochs 1 --finetune-epochs 1

Nothing is downloaded: ``detection.offline()`` runs before Ultralytics is imported,
the model is built from its YAML, and COCO128 is found by ``detection.data.find_coco128``
(``$KERAS_LS_COCO128``, else ``../shared/data/coco128`` next to the repository) unless
``--coco128`` names the folder.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    sys.path.insert(0, str(REPO))
    from detection.config import MODES  # light: neither torch nor Ultralytics
    from detection.data import Coco128NotFound, find_coco128
    from keras_ls.schedules import START_END_NAMES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--coco128",
        default=None,
        help="COCO128 folder (default: $KERAS_LS_COCO128, else ../shared/data/coco128)",
    )
    p.add_argument("--classes", default="person,car,dog")
    p.add_argument("--max-images", type=int, default=64, help="per split")
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3, help="from-scratch epochs")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--final", type=float, default=0.0, help="factor at the last epoch")
    p.add_argument("--schedule", default="cosine", choices=START_END_NAMES)
    p.add_argument("--mode", default="uniform", choices=MODES)
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    p.add_argument("--out", default=None, help="work folder (default: a new temp folder)")
    args = p.parse_args(argv)
    if args.coco128 is None:
        try:
            args.coco128 = str(find_coco128())
        except Coco128NotFound as e:
            p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import detection

    detection.offline()  # before ultralytics is imported
    from ultralytics import YOLO
    from ultralytics.utils import ASSETS

    from detection import SmoothedDetectionTrainer, make_subset
    from detection.data import summarize_dataset

    out = Path(args.out or tempfile.mkdtemp(prefix="yolo_finetune_"))
    out.mkdir(parents=True, exist_ok=True)
    data = make_subset(
        Path(args.coco128) / "data.yaml",
        args.classes,
        out / "data",
        max_images=args.max_images,
        seed=0,
        overwrite=True,
    )
    print(f"[1/5] subset: {data}")
    print(summarize_dataset(data))

    common = dict(
        data=str(data),
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        workers=0 if args.device == "cpu" else 4,
        plots=False,
        project=str(out / "runs"),
        exist_ok=True,
        seed=0,
        verbose=False,
    )
    base = YOLO("yolo11n.yaml")
    base.train(epochs=args.epochs, name="scratch", **common)
    scratch_best = Path(base.trainer.best)
    print(f"[2/5] from scratch: {scratch_best}")

    model = YOLO(str(scratch_best))
    model.train(
        trainer=SmoothedDetectionTrainer,
        epochs=args.finetune_epochs,
        name="finetune",
        label_smoothing=args.label_smoothing,
        label_smoothing_mode=args.mode,
        label_smoothing_schedule=args.schedule,
        label_smoothing_final=args.final,
        **common,
    )
    run = Path(model.trainer.save_dir)
    with open(run / "results.csv", newline="") as f:
        rows = [{k.strip(): v.strip() for k, v in r.items()} for r in csv.DictReader(f)]
    factors = [float(r["label_smoothing"]) for r in rows]
    print(f"[3/5] fine-tuned with label_smoothing per epoch {factors}: {run / 'weights'}")

    metrics = model.val(
        data=str(data),
        imgsz=args.imgsz,
        batch=args.batch,
        device=args.device,
        plots=False,
        project=str(out / "runs"),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    print(f"[4/5] val mAP50-95={metrics.box.map:.4f} mAP50={metrics.box.map50:.4f}")

    images = sorted(p for p in Path(ASSETS).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    if not images:
        raise FileNotFoundError(f"No sample images in {ASSETS}")
    results = model.predict(
        [str(p) for p in images], imgsz=args.imgsz, device=args.device, conf=0.01, verbose=False
    )
    counts = {}
    for img, r in zip(images, results):
        names = [model.names[int(c)] for c in r.boxes.cls.tolist()]
        counts[img.name] = len(names)
        print(f"[5/5] {img.name}: {len(names)} boxes {sorted(set(names))}")
    return {
        "data": str(data),
        "scratch": str(scratch_best),
        "finetune": str(run),
        "factors": factors,
        "map50_95": float(metrics.box.map),
        "predictions": counts,
    }


if __name__ == "__main__":
    main()
