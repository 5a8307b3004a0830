"""Overhead of smoothed YOLO class targets: stock vs smoothed training iterations in lockstep.

Two copies of the same model (same seed, same initial weights) train on the same
pre-loaded batches; each iteration times one full training step (forward, loss,
backward, SGD step) of each, alternating which goes first so that drift and cache
effects cancel. Reported: the median over iterations of smoothed/stock time (target
<= 1.02x), plus the median step times. Data loading is not timed.

    python benchmarks/detection_overhead.py                   # CPU, COCO128, yolo11n.yaml
    python benchmarks/detection_overhead.py --device 0        # GPU
    python benchmarks/detection_overhead.py --imgsz 640 --batch 16 --iters 50 --json out.json

Runs offline (detection.offline()); COCO128 is found by detection.data.find_coco128
($KERAS_LS_COCO128, else ../shared/data/coco128 next to the repository) unless --data
names a data.yaml.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    sys.path.insert(0, str(REPO))
    from detection.config import MODES  # light: neither torch nor Ultralytics
    from detection.data import Coco128NotFound, find_coco128

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="YOLO data.yaml (default: COCO128's)")
    p.add_argument("--model", default="yolo11n.yaml", help="model config (built from scratch)")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=30, help="timed iterations")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--mode", default="uniform", choices=MODES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.data is None:
        try:
            args.data = str(find_coco128() / "data.yaml")
        except Coco128NotFound as e:
            p.error(str(e))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import detection

    detection.offline()
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.nn.tasks import DetectionModel

    from detection.data import load_data_yaml, make_subset
    from detection.targets import patch_detection_criterion

    device = torch.device("cpu" if args.device == "cpu" else f"cuda:{args.device}")
    cfg = get_cfg(overrides={"imgsz": args.imgsz, "batch": args.batch, "seed": args.seed})
    # Work on a copy (all classes, background kept) so that Ultralytics writes its
    # labels .cache file there and never into the shared, read-only dataset.
    src = load_data_yaml(args.data)[0]
    tmp = tempfile.TemporaryDirectory(prefix="keras_ls_bench_")
    copy_yaml = make_subset(args.data, src["names"], Path(tmp.name) / "ds", keep_background=True)
    data = check_det_dataset(str(copy_yaml))
    dataset = build_yolo_dataset(cfg, data["train"], args.batch, data, mode="train", stride=32)
    torch.manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                         collate_fn=dataset.collate_fn, num_workers=0)
    n_batches = args.warmup + args.iters
    batches, it = [], iter(loader)
    while len(batches) < n_batches:
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        b = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in b.items()}
        b["img"] = b["img"].float() / 255
        batches.append(b)

    torch.manual_seed(args.seed)
    stock = DetectionModel(args.model, nc=data["nc"], verbose=False).to(device)
    stock.args = cfg
    smooth = copy.deepcopy(stock)
    stock.criterion = stock.init_criterion()
    smooth.criterion = patch_detection_criterion(smooth.init_criterion(), args.label_smoothing,
                                                 args.mode)
    runs = {}
    for name, model in (("stock", stock), ("smoothed", smooth)):
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        runs[name] = {"model": model, "opt": opt, "times": [], "items": []}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def step(run: dict, batch: dict) -> float:
        sync()
        t0 = time.perf_counter()
        run["opt"].zero_grad(set_to_none=True)
        loss, items = run["model"](batch)
        loss.sum().backward()
        run["opt"].step()
        sync()
        dt = time.perf_counter() - t0
        run["items"].append({k: float(v) for k, v in items.items()})
        return dt

    ratios = []
    for i, batch in enumerate(batches):
        order = ("stock", "smoothed") if i % 2 == 0 else ("smoothed", "stock")
        dts = {name: step(runs[name], batch) for name in order}
        if i >= args.warmup:
            for name in dts:
                runs[name]["times"].append(dts[name])
            ratios.append(dts["smoothed"] / dts["stock"])

    # The class term alone (BCE forward + backward on the real (batch, anchors, nc) shape):
    # a contention-free view of what smoothing adds, independent of the conv work.
    from detection.targets import SmoothedBCEWithLogits

    crit = stock.criterion
    n_anchors = sum((args.imgsz // int(s)) ** 2 for s in stock.stride)
    logits = torch.randn(args.batch, n_anchors, data["nc"], device=device, requires_grad=True)
    target = torch.zeros_like(logits)
    target[:, ::50, 0] = 0.7  # ~2% foreground anchors, IoU-aware score
    plain, smoothed_bce = crit.bce, SmoothedBCEWithLogits(None, args.label_smoothing, args.mode)

    def class_term(fn) -> float:
        times = []
        for _ in range(50):
            sync()
            t0 = time.perf_counter()
            fn(logits, target).sum().backward()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times[10:])

    class_ms = {"stock": class_term(plain) * 1e3, "smoothed": class_term(smoothed_bce) * 1e3}

    first_s, first_m = runs["stock"]["items"][0], runs["smoothed"]["items"][0]
    result = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "model": args.model,
        "nc": data["nc"],
        "imgsz": args.imgsz,
        "batch": args.batch,
        "iters": args.iters,
        "label_smoothing": args.label_smoothing,
        "mode": args.mode,
        "median_ratio": statistics.median(ratios),
        "ratio_of_medians": statistics.median(runs["smoothed"]["times"])
        / statistics.median(runs["stock"]["times"]),
        "median_step_s": {n: statistics.median(runs[n]["times"]) for n in runs},
        "class_term_ms": class_ms,
        # Same weights, same batch at step 0: only the class term may differ.
        "step0_losses": {"stock": first_s, "smoothed": first_m},
    }
    print(json.dumps(result, indent=2))
    print(f"\nmedian smoothed/stock step time: {result['median_ratio']:.4f}x "
          f"(target <= 1.02x) over {args.iters} iterations on {result['device']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    tmp.cleanup()
    return result


if __name__ == "__main__":
    main()
