"""The subset tool, dataset checks, offline switch and the no-TensorFlow guarantee."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from detection.data import SplitSummary, check_detection_data, make_subset, summarize_dataset

REPO = Path(__file__).resolve().parents[2]


def _rows(label_dir: Path) -> dict[str, list[list[str]]]:
    return {
        p.name: [r.split() for r in p.read_text().splitlines() if r.strip()]
        for p in sorted(label_dir.glob("*.txt"))
    }


def _names(coco128: Path) -> list[str]:
    names = yaml.safe_load((coco128 / "data.yaml").read_text())["names"]
    return [names[i] for i in range(len(names))]


def test_subset_remaps_ids_names_and_rows(coco128, tmp_path):
    out = tmp_path / "ds"
    data = make_subset(coco128 / "data.yaml", ["dog", "person"], out, max_images=10, seed=3)
    cfg = yaml.safe_load(data.read_text())
    assert cfg["names"] == {0: "dog", 1: "person"} and cfg["nc"] == 2
    assert "path" not in cfg and cfg["train"] == "images/train"
    names = _names(coco128)
    for split, src_split in (("train", "train2017"), ("val", "val2017")):
        imgs = sorted(p.name for p in (out / "images" / split).iterdir())
        assert 0 < len(imgs) <= 10
        for name, rows in _rows(out / "labels" / split).items():
            assert rows, f"{name}: background image kept without keep_background"
            src = [
                r.split() for r in (coco128 / "labels" / src_split / name).read_text().splitlines()
            ]
            # Exactly the dog/person rows of the source, ids remapped, coordinates untouched.
            want = [
                [{"dog": "0", "person": "1"}[names[int(r[0])]], *r[1:]]
                for r in src
                if names[int(r[0])] in ("dog", "person")
            ]
            assert rows == want


def test_subset_is_deterministic_and_keeps_background_by_option(coco128, tmp_path):
    a = make_subset(coco128 / "data.yaml", "car", tmp_path / "a", max_images=6, seed=1).parent
    b = make_subset(coco128 / "data.yaml", "car", tmp_path / "b", max_images=6, seed=1).parent
    c = make_subset(coco128 / "data.yaml", "car", tmp_path / "c", max_images=6, seed=2).parent
    files = [sorted(p.name for p in (d / "images" / "train").iterdir()) for d in (a, b, c)]
    assert files[0] == files[1] and files[0] != files[2]
    assert _rows(a / "labels" / "train") == _rows(b / "labels" / "train")
    d = make_subset(coco128 / "data.yaml", "car", tmp_path / "d", keep_background=True).parent
    rows = _rows(d / "labels" / "train")
    assert len(rows) == 128  # every train image kept
    assert sum(1 for r in rows.values() if not r) > 100  # most have no car: background


def test_subset_unknown_class_lists_close_names(coco128, tmp_path):
    with pytest.raises(ValueError, match=r"'persn' \(did you mean 'person'") as e:
        make_subset(coco128 / "data.yaml", "persn,car", tmp_path / "x")
    assert "Valid names" in str(e.value)
    with pytest.raises(ValueError, match="Empty label set"):
        make_subset(coco128 / "data.yaml", "toaster", tmp_path / "y")  # not in COCO128 train
    with pytest.raises(FileExistsError):
        make_subset(coco128 / "data.yaml", "car", tmp_path / "a", max_images=2)
        make_subset(coco128 / "data.yaml", "car", tmp_path / "a", max_images=2)


def test_subset_from_coco_json_uses_convert_coco(coco128, tmp_path, offline_cfg):
    """A COCO instances JSON (built here from COCO128 val labels) -> the same boxes back."""
    from PIL import Image

    names = _names(coco128)
    img_dir = coco128 / "images" / "val2017"
    images, anns = [], []
    for i, img in enumerate(sorted(img_dir.iterdir())[:12], start=1):
        w, h = Image.open(img).size
        images.append({"id": i, "file_name": img.name, "width": w, "height": h})
        for r in (
            (coco128 / "labels" / "val2017" / img.with_suffix(".txt").name).read_text().split("\n")
        ):
            if r.strip():
                c, x, y, bw, bh = (float(v) for v in r.split())
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i,
                        "category_id": int(c) + 1,
                        "bbox": [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h],
                        "iscrowd": 0,
                        "area": bw * w * bh * h,
                    }
                )
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    src = tmp_path / "instances_mini.json"
    src.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    data = make_subset(src, "person,car", tmp_path / "ds", images=img_dir, val_fraction=0.25)
    cfg = yaml.safe_load(data.read_text())
    assert cfg["names"] == {0: "person", 1: "car"}
    got = {
        **_rows(tmp_path / "ds" / "labels" / "train"),
        **_rows(tmp_path / "ds" / "labels" / "val"),
    }
    assert got
    for name, rows in got.items():
        src_rows = [
            r.split() for r in (coco128 / "labels" / "val2017" / name).read_text().splitlines()
        ]
        want = [
            [{0: 0, 2: 1}[int(r[0])], *map(float, r[1:])] for r in src_rows if int(r[0]) in (0, 2)
        ]
        have = [[int(r[0]), *map(float, r[1:])] for r in rows]
        assert len(have) == len(want)
        for h, w in zip(sorted(have), sorted(want)):
            assert h[0] == w[0] and all(abs(a - b) < 2e-3 for a, b in zip(h[1:], w[1:]))


def _source_counts(coco128: Path, out: Path, classes: list[str]) -> dict[str, SplitSummary]:
    """What a subset of ``classes`` written to ``out`` must hold, from COCO128's own labels."""
    names = _names(coco128)
    expected = {}
    for split, src_split in (("train", "train2017"), ("val", "val2017")):
        written = sorted((out / "images" / split).iterdir())
        rows: Counter[str] = Counter()
        background = 0
        for img in written:
            label = coco128 / "labels" / src_split / f"{img.stem}.txt"
            text = label.read_text() if label.is_file() else ""
            kept = [names[int(r.split()[0])] for r in text.splitlines() if r.strip()]
            kept = [n for n in kept if n in classes]
            background += not kept
            rows.update(kept)
        expected[split] = SplitSummary(len(written), background, {c: rows[c] for c in classes})
    return expected


