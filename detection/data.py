"""YOLO dataset checks and the COCO-subset tool.

:func:`check_detection_data` runs before training so that a missing or
malformed ``data.yaml`` or an empty label set fails with a clear message
instead of deep inside Ultralytics. :func:`make_subset` writes a YOLO-format
dataset with chosen classes (contiguous ids in the order given), their names
and a ``data.yaml``, from a YOLO ``data.yaml`` or a COCO instances JSON
(converted with ``ultralytics.data.converter.convert_coco``), as a pipeline of
small steps. :func:`summarize_dataset` counts what a dataset holds (images,
background images, label rows per class): the subset CLI prints it.
:func:`find_coco128` is the one place that says where COCO128 is (the README's
examples, ``examples/yolo_finetune.py`` and the tests all ask it).
"""

from __future__ import annotations

import difflib
import json
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from detection._extra import import_extra

__all__ = [
    "COCO128_ENV",
    "Coco128NotFound",
    "find_coco128",
    "check_detection_data",
    "load_data_yaml",
    "make_subset",
    "summarize_dataset",
    "DatasetSummary",
    "SplitSummary",
    "IMG_SUFFIXES",
]

#: The environment variable naming the COCO128 folder (the one holding ``data.yaml``).
COCO128_ENV = "KERAS_LS_COCO128"


class Coco128NotFound(FileNotFoundError):
    """COCO128 is not where :func:`find_coco128` looks (the tests skip on it)."""


def find_coco128() -> Path:
    """The COCO128 folder (holding ``data.yaml``), found by one rule.

    1. ``$KERAS_LS_COCO128``, when set (a folder without ``data.yaml`` is an error,
       not a reason to look elsewhere);
    2. else ``../shared/data/coco128`` relative to the repository root (the folder
       that holds the ``detection`` package).

    Nothing is downloaded. Raises :class:`Coco128NotFound` (a ``FileNotFoundError``)
    naming the variable and the folder it looked in.

    Example (the doc tests skip it where COCO128 is absent):

    ```python
    from detection.data import find_coco128

    print((find_coco128() / "data.yaml").is_file())  # True
    ```
    """
    env = os.environ.get(COCO128_ENV, "").strip()
    if env:
        root = Path(env).expanduser().resolve()
        where = f"${COCO128_ENV}={env}"
    else:
        repo = Path(__file__).resolve().parents[1]
        root = (repo / ".." / "shared" / "data" / "coco128").resolve()
        where = f"{COCO128_ENV} is not set and the default ../shared/data/coco128"
    if not (root / "data.yaml").is_file():
        raise Coco128NotFound(
            f"COCO128 not found: {where} ({root}) has no data.yaml. Set {COCO128_ENV} to the "
            "COCO128 folder (the one holding data.yaml)."
        )
    return root


# Same set as ultralytics.data.utils.IMG_FORMATS (kept here to avoid importing it for a check).
IMG_SUFFIXES = {
    ".avif",
    ".bmp",
    ".dng",
    ".heic",
    ".heif",
    ".jp2",
    ".jpeg",
    ".jpeg2000",
    ".jpg",
    ".mpo",
    ".png",
    ".tif",
    ".tiff",
    ".webp",
    ".pfm",
}


def _label_path(img: Path) -> Path:
    # Ultralytics' convention (data.utils.img2label_paths): last /images/ -> /labels/, .txt.
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(img).rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def _names_list(names: Any, where: str) -> list[str]:
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: `names` keys must be class ids 0..nc-1; received {list(names)[:5]}."
            ) from None
        if keys != list(range(len(keys))):
            raise ValueError(
                f"{where}: `names` ids must be contiguous from 0; received {keys[:10]}."
            )
        return [str(names[k] if k in names else names[str(k)]) for k in keys]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    raise ValueError(
        f"{where}: `names` must be a list or an id -> name mapping; received "
        f"{type(names).__name__}."
    )


