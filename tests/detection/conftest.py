"""Shared fixtures for the detection tests: offline Ultralytics and COCO128 (found by
``detection.data.find_coco128``: ``$KERAS_LS_COCO128``, else ``../shared/data/coco128``).

Offline settings go into the environment before anything imports ultralytics
(Ultralytics reads YOLO_CONFIG_DIR / YOLO_OFFLINE at import time).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# tests/conftest.py puts tests/ on sys.path, where this folder (tests/detection, no
# __init__.py) would shadow the real `detection` package as a namespace package.
# Put the repo root first and drop a shadow import if one happened already.
if sys.path[:1] != [str(REPO)]:
    sys.path.insert(0, str(REPO))
if getattr(sys.modules.get("detection"), "__file__", "") is None:
    for _name in [n for n in sys.modules if n == "detection" or n.startswith("detection.")]:
        del sys.modules[_name]

_CFG = Path(tempfile.gettempdir()) / f"keras_ls_test_yolo_cfg_{os.getuid()}"
os.environ.setdefault("YOLO_CONFIG_DIR", str(_CFG))
os.environ["YOLO_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def offline_cfg() -> Path:
    import detection

    return detection.offline(os.environ["YOLO_CONFIG_DIR"])


@pytest.fixture(scope="session")
def coco128() -> Path:
    """COCO128 through the one rule (``detection.data.find_coco128``); skip, naming
    ``KERAS_LS_COCO128``, where it is absent."""
    from detection.data import Coco128NotFound, find_coco128

    try:
        return find_coco128()
    except Coco128NotFound as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def subset3(tmp_path_factory, coco128, offline_cfg) -> Path:
    """A 3-class COCO128 subset (person, car, dog), 16 train / 8 val images."""
    from detection.data import make_subset

    out = tmp_path_factory.mktemp("subset3") / "ds"
    return _small_subset(make_subset, coco128, out)


def _small_subset(make_subset, coco128: Path, out: Path) -> Path:
    yaml_path = make_subset(coco128 / "data.yaml", "person,car,dog", out, max_images=16, seed=0)
    # Keep val small too: drop all but 8 val images (deterministic: sorted names).
    val = sorted((out / "images" / "val").iterdir())
    for img in val[8:]:
        img.unlink()
        (out / "labels" / "val" / img.with_suffix(".txt").name).unlink()
    return yaml_path