def test_summary_counts_match_the_coco128_labels(coco128):
    names = _names(coco128)
    summary = summarize_dataset(coco128 / "data.yaml")
    assert summary.data_yaml == coco128 / "data.yaml" and list(summary.splits) == ["train", "val"]
    for split, src_split in (("train", "train2017"), ("val", "val2017")):
        images = sorted((coco128 / "images" / src_split).iterdir())
        texts = [
            (coco128 / "labels" / src_split / f"{img.stem}.txt").read_text()
            if (coco128 / "labels" / src_split / f"{img.stem}.txt").is_file()
            else ""
            for img in images
        ]
        rows = Counter(names[int(r.split()[0])] for t in texts for r in t.splitlines() if r.strip())
        got = summary.splits[split]
        assert got.images == len(images) == 128
        assert got.background == sum(not t.strip() for t in texts)
        assert got.rows == {n: rows[n] for n in names} and list(got.rows) == names
        # COCO128's known totals (train: 929 boxes, 2 background images).
        pinned = {"train": (2, 929, 254), "val": (0, 898, 350)}[split]
        assert (got.background, sum(got.rows.values()), got.rows["person"]) == pinned


def test_subset_summary_is_what_was_written(coco128, tmp_path):
    classes = ["dog", "person", "car"]
    out = tmp_path / "ds"
    data = make_subset(
        coco128 / "data.yaml", classes, out, max_images=20, keep_background=True, seed=5
    )
    summary = summarize_dataset(data)
    assert summary.splits == _source_counts(coco128, out, classes)
    train = summary.splits["train"]
    assert train.images == 20 and 0 < train.background < 20  # background kept, and counted
    assert list(train.rows) == classes  # in the new id order
    lines = str(summary).splitlines()
    assert lines[0] == f"{data}:"
    assert lines[1] == (
        f"  train: 20 images ({train.background} background); label rows: "
        f"dog {train.rows['dog']}, person {train.rows['person']}, car {train.rows['car']}"
    )


