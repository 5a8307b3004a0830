"""Segmentation-shaped losses on masks derived from COCO128 boxes.

Each image gets a coarse semantic mask painted from its YOLO boxes (largest
first, so small objects stay visible): 0 background, 1 person, 2 vehicle,
3 any other object. SmoothedCE and SmoothedDice are checked against float64
numpy references on these real ``(B, H, W, K)`` shapes, then both train a
tiny fully-convolutional net.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_ls

SIZE, K, N = 32, 4, 32
VEHICLES = {1, 2, 3, 4, 5, 6, 7, 8}  # bicycle .. boat


def _group(cls: int) -> int:
    return 1 if cls == 0 else 2 if cls in VEHICLES else 3


@pytest.fixture(scope="module")
def coco_masks():
    from PIL import Image

    from detection.data import Coco128NotFound, find_coco128  # the one COCO128 rule

    try:
        coco128 = find_coco128()
    except Coco128NotFound as e:
        pytest.skip(str(e))
    label_dir = coco128 / "labels" / "train2017"
    images, masks = [], []
    for txt in sorted(label_dir.glob("*.txt"))[:N]:
        img_path = coco128 / "images" / "train2017" / (txt.stem + ".jpg")
        img = Image.open(img_path).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        images.append(np.asarray(img, np.float32) / 255.0)
        mask = np.zeros((SIZE, SIZE), np.int32)
        rows = [r.split() for r in txt.read_text().splitlines() if r.strip()]
        boxes = sorted(
            ((int(c), *map(float, rest)) for c, *rest in rows),
            key=lambda b: -b[3] * b[4],
        )
        for c, cx, cy, w, h in boxes:
            x0, x1 = int(np.floor((cx - w / 2) * SIZE)), int(np.ceil((cx + w / 2) * SIZE))
            y0, y1 = int(np.floor((cy - h / 2) * SIZE)), int(np.ceil((cy + h / 2) * SIZE))
            mask[max(y0, 0): y1, max(x0, 0): x1] = _group(c)
        masks.append(mask)
    return np.stack(images), np.stack(masks)


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_smoothed_ce(masks, logits, a, ignore_class=None):
    """Mean over valid pixels of -sum_k t_k log p_k, t = (1-a) onehot + a/K."""
    logp = np_log_softmax(logits)
    valid = np.ones(masks.shape, bool) if ignore_class is None else masks != ignore_class
    t = (1 - a) * np.eye(logits.shape[-1])[np.where(valid, masks, 0)] + a / logits.shape[-1]
    per_pixel = -(t * logp).sum(-1)
    return per_pixel[valid].sum() / max(valid.sum(), 1)


def np_dice(masks, logits, a, eps=1.0):
    p = np.exp(np_log_softmax(logits))
    t = (1 - a) * np.eye(p.shape[-1])[masks] + a / p.shape[-1]
    inter = (p * t).sum((1, 2))
    denom = p.sum((1, 2)) + t.sum((1, 2))
    return (1 - ((2 * inter + eps) / (denom + eps)).mean(-1)).mean()


def test_masks_are_real(coco_masks):
    images, masks = coco_masks
    assert images.shape == (N, SIZE, SIZE, 3) and masks.shape == (N, SIZE, SIZE)
    # every group occurs, and background is neither absent nor everything
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    assert 0.05 < (masks == 0).mean() < 0.95


@pytest.mark.parametrize("a", [0.0, 0.1])
def test_smoothed_ce_and_dice_on_coco_masks(coco_masks, a):
    _, masks = coco_masks
    logits = np.random.default_rng(0).normal(size=masks.shape + (K,)).astype(np.float32) * 2
    onehot = np.eye(K, dtype=np.float32)[masks]
    want_ce = np_smoothed_ce(masks, logits, a)
    ce = keras_ls.SmoothedCE(a, from_logits=True)
    assert float(ce(masks, logits)) == pytest.approx(want_ce, rel=1e-5)
    assert float(ce(onehot, logits)) == pytest.approx(want_ce, rel=1e-5)
    # void border (255) excluded from the mean
    void = masks.copy()
    void[:, :2] = 255
    ce_void = keras_ls.SmoothedCE(a, from_logits=True, ignore_class=255)
    assert float(ce_void(void, logits)) == pytest.approx(
        np_smoothed_ce(void, logits, a, ignore_class=255), rel=1e-5
    )
    want_dice = np_dice(masks, logits, a)
    dice = keras_ls.SmoothedDice(a, from_logits=True)
    assert float(dice(masks, logits)) == pytest.approx(want_dice, rel=1e-5)
    assert float(dice(onehot, logits)) == pytest.approx(want_dice, rel=1e-5)


@pytest.mark.slow
def test_tiny_fcn_trains_with_ce_plus_dice(coco_masks):
    images, masks = coco_masks
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    logits = keras.layers.Conv2D(K, 1)(h)
    model = keras.Model(inp, {"ce": logits, "dice": keras.layers.Identity()(logits)})
    model.compile(
        keras.optimizers.Adam(3e-3),
        loss={
            "ce": keras_ls.SmoothedCE(0.1, from_logits=True),
            "dice": keras_ls.SmoothedDice(0.1, from_logits=True),
        },
    )
    hist = model.fit(images, {"ce": masks, "dice": masks}, epochs=12, batch_size=8, verbose=0)
    losses = hist.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.15, losses
    # the logged per-output values are the numpy losses of the final model
    out = model.predict(images, verbose=0)["ce"]
    got = model.evaluate(images, {"ce": masks, "dice": masks}, verbose=0, return_dict=True)
    assert got["ce_loss"] == pytest.approx(np_smoothed_ce(masks, out, 0.1), rel=1e-4)
    assert got["dice_loss"] == pytest.approx(np_dice(masks, out, 0.1), rel=1e-4)