def load_data_yaml(data: str | os.PathLike) -> tuple[dict, Path]:
    """Read and check a detection ``data.yaml``; return ``(data, root)``.

    Raises FileNotFoundError (no file), ValueError (not YAML / not a mapping /
    missing ``train``, ``val`` or ``names``).
    """
    path = Path(data)
    if not path.is_file():
        raise FileNotFoundError(f"`data` file not found: {str(data)!r} (expected a data.yaml).")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"`data` file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise ValueError(
            f"`data` file {str(path)!r} must be a YAML mapping with train, val and "
            f"names; received {type(cfg).__name__}."
        )
    missing = [k for k in ("train", "val") if not cfg.get(k)]
    if cfg.get("names") is None and "nc" not in cfg:
        missing.append("names")
    if missing:
        raise ValueError(
            f"`data` file {str(path)!r} is missing required key(s) {missing}; a "
            "detection data.yaml needs train, val and names."
        )
    if cfg.get("names") is not None:
        cfg["names"] = _names_list(cfg["names"], f"`data` file {str(path)!r}")
        if not cfg["names"]:
            raise ValueError(f"`data` file {str(path)!r} has an empty `names` list.")
    root = Path(cfg.get("path") or path.parent)
    if not root.is_absolute() and not root.exists():
        root = path.parent / root
    return cfg, root


def _split_images(root: Path, entry: Any) -> list[Path] | None:
    """Images of one split (a dir, a .txt list, or a list of those); None if unresolvable."""
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    images: list[Path] = []
    for e in entries:
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images += sorted(x for x in p.rglob("*") if x.suffix.lower() in IMG_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    images.append(q if q.is_absolute() else (p.parent / q).resolve())
        else:
            return None
    return images


def check_detection_data(data: Any) -> None:
    """Fail early, with a clear message, on a bad detection dataset.

    Checks a ``data.yaml`` path: the file exists and parses, has train/val/names,
    the train split has images and at least one non-empty label file. Names of
    Ultralytics' built-in datasets (``coco8.yaml``) are left to Ultralytics.
    """
    if data is None or data == "":
        raise ValueError("`data` is required: pass the path to a data.yaml.")
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"`data` must be a path to a data.yaml; received {type(data).__name__}.")
    text = str(data)
    if not text.lower().endswith((".yaml", ".yml")):
        raise ValueError(f"`data` must be a .yaml/.yml dataset file; received {text!r}.")
    path = Path(text)
    if not path.exists() and len(path.parts) == 1:
        import importlib.util

        spec = importlib.util.find_spec("ultralytics")
        if spec and spec.origin and (Path(spec.origin).parent / "cfg" / "datasets" / text).exists():
            return  # a built-in dataset name, resolved (and downloaded) by Ultralytics
    cfg, root = load_data_yaml(path)
    train = _split_images(root, cfg["train"])
    if train is None:
        if root.exists():
            raise FileNotFoundError(
                f"`data` file {text!r}: train images {cfg['train']!r} not "
                f"found under {str(root)!r}."
            )
        return  # root relative to Ultralytics' datasets_dir: let Ultralytics resolve it
    if not train:
        raise ValueError(f"`data` file {text!r}: no images in the train split {cfg['train']!r}.")
    for img in train:
        lbl = _label_path(img)
        if lbl.is_file() and lbl.read_text(encoding="utf-8").strip():
            return
    raise ValueError(
        f"`data` file {text!r}: empty label set -- none of the {len(train)} train "
        "images has a non-empty label file (labels/…/*.txt)."
    )


# --------------------------------------------------------------------------- subsets

#: One source image and its YOLO label file (None: no labels).
Pair = tuple[Path, "Path | None"]
#: One chosen image and its label rows, class ids already remapped.
Chosen = tuple[Path, list[str]]