def test_summary_counts_ids_without_a_name_and_background(tmp_path, coco128):
    ds = tmp_path / "ds"
    (ds / "images" / "train").mkdir(parents=True)
    (ds / "labels" / "train").mkdir(parents=True)
    jpg = (coco128 / "images" / "train2017" / "000000000009.jpg").read_bytes()
    for name, rows in (
        ("a", "0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.1 0.1\n"),
        ("b", ""),
    ):
        (ds / "images" / "train" / f"{name}.jpg").write_bytes(jpg)
        (ds / "labels" / "train" / f"{name}.txt").write_text(rows)
    (ds / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [a]\n")
    summary = summarize_dataset(ds / "data.yaml")
    assert list(summary.splits) == ["train", "val"]  # no `test` key: no test split
    assert summary.splits["train"] == SplitSummary(2, 1, {"a": 2, "<id 7>": 1})
    assert "  train: 2 images (1 background); label rows: a 2, <id 7> 1" in str(summary)


def test_check_detection_data_errors(tmp_path, coco128):
    with pytest.raises(FileNotFoundError, match="`data` file not found"):
        check_detection_data(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        check_detection_data(bad)
    bad.write_text("train: images/train\nnames: [a]\n")
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['val'\]"):
        check_detection_data(bad)
    with pytest.raises(ValueError, match=r"\.yaml"):
        check_detection_data(tmp_path)
    empty = tmp_path / "empty"
    (empty / "images" / "train").mkdir(parents=True)
    (empty / "labels" / "train").mkdir(parents=True)
    (empty / "images" / "train" / "a.jpg").write_bytes(
        (coco128 / "images" / "train2017" / "000000000009.jpg").read_bytes()
    )
    (empty / "labels" / "train" / "a.txt").write_text("")
    (empty / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [a]\n")
    with pytest.raises(ValueError, match="empty label set"):
        check_detection_data(empty / "data.yaml")
    check_detection_data(coco128 / "data.yaml")  # the real one passes


def test_offline_switch_places_fonts_and_fails_fast_for_weights(offline_cfg, tmp_path):
    from ultralytics.utils import SETTINGS

    from detection.network import is_offline, resolve_model

    assert (offline_cfg / "Arial.ttf").is_file() and SETTINGS["sync"] is False
    assert os.environ["YOLO_OFFLINE"] == "1" and is_offline()
    t = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="yolo11n.pt.*offline"):
        resolve_model("yolo11n")
    assert time.perf_counter() - t < 1.0
    assert resolve_model("yolo11n.yaml") == "yolo11n.yaml"
    local = tmp_path / "w.pt"
    local.write_bytes(b"x")
    assert resolve_model(local) == str(local)


def test_yolo_path_never_loads_tensorflow(tmp_path):
    code = (
        "import sys, torch\n"
        "import detection\n"
        "from detection.targets import patch_detection_criterion, smooth_class_targets\n"
        "from detection.trainer import SmoothedDetectionTrainer\n"
        "from detection.config import SmoothingConfig\n"
        "t = torch.zeros(1, 4, 3); t[0, 1, 2] = 0.9\n"
        "out = smooth_class_targets(t, SmoothingConfig(0.3, 'uniform', 'cosine', 0.0).factor(1, 4),"
        " 'uniform')\n"
        "assert abs(float(out.sum()) - 0.9) < 1e-6 and float(out[0, 1, 0]) > 0\n"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_cli_subset_and_errors(coco128, tmp_path):
    env = {**os.environ, "KERAS_LS_OFFLINE": "1"}
    run = [sys.executable, "-m", "detection"]
    r = subprocess.run(
        [
            *run,
            "subset",
            f"src={coco128 / 'data.yaml'}",
            "classes=person,dog",
            "max_images=4",
            f"out={tmp_path / 'ds'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    data = tmp_path / "ds" / "data.yaml"
    assert yaml.safe_load(data.read_text())["names"] == {
        0: "person",
        1: "dog",
    }
    # It prints what it wrote: per split images, background, rows per class; the data.yaml.
    expected = _source_counts(coco128, tmp_path / "ds", ["person", "dog"])
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == f"data: {data}"
    for split, s in expected.items():
        want = (
            f"  {split}: {s.images} images ({s.background} background); label rows: "
            f"person {s.rows['person']}, dog {s.rows['dog']}"
        )
        assert want in lines, r.stdout
    assert expected["train"].images == 4 and expected["train"].rows["person"] > 0
    r = subprocess.run(
        [*run, "subset", f"src={coco128 / 'data.yaml'}", "classes=dgo", f"out={tmp_path / 'ds2'}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 2 and "did you mean 'dog'" in r.stderr
    r = subprocess.run(
        [
            *run,
            "train",
            "model=yolo11n.yaml",
            f"data={tmp_path / 'ds' / 'data.yaml'}",
            "label_smoothing=1.5",
            f"project={tmp_path / 'runs'}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 2 and "`label_smoothing` must be a finite number in [0, 1]" in r.stderr
    assert not (tmp_path / "runs").exists()
    r = subprocess.run(
        [*run, "train", "model=yolo11n.pt", f"data={tmp_path / 'ds' / 'data.yaml'}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 2 and "not on disk" in r.stderr
