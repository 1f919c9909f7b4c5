"""Procedural drawing with PIL: fitted text, playing cards, shapes.

Everything is drawn black on white at the requested size (never drawn large
and downscaled), with fonts sized to fill their box, so the images stay
legible at the 56-112 px that tiny from-scratch VLMs are trained on.
Fonts are matplotlib's bundled DejaVu; no image or font file is copied in.
Rendering is a pure function of the state, so a seeded reset gives identical
bytes.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (128, 128, 128)
SUIT_GLYPHS = {"S": "\u2660", "H": "\u2665", "D": "\u2666", "C": "\u2663"}


@lru_cache(maxsize=4)
def font_path(bold: bool = True) -> str:
    """Path of matplotlib's bundled DejaVu Sans (bold by default: thicker
    strokes survive small sizes)."""
    import matplotlib
    from matplotlib import font_manager

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)
    if os.path.exists(path):
        return path
    props = font_manager.FontProperties(family="DejaVu Sans", weight="bold" if bold else "normal")
    return font_manager.findfont(props, fallback_to_default=True)


@lru_cache(maxsize=512)
def font(size: int, bold: bool = True) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(font_path(bold), max(1, int(size)))


def new_canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (size, size), WHITE)
    return img, ImageDraw.Draw(img)


@lru_cache(maxsize=4096)
def fit_size(text: str, max_w: int, max_h: int, bold: bool = True) -> int:
    """Largest font size whose rendered `text` fits in max_w x max_h."""
    lo, hi = 1, max(1, int(max_h * 1.4))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=font(mid, bold))
        if x1 - x0 <= max_w and y1 - y0 <= max_h:
            lo = mid
        else:
            hi = mid - 1
    return lo


def draw_text(draw: ImageDraw.ImageDraw, box, text: str, *, fill=BLACK, bold: bool = True, align: str = "center", max_size: int | None = None) -> int:
    """Draw `text` as large as fits inside box=(x0, y0, x1, y1); return the
    font size used. `align` is "center" or "left"."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    w, h = max(1, x1 - x0), max(1, y1 - y0)
    size = fit_size(text, w, h, bold)
    if max_size is not None:
        size = min(size, max_size)
    f = font(size, bold)
    bx0, by0, bx1, by1 = draw.textbbox((0, 0), text, font=f)
    tx = x0 - bx0 + (0 if align == "left" else (w - (bx1 - bx0)) // 2)
    ty = y0 - by0 + (h - (by1 - by0)) // 2
    draw.text((tx, ty), text, fill=fill, font=f)
    return size


def draw_card(img: Image.Image, box, rank: str | None, suit: str | None = None, *, face_down: bool = False) -> None:
    """A playing card: white with a thick black border, the rank large in the
    upper part and the suit glyph below. On cards too small for both, only
    the rank is drawn (the suit never matters to the games). A face-down
    card is cross-hatched. Cards are drawn once per (rank, suit, size) and
    pasted: the games redraw the same cards at every step."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    img.paste(_card_tile(rank, suit, face_down, x1 - x0 + 1, y1 - y0 + 1), (x0, y0))


@lru_cache(maxsize=2048)
def _card_tile(rank: str | None, suit: str | None, face_down: bool, w: int, h: int) -> Image.Image:
    tile = Image.new("RGB", (w, h), WHITE)
    draw = ImageDraw.Draw(tile)
    x1, y1 = w - 1, h - 1
    border = max(1, round(min(w, h) / 16))
    radius = max(1, round(min(w, h) / 8))
    draw.rounded_rectangle((0, 0, x1, y1), radius=radius, fill=WHITE, outline=BLACK, width=border)
    if face_down:
        # Diagonal hatching x - y = const, clipped to the card by hand
        # (ImageDraw has no clip region): t runs along the line from its top.
        step = max(3, round(w / 5))
        for off in range(-y1, x1, step):
            t0, t1 = max(0, -off), min(y1, x1 - off)
            if t0 < t1:
                draw.line((off + t0, t0, off + t1, t1), fill=BLACK, width=max(1, border // 2))
        draw.rounded_rectangle((0, 0, x1, y1), radius=radius, outline=BLACK, width=border)
        return tile
    pad = border + max(1, round(w / 14))
    inner = (pad, pad, x1 - pad, y1 - pad)
    if suit is None or h < 48:
        draw_text(draw, inner, rank or "?")
        return tile
    ih = inner[3] - inner[1]
    draw_text(draw, (inner[0], inner[1], inner[2], inner[1] + ih * 0.58), rank or "?")
    draw_text(draw, (inner[0], inner[1] + ih * 0.66, inner[2], inner[3]), SUIT_GLYPHS.get(suit, suit), bold=False)
    return tile


def card_row(img: Image.Image, region, cards, *, aspect: float = 0.72, gap_frac: float = 0.08, max_h: float | None = None) -> None:
    """Lay out `cards` [(rank, suit, face_down), ...] centred in one row of
    `region`, as large as the region allows with the given width/height ratio."""
    x0, y0, x1, y1 = region
    n = max(1, len(cards))
    rw, rh = x1 - x0, y1 - y0
    h = min(rh, max_h or rh)
    w = h * aspect
    gap = w * gap_frac
    if n * w + (n - 1) * gap > rw:  # too many cards: shrink to fit the width
        w = rw / (n + (n - 1) * gap_frac)
        gap, h = w * gap_frac, min(h, w / aspect)
    total = n * w + (n - 1) * gap
    left, top = x0 + (rw - total) / 2, y0 + (rh - h) / 2
    for i, (rank, suit, down) in enumerate(cards):
        cx = left + i * (w + gap)
        draw_card(img, (cx, top, cx + w, top + h), rank, suit, face_down=down)


def to_array(img: Image.Image) -> np.ndarray:
    """PIL image -> contiguous uint8 H x W x 3 array."""
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
