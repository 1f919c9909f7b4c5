"""Image degradations that remove the information a question needs.

Modes (ProactiveBench-style):
- occlude: a grey patch over each box the answer depends on;
- blur:    a strong Gaussian blur (radius a fraction of the image side);
- crop:    zoom into a window that contains none of those boxes;
- blank:   an empty white image;
- drop:    no image at all (all zeros; the prompt says so).

A mode is only used where it really hides the answer. Blur keeps colours and
the rough places of blobs, so it is not used for colour, count, position or
relation questions; crop needs a large window clear of every relevant box.
`applicable_modes` encodes this, from the record's facts: `facts["boxes"]`
(fractional boxes the answer depends on) and `facts["answer_attr"]`. Without
facts (the card games) the relevant box is everything drawn on the page.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MODES = ("occlude", "blur", "crop", "blank", "drop")
# Blur leaves these recoverable, so it does not count as missing information.
_BLUR_KEEPS = {"colour", "count", "position", "relation"}
_MARGIN = 0.03  # grow boxes a little so anti-aliased edges are covered too
_CROP_SIDES = (0.6, 0.5, 0.45)


def content_box(image: np.ndarray) -> list[float]:
    """Fractional bounding box of everything that is not white background."""
    mask = (image < 245).any(axis=-1)
    if not mask.any():
        return [0.0, 0.0, 1.0, 1.0]
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return [xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h]


def relevant_boxes(image: np.ndarray, facts: dict | None) -> list[list[float]]:
    boxes = (facts or {}).get("boxes")
    return [list(map(float, b)) for b in boxes] if boxes else [content_box(image)]


def _grow(box, margin: float = _MARGIN):
    x0, y0, x1, y1 = box
    return [max(0.0, x0 - margin), max(0.0, y0 - margin), min(1.0, x1 + margin), min(1.0, y1 + margin)]


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def crop_windows(boxes) -> list[tuple[float, float, float]]:
    """Square windows (x0, y0, side) that overlap none of the boxes."""
    grown = [_grow(b) for b in boxes]
    out = []
    for side in _CROP_SIDES:
        for x0 in np.linspace(0.0, 1.0 - side, 5):
            for y0 in np.linspace(0.0, 1.0 - side, 5):
                win = (float(x0), float(y0), float(x0 + side), float(y0 + side))
                if not any(_overlaps(win, b) for b in grown):
                    out.append((float(x0), float(y0), side))
        if out:  # prefer the largest clear windows: the zoom looks natural
            break
    return out


def applicable_modes(modes, image: np.ndarray, facts: dict | None) -> list[str]:
    """The modes, in the given order, that hide this record's answer."""
    attr = (facts or {}).get("answer_attr")
    out = []
    for mode in modes:
        if mode == "blur" and attr in _BLUR_KEEPS:
            continue
        if mode == "crop" and not crop_windows(relevant_boxes(image, facts)):
            continue
        out.append(mode)
    return out


def plan(mode: str, image: np.ndarray, facts: dict | None, rng: np.random.Generator) -> dict:
    """Fix the random parts of a degradation once per episode (the crop
    window), so every step of the episode is degraded the same way."""
    out = {"mode": mode}
    if mode == "crop":
        windows = crop_windows(relevant_boxes(image, facts))
        # Prefer windows that still show something (other objects): an empty
        # zoom would look just like "blank".
        mask = (image < 245).any(axis=-1)
        h, w = mask.shape
        busy = [win for win in windows if mask[round(win[1] * h) : round((win[1] + win[2]) * h), round(win[0] * w) : round((win[0] + win[2]) * w)].any()]
        windows = busy or windows
        out["window"] = windows[int(rng.integers(len(windows)))]
    return out


def apply(image: np.ndarray, how: dict, facts: dict | None, blur_radius: float = 0.12) -> np.ndarray:
    """Degrade a uint8 HxWx3 image as planned; returns a new array."""
    mode = how["mode"]
    h, w = image.shape[:2]
    if mode == "blank":
        return np.full_like(image, 255)
    if mode == "drop":
        return np.zeros_like(image)
    pil = Image.fromarray(image)
    if mode == "blur":
        pil = pil.filter(ImageFilter.GaussianBlur(radius=blur_radius * max(h, w)))
    elif mode == "occlude":
        draw = ImageDraw.Draw(pil)
        for x0, y0, x1, y1 in (_grow(b) for b in relevant_boxes(image, facts)):
            draw.rectangle((x0 * w, y0 * h, x1 * w - 1, y1 * h - 1), fill=(128, 128, 128))
    elif mode == "crop":
        x0, y0, side = how["window"]
        box = (round(x0 * w), round(y0 * h), round((x0 + side) * w), round((y0 + side) * h))
        pil = pil.crop(box).resize((w, h), Image.BILINEAR)
    else:
        raise ValueError(f"unknown degradation mode {mode!r}")
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))
