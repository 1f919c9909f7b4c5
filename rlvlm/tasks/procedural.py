"""Procedural visual QA tasks: digits, counting, colours, spatial relations.

Each generator draws a scene on a white canvas and asks one question about
it, keeping the scene facts (objects with shape, colour and fractional box)
so that rewards, degradations and evaluations can reason about the image.
Objects sit in distinct cells of a coarse grid, large and well apart, so the
answer stays readable at 56-112 px.

Records are a pure function of (task, split, seed, index): `ProceduralTask`
is a lazily generated, random-access sequence, and the train / validation /
test splits draw from disjoint seed streams.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from rlvlm.tasks.render import draw_text, to_array
from rlvlm.errors import ConfigError, did_you_mean
from rlvlm.tasks.records import RecordSequence

SHAPES = ("circle", "square", "triangle")
COLOURS = {
    "red": (220, 20, 20),
    "green": (0, 150, 0),
    "blue": (20, 60, 230),
    "orange": (255, 140, 0),
    "purple": (140, 0, 200),
    "black": (0, 0, 0),
}
SPLITS = ("train", "validation", "test")
DIGITS = tuple(str(d) for d in range(10))
MAX_COUNT = 6


# ------------------------------------------------------------- drawing ---
def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box, colour) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


def _place(rng: np.random.Generator, n: int, grid: int) -> list[tuple[float, float, float]]:
    """n objects in distinct grid cells: (cx, cy, half-size) as fractions."""
    cells = rng.choice(grid * grid, size=n, replace=False)
    cell = 1.0 / grid
    half = cell * 0.32
    out = []
    for c in cells:
        gx, gy = int(c) % grid, int(c) // grid
        jitter = rng.uniform(-0.08, 0.08, size=2) * cell
        out.append((float((gx + 0.5) * cell + jitter[0]), float((gy + 0.5) * cell + jitter[1]), half))
    return out


def _scene(rng, size: int, specs: list[tuple[str, str]], grid: int = 3):
    """Draw objects (shape, colour) at random cells; return (array, objects)."""
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    objects = []
    for (shape, colour), (cx, cy, h) in zip(specs, _place(rng, len(specs), grid)):
        box = [round(cx - h, 4), round(cy - h, 4), round(cx + h, 4), round(cy + h, 4)]
        _draw_shape(draw, shape, [v * size for v in box], COLOURS[colour])
        objects.append({"shape": shape, "colour": colour, "center": [round(cx, 4), round(cy, 4)], "box": box})
    return to_array(img), objects


def _record(image, question, answer, rationale, choices, objects, attr, relevant, **facts):
    facts.update(objects=objects, answer_attr=attr, boxes=[o["box"] for o in relevant])
    return {"image": image, "question": question, "answers": [answer], "rationale": rationale,
            "choices": list(choices), "facts": facts}  # fmt: skip


# ---------------------------------------------------------- generators ---
def digits(rng: np.random.Generator, size: int) -> dict:
    """One large digit somewhere on the canvas: 'What digit is shown?'"""
    d = str(int(rng.integers(10)))
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    side = rng.uniform(0.5, 0.75)
    x0, y0 = rng.uniform(0.04, 0.96 - side, size=2)
    box = [round(float(x0), 4), round(float(y0), 4), round(float(x0 + side), 4), round(float(y0 + side), 4)]
    draw_text(draw, [v * size for v in box], d)
    obj = {"shape": "digit", "colour": "black", "digit": int(d), "box": box,
           "center": [round((box[0] + box[2]) / 2, 4), round((box[1] + box[3]) / 2, 4)]}  # fmt: skip
    return _record(to_array(img), "What digit is shown?", d, f"digit {d}", DIGITS, [obj], "digit", [obj], digit=int(d))


def counting(rng: np.random.Generator, size: int) -> dict:
    """1-6 black shapes of one kind among up to 2 of another: 'How many circles are there?'"""
    target, other = (SHAPES[int(i)] for i in rng.choice(3, size=2, replace=False))
    k = int(rng.integers(1, MAX_COUNT + 1))
    m = int(rng.integers(0, min(2, 9 - k) + 1))
    specs = [(target, "black")] * k + [(other, "black")] * m
    image, objects = _scene(rng, size, specs)
    counted = [o for o in objects if o["shape"] == target]
    question = f"How many {target}s are there?"
    choices = tuple(str(i) for i in range(1, MAX_COUNT + 1))
    return _record(image, question, str(k), f"{k} {target}{'s' if k > 1 else ''}", choices, objects, "count", counted, count=k, target=target)


def colours(rng: np.random.Generator, size: int) -> dict:
    """2-3 shapes of different kinds and colours: 'What color is the square?'"""
    n = int(rng.integers(2, 4))
    shapes = [SHAPES[int(i)] for i in rng.choice(3, size=n, replace=False)]
    names = list(COLOURS)
    cols = [names[int(i)] for i in rng.choice(len(names), size=n, replace=False)]
    image, objects = _scene(rng, size, list(zip(shapes, cols)))
    asked = objects[int(rng.integers(n))]
    question = f"What color is the {asked['shape']}?"
    rationale = f"{asked['shape']} {asked['colour']}"
    return _record(image, question, asked["colour"], rationale, names, objects, "colour", [asked])


def _dist(a, b) -> float:
    return float(np.hypot(a["center"][0] - b["center"][0], a["center"][1] - b["center"][1]))


def spatial(rng: np.random.Generator, size: int) -> dict:
    """Sort-of-CLEVR: 3-5 objects of distinct colours on a 4x4 grid, with a
    non-relational (shape, side) or relational (closest, farthest, left-of)
    question."""
    n = int(rng.integers(3, 6))
    names = list(COLOURS)
    cols = [names[int(i)] for i in rng.choice(len(names), size=n, replace=False)]
    shapes = [SHAPES[int(rng.integers(3))] for _ in range(n)]
    image, objects = _scene(rng, size, list(zip(shapes, cols)), grid=4)
    ref, other = (objects[int(i)] for i in rng.choice(n, size=2, replace=False))
    c = ref["colour"]
    kinds = ["shape", "side", "closest", "farthest", "left_of"]
    for kind in rng.permutation(kinds):
        if kind == "shape":
            return _record(image, f"What shape is the {c} object?", ref["shape"], f"{c} {ref['shape']}",
                           SHAPES, objects, "shape", [ref], question_type=kind)  # fmt: skip
        if kind == "side":
            side = "left" if ref["center"][0] < 0.5 else "right"
            return _record(image, f"Is the {c} object on the left or right?", side, f"{c} {side}",
                           ("left", "right"), objects, "position", [ref], question_type=kind)  # fmt: skip
        if kind in ("closest", "farthest"):
            others = sorted((o for o in objects if o is not ref), key=lambda o: _dist(ref, o), reverse=kind == "farthest")
            # Skip near-ties: the answer must be unambiguous from the picture.
            if len(others) > 1 and abs(_dist(ref, others[0]) - _dist(ref, others[1])) < 0.06:
                continue
            ans = others[0]["colour"]
            rel = "closest to" if kind == "closest" else "farthest from"
            return _record(image, f"What color is the object {rel} the {c} object?", ans, f"{kind} to {c}: {ans}",
                           names, objects, "relation", [ref, others[0]], question_type=kind)  # fmt: skip
        if kind == "left_of":
            dx = other["center"][0] - ref["center"][0]
            if abs(dx) < 0.1:
                continue
            ans = "yes" if dx > 0 else "no"
            o = other["colour"]
            return _record(image, f"Is the {c} object left of the {o} object?", ans, f"{c} left of {o}: {ans}",
                           ("yes", "no"), objects, "relation", [ref, other], question_type=kind)  # fmt: skip
    raise AssertionError("unreachable: 'shape' always yields a question")


def mixed(rng: np.random.Generator, size: int) -> dict:
    """One of the four tasks, chosen uniformly per record."""
    name = ("digits", "counting", "colours", "spatial")[int(rng.integers(4))]
    record = GENERATORS[name](rng, size)
    record["facts"]["task"] = name
    return record


GENERATORS = {"digits": digits, "counting": counting, "colours": colours, "spatial": spatial, "mixed": mixed}
_ALIASES = {"colors": "colours", "digit": "digits", "count": "counting", "sort_of_clevr": "spatial"}


class ProceduralTask(RecordSequence):
    """A lazily generated, reproducible dataset of QA records.

    Record i of (task, split, seed) is always the same; splits use disjoint
    seed streams. `size` only bounds the index range (records are made on
    demand, nothing is stored)."""

    def __init__(self, task: str = "mixed", split: str = "train", size: int = 100_000, seed: int = 0, image_size: int = 224):
        task = _ALIASES.get(task, task)
        if task not in GENERATORS:
            raise ConfigError(f"task={task!r} is not one of {', '.join(GENERATORS)}{did_you_mean(task, GENERATORS)}")
        if split not in SPLITS:
            raise ConfigError(f"split={split!r} is not one of {', '.join(SPLITS)}{did_you_mean(str(split), SPLITS)}")
        if not isinstance(size, int) or size < 1:
            raise ConfigError(f"size={size!r} must be a positive integer")
        if not isinstance(image_size, int) or image_size < 32:
            raise ConfigError(f"image_size={image_size!r} must be an integer >= 32")
        self.task, self.split, self.size, self.seed, self.image_size = task, split, size, int(seed), image_size
        self._key = [int(seed), SPLITS.index(split), list(GENERATORS).index(task)]

    def _record(self, index: int) -> dict:
        rng = np.random.default_rng(self._key + [index])
        record = GENERATORS[self.task](rng, self.image_size)
        record["id"] = f"{self.task}/{self.split}/{self.seed}/{index}"
        record["facts"].setdefault("task", self.task)
        return record

    def __repr__(self) -> str:
        return f"ProceduralTask({self.task!r}, split={self.split!r}, size={self.size}, seed={self.seed}, image_size={self.image_size})"


def make_task(name: str = "mixed", split: str = "train", size: int = 100_000, seed: int = 0, image_size: int = 224) -> ProceduralTask:
    """The procedural dataset `name` (digits, counting, colours, spatial, mixed)."""
    return ProceduralTask(name, split, size, seed, image_size)
