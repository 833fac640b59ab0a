"""Clip-consistent augmentation: one random draw per clip, applied identically to every frame.

Spatial work is a crop box in stored-frame coordinates followed by one resize (OpenCV's bilinear
resize of the cropped view), so each frame is touched once. Boxes are (left, top, right, bottom).
Frames are RGB uint8 arrays (H, W, 3); RandAugment's ops run on Pillow images of them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

# ---- crop boxes -----------------------------------------------------------------------------


def jitter_box(h, w, out, rng, scale=(256, 320)):
    """Short side resized to a random size in `scale`, then a random out x out crop (TimeSformer,
    SlowFast)."""
    s = rng.uniform(*scale) / min(h, w)
    side = min(out / s, h, w)
    x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
    return x, y, x + side, y + side


def rrc_box(h, w, out, rng, area=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style random resized crop; falls back to the central square."""
    for _ in range(10):
        a = rng.uniform(*area) * h * w
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        bw, bh = math.sqrt(a * r), math.sqrt(a / r)
        if bw <= w and bh <= h:
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            return x, y, x + bw, y + bh
    side = min(h, w)
    return (w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2


def multiscale_box(h, w, out, rng, scales=(1.0, 0.875, 0.75, 0.66)):
    """TSN multi-scale crop: width and height each a scale of the short side (at most one scale
    step apart), at a random position."""
    base = min(h, w)
    i = rng.integers(len(scales))
    j = int(np.clip(i + rng.integers(-1, 2), 0, len(scales) - 1))
    bw, bh = base * scales[i], base * scales[j]
    x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    return x, y, x + bw, y + bh


TRAIN_CROPS = {"jitter": jitter_box, "rrc": rrc_box, "multiscale": multiscale_box}


def eval_boxes(h, w, out, num_crops):
    """Short side resized to `out`, then `num_crops` squares spread along the long side (1: centre;
    3: both ends and the centre)."""
    side = min(h, w)
    pos = [0.5] if num_crops == 1 else np.linspace(0, 1, num_crops)
    boxes = []
    for p in pos:
        if w >= h:
            x = p * (w - side)
            boxes.append((x, 0.0, x + side, float(side)))
        else:
            y = p * (h - side)
            boxes.append((0.0, y, float(side), y + side))
    return boxes


def crop_resize(frames, box, out, source_hw):
    """Crops `box` (given in `source_hw` coordinates; frames may have been decoded smaller by
    JPEG DCT scaling) to whole pixels and resizes it to out x out, bilinear with half-pixel
    centres (as torch's `interpolate(align_corners=False)` of the official pipelines; OpenCV,
    3-7x faster than Pillow's resize here, docs/benchmarks.md)."""
    h, w = source_hw
    result = []
    for f in frames:
        f = np.asarray(f)
        sy, sx = f.shape[0] / h, f.shape[1] / w
        x0 = min(max(round(box[0] * sx), 0), f.shape[1] - 1)
        y0 = min(max(round(box[1] * sy), 0), f.shape[0] - 1)
        x1 = min(max(round(box[2] * sx), x0 + 1), f.shape[1])
        y1 = min(max(round(box[3] * sy), y0 + 1), f.shape[0])
        result.append(cv2.resize(f[y0:y1, x0:x1], (out, out), interpolation=cv2.INTER_LINEAR))
    return result


def draft_size(box, out, source_hw):
    """The smallest whole-frame size (w, h) that still gives the crop `out` pixels."""
    h, w = source_hw
    s = out / min(box[2] - box[0], box[3] - box[1])
    return math.ceil(w * s), math.ceil(h * s)


# ---- RandAugment (Cubuk et al. 2020), one op chain per clip -----------------------------------


def _affine(img, matrix):
    return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR,
                         fillcolor=(128, 128, 128))


# op(image, f) with f in [-1, 1]: the signed magnitude fraction
RAND_OPS = {
    "identity": lambda im, f: im,
    "autocontrast": lambda im, f: ImageOps.autocontrast(im),
    "equalize": lambda im, f: ImageOps.equalize(im),
    "rotate": lambda im, f: im.rotate(30 * f, resample=Image.BILINEAR,
                                      fillcolor=(128, 128, 128)),
    "solarize": lambda im, f: ImageOps.solarize(im, int(256 - 256 * abs(f))),
    "posterize": lambda im, f: ImageOps.posterize(im, max(1, 8 - round(4 * abs(f)))),
    "color": lambda im, f: ImageEnhance.Color(im).enhance(1 + 0.9 * f),
    "contrast": lambda im, f: ImageEnhance.Contrast(im).enhance(1 + 0.9 * f),
    "brightness": lambda im, f: ImageEnhance.Brightness(im).enhance(1 + 0.9 * f),
    "sharpness": lambda im, f: ImageEnhance.Sharpness(im).enhance(1 + 0.9 * f),
    "shear_x": lambda im, f: _affine(im, (1, 0.3 * f, 0, 0, 1, 0)),
    "shear_y": lambda im, f: _affine(im, (1, 0, 0, 0.3 * f, 1, 0)),
    "translate_x": lambda im, f: _affine(im, (1, 0, 0.45 * f * im.width, 0, 1, 0)),
    "translate_y": lambda im, f: _affine(im, (1, 0, 0, 0, 1, 0.45 * f * im.height)),
}


def rand_augment(frames, rng, num_ops=2, magnitude=9.0, magnitude_std=0.5):
    """Draws `num_ops` ops, each with a magnitude ~ N(magnitude, std) clipped to [0, 10] and a
    random sign, once; applies that chain to every frame (RGB uint8 arrays in and out)."""
    names = list(RAND_OPS)
    chain = []
    for _ in range(num_ops):
        m = float(np.clip(rng.normal(magnitude, magnitude_std), 0, 10))
        chain.append((RAND_OPS[names[rng.integers(len(names))]],
                      m / 10 * (1 if rng.random() < 0.5 else -1)))
    images = [Image.fromarray(np.ascontiguousarray(im)) for im in frames]
    for op, f in chain:
        images = [op(im, f) for im in images]
    return [np.asarray(im) for im in images]


# ---- random erasing (Zhong et al. 2020): the box is drawn here, the train step fills it ---------


def erase_box(h, w, rng, prob=0.25, area=(0.02, 1 / 3), aspect=(0.3, 3.3)) -> np.ndarray:
    """With probability `prob`, a random box of an h x w frame to erase: (y0, y1, x0, x1) int32,
    all zeros (empty) otherwise or when 10 tries find no box inside the frame. The train step
    fills it with N(0, 1) noise on the normalised clip (`vidmix.training.inputs.erase`)."""
    if rng.random() >= prob:
        return np.zeros(4, np.int32)
    for _ in range(10):
        a = rng.uniform(*area) * h * w
        r = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
        eh, ew = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
        if 0 < eh < h and 0 < ew < w:
            y, x = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
            return np.array([y, y + eh, x, x + ew], np.int32)
    return np.zeros(4, np.int32)