def _parse_classes(classes: Any) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; empty or repeated names are errors."""
    if isinstance(classes, str):
        classes = [c for c in (x.strip() for x in classes.split(",")) if c]
    if not isinstance(classes, (list, tuple)) or not classes:
        raise ValueError(
            f"`classes` must be a non-empty list of class names (or 'a,b,c'); received {classes!r}."
        )
    out = [str(c).strip() for c in classes]
    dupes = sorted({c for c in out if out.count(c) > 1})
    if dupes:
        raise ValueError(f"`classes` lists {dupes} more than once.")
    return out


def _resolve_classes(wanted: list[str], names: list[str]) -> dict[int, int]:
    """Source class id -> new contiguous id, in the order of ``wanted``."""
    lookup = {n: i for i, n in enumerate(names)}
    unknown = [c for c in wanted if c not in lookup]
    if unknown:
        hints = []
        for c in unknown:
            close = difflib.get_close_matches(c, names, n=3, cutoff=0.5)
            hints.append(
                f"{c!r} (did you mean {', '.join(map(repr, close))}?)" if close else repr(c)
            )
        raise ValueError(
            f"Unknown class name(s) in `classes`: {'; '.join(hints)}. Valid names: "
            f"{', '.join(names[:40])}{', …' if len(names) > 40 else ''}."
        )
    return {lookup[c]: i for i, c in enumerate(wanted)}


def _read_splits(
    data: Path, key: str, splits: Sequence[str] = ("train", "val")
) -> tuple[list[str], dict[str, list[Path]]]:
    """Class names and the images of each of ``splits`` a data.yaml lists.

    A listed split whose images are not found is an error naming the argument ``key``.
    """
    cfg, root = load_data_yaml(data)
    names = cfg.get("names") or [f"class_{i}" for i in range(int(cfg["nc"]))]
    found = {}
    for split in splits:
        if not cfg.get(split):  # only `test` may be absent (load_data_yaml checks the rest)
            continue
        images = _split_images(root, cfg[split])
        if images is None:
            raise FileNotFoundError(
                f"`{key}` {str(data)!r}: {split} images {cfg[split]!r} not found under "
                f"{str(root)!r}."
            )
        found[split] = images
    return names, found


def _from_yaml(src: Path) -> tuple[list[str], dict[str, list[Pair]]]:
    """Class names and the (image, label file) pairs of the train and val splits."""
    names, splits = _read_splits(src, "src")
    return names, {s: [(img, _label_path(img)) for img in imgs] for s, imgs in splits.items()}


def _from_coco_json(src: Path, images: Any, val_fraction: float, seed: int):
    """Convert one COCO instances JSON with Ultralytics' convert_coco; split train/val."""
    convert_coco = import_extra(
        "ultralytics.data.converter", "make_subset(src=<COCO JSON>)"
    ).convert_coco

    with open(src, encoding="utf-8") as f:
        coco = json.load(f)
    try:
        cats = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
        files = sorted(str(im["file_name"]) for im in coco["images"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"`src` {str(src)!r} is not a COCO instances JSON (images/categories): {e!r}"
        ) from None
    # cls91to80=False: class = category_id - 1; names come from the JSON itself.
    names = [cats.get(i + 1, f"class_{i}") for i in range(max(cats, default=0))]
    stem = src.stem.replace("instances_", "")
    candidates = (
        [Path(images)]
        if images
        else [src.parent.parent / "images" / stem, src.parent.parent / stem, src.parent / "images"]
    )
    img_dir = next((p for p in candidates if p.is_dir()), None)
    if img_dir is None:
        raise FileNotFoundError(
            f"Images for {str(src)!r} not found; pass `images=<dir>` "
            f"(tried {', '.join(map(str, candidates))})."
        )
    tmp = Path(tempfile.mkdtemp(prefix="keras_ls_coco_"))
    (tmp / "ann").mkdir()
    shutil.copyfile(src, tmp / "ann" / src.name)
    convert_coco(labels_dir=str(tmp / "ann"), save_dir=str(tmp / "yolo"), cls91to80=False)
    lbl_dir = tmp / "yolo" / "labels" / stem
    pairs = [(img_dir / f, lbl_dir / Path(f).with_suffix(".txt")) for f in files]
    missing = [p for p, _ in pairs if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed in {str(src)!r} are not in "
            f"{str(img_dir)!r}, e.g. {str(missing[0])!r}."
        )
    rng = random.Random(seed)
    order = pairs[:]
    rng.shuffle(order)
    n_val = max(1, round(len(order) * val_fraction)) if len(order) > 1 else 0
    val, train = sorted(order[:n_val]), sorted(order[n_val:])
    return names, {"train": train, "val": val or train}, tmp


def _read_rows(label: Path | None) -> list[list[str]]:
    """The whitespace-split rows of a YOLO label file (none if it is missing)."""
    if label is None or not label.is_file():
        return []
    return [ln.split() for ln in label.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _class_id(row: list[str], label: Path | None) -> int:
    try:
        return int(float(row[0]))
    except (ValueError, IndexError):
        raise ValueError(f"Malformed label row {' '.join(row)!r} in {str(label)!r}.") from None


def _check_subset_args(classes: Any, max_images: Any, val_fraction: Any) -> list[str]:
    """Step 0: the arguments that need no file; returns the class names wanted."""
    wanted = _parse_classes(classes)
    if max_images is not None and (
        isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1
    ):
        raise ValueError(
            f"`max_images` must be a positive integer or None; received {max_images!r}."
        )
    if not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in (0, 1); received {val_fraction!r}.")
    return wanted


def _clear_out(out: Path, overwrite: bool) -> None:
    """Step 1: ``out`` must be absent or empty, unless ``overwrite`` (then it is removed)."""
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"`out` {str(out)!r} exists and is not empty; pass overwrite=True."
            )
        shutil.rmtree(out)


def _read_source(
    src: Path, images: Any, val_fraction: float, seed: int
) -> tuple[list[str], dict[str, list[Pair]], Path | None]:
    """Step 2: class names and per-split (image, label) pairs of a data.yaml or COCO JSON.

    Returns ``(names, splits, tmp)``; ``tmp`` is the folder of labels converted
    from a COCO JSON (None for a data.yaml), for the caller to remove.
    """
    if src.suffix.lower() == ".json":
        if not src.is_file():
            raise FileNotFoundError(f"`src` COCO JSON not found: {str(src)!r}.")
        return _from_coco_json(src, images, val_fraction, seed)
    if src.suffix.lower() in (".yaml", ".yml"):
        return (*_from_yaml(src), None)
    raise ValueError(f"`src` must be a data.yaml or a COCO instances .json; received {str(src)!r}.")


def _remap_split(pairs: list[Pair], remap: dict[int, int]) -> tuple[list[Chosen], list[Chosen]]:
    """Step 3: keep each image's rows of the chosen classes, with new ids.

    Returns ``(kept, background)``: images with at least one such row, and the others.
    """
    kept, background = [], []
    for img, lbl in pairs:
        rows = []
        for r in _read_rows(lbl):
            cid = _class_id(r, lbl)
            if cid in remap:
                rows.append(" ".join([str(remap[cid]), *r[1:]]))
        (kept if rows else background).append((img, rows))
    return kept, background


def _sample(pool: list[Chosen], max_images: int | None, seed: int, split: str) -> list[Chosen]:
    """Step 4: at most ``max_images`` images, a seeded pick; sorted by path either way."""
    pool = sorted(pool, key=lambda x: str(x[0]))
    if max_images is not None and len(pool) > max_images:
        pool = random.Random(f"{seed}:{split}").sample(pool, max_images)
        pool.sort(key=lambda x: str(x[0]))
    return pool


def _choose(
    src: Path,
    splits: dict[str, list[Pair]],
    remap: dict[int, int],
    wanted: list[str],
    keep_background: bool,
    max_images: int | None,
    seed: int,
) -> dict[str, list[Chosen]]:
    """Steps 3 and 4 for every split; an empty train label set or split is an error."""
    chosen = {}
    for split, pairs in splits.items():
        kept, background = _remap_split(pairs, remap)
        if split == "train" and not kept:
            raise ValueError(
                f"Empty label set: no train image in {str(src)!r} contains any of {wanted}."
            )
        pool = _sample(kept + (background if keep_background else []), max_images, seed, split)
        if not pool:
            raise ValueError(
                f"The {split} split would be empty: no image contains any of {wanted}."
            )
        chosen[split] = pool
    return chosen


def _write_split(out: Path, split: str, pool: list[Chosen]) -> None:
    """Step 5: copy the images to ``out/images/<split>``, rows to ``out/labels/<split>``."""
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for img, rows in pool:
        name = img.name
        while name in used:  # same file name from nested source dirs
            name = f"_{name}"
        used.add(name)
        shutil.copyfile(img, out / "images" / split / name)
        text = "".join(r + "\n" for r in rows)
        (out / "labels" / split / name).with_suffix(".txt").write_text(text, encoding="utf-8")


def _write_data_yaml(
    out: Path, src: Path, wanted: list[str], max_images: Any, keep_background: bool, seed: Any
) -> Path:
    """Step 6: ``out/data.yaml`` (relative train/val, the new names), with a provenance header."""
    header = (
        f"# Subset of {src.resolve()} written by `python -m detection subset`\n"
        f"# classes={','.join(wanted)} max_images={max_images} "
        f"keep_background={keep_background} seed={seed}\n"
        "# No `path:` key: Ultralytics resolves train/val against this file's folder.\n"
    )
    body = {
        "train": "images/train",
        "val": "images/val",
        "nc": len(wanted),
        "names": dict(enumerate(wanted)),
    }
    path = out / "data.yaml"
    path.write_text(header + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def make_subset(
    src: str | os.PathLike,
    classes: Sequence[str] | str,
    out: str | os.PathLike,
    max_images: int | None = None,
    keep_background: bool = False,
    seed: int = 0,
    images: str | os.PathLike | None = None,
    val_fraction: float = 0.2,
    overwrite: bool = False,
) -> Path:
    """Write a YOLO dataset of ``classes`` only (new ids 0..k-1, in order); return its data.yaml.

    Args:
        src: a YOLO ``data.yaml`` (train/val splits kept) or a COCO instances
            JSON (``images=`` dir of its images; split into train/val by
            ``val_fraction``).
        classes: class names, e.g. ``["person", "car", "dog"]`` or ``"person,car,dog"``.
        out: output directory (``images/{train,val}``, ``labels/{train,val}``, ``data.yaml``).
        max_images: at most this many images per split (a seeded random pick); None = all.
        keep_background: keep images with none of the classes, with an empty
            label file (background); default drops them.
        seed: seed for every random choice: same inputs + seed -> same dataset.
        images: COCO JSON only: the folder of its images (default: looked for
            next to the JSON).
        val_fraction: COCO JSON only: the share of images that go to val.
        overwrite: replace ``out`` if it exists (else it must be absent or empty).

    Returns:
        The path of the new ``data.yaml`` (:func:`summarize_dataset` counts what
        was written).

    Example:

    ```python
    import tempfile

    out = tempfile.mkdtemp() + "/coco_pcd"
    data = make_subset(find_coco128() / "data.yaml", "person,car,dog", out, max_images=20)
    # then: YOLO("yolo11n.yaml").train(data=data, trainer=SmoothedDetectionTrainer, ...)
    ```
    """
    wanted = _check_subset_args(classes, max_images, val_fraction)
    src, out = Path(src), Path(out)
    _clear_out(out, overwrite)
    names, splits, tmp = _read_source(src, images, val_fraction, seed)
    try:
        remap = _resolve_classes(wanted, names)
        chosen = _choose(src, splits, remap, wanted, keep_background, max_images, seed)
        for split, pool in chosen.items():
            _write_split(out, split, pool)
        return _write_data_yaml(out, src, wanted, max_images, keep_background, seed)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class SplitSummary:
    """What one split of a YOLO dataset holds.

    Args:
        images: number of images.
        background: how many of them have no label row.
        rows: label rows (boxes) per class name, in class-id order (ids that have
            no name, as ``"<id 7>"``, after them).
    """

    images: int
    background: int
    rows: dict[str, int]


@dataclass(frozen=True)
class DatasetSummary:
    """Per-split counts of a YOLO dataset; ``str()`` is the report the CLI prints."""

    data_yaml: Path
    splits: dict[str, SplitSummary]

    def __str__(self) -> str:
        lines = [f"{self.data_yaml}:"]
        for split, s in self.splits.items():
            rows = ", ".join(f"{name} {n}" for name, n in s.rows.items())
            lines.append(
                f"  {split}: {s.images} images ({s.background} background); "
                f"label rows: {rows or 'none'}"
            )
        return "\n".join(lines)


def summarize_dataset(data: str | os.PathLike) -> DatasetSummary:
    """Count images, background images and label rows per class in each split of a data.yaml.

    Reads the files on disk, so for a :func:`make_subset` output it reports
    exactly what was written.

    Args:
        data: a YOLO ``data.yaml``.

    Returns:
        A :class:`DatasetSummary` (``print()`` it for the report).

    Example:

    ```python
    import tempfile

    dogs = make_subset(find_coco128() / "data.yaml", "dog", tempfile.mkdtemp() + "/dogs")
    print(summarize_dataset(dogs))
    ```
    """
    names, found = _read_splits(Path(data), "data", ("train", "val", "test"))
    splits = {}
    for split, images in found.items():
        counts: Counter[int] = Counter()
        background = 0
        for img in images:
            label = _label_path(img)
            ids = [_class_id(r, label) for r in _read_rows(label)]
            background += not ids
            counts.update(ids)
        rows = {name: counts[i] for i, name in enumerate(names)}
        # Ids without a name (a broken dataset) are counted too, not dropped.
        rows.update(
            {f"<id {i}>": n for i, n in sorted(counts.items()) if i not in range(len(names))}
        )
        splits[split] = SplitSummary(len(images), background, rows)
    return DatasetSummary(Path(data), splits)
