"""QA records: what they hold, and checks that fail with one clear line.

A record is a plain dict:
    image     PIL image, uint8 array (HxW, HxWx1/3/4), a file path, or a
              {"bytes": ...} / {"path": ...} dict as Hugging Face stores them
    question  str
    answers   non-empty list of str (a single str is accepted)
    facts     optional dict: scene facts (objects, the answer's boxes, ...)
    rationale optional str: a short reasoning the oracle writes as thoughts
    choices   optional list of str: the answer vocabulary (random baseline)

Facts of the procedural tasks use fractional coordinates in [0, 1], so they
hold at any image size:
    facts["boxes"]       boxes (x0, y0, x1, y1) that the answer depends on
    facts["answer_attr"] what the answer is about: digit, count, colour,
                         shape, position or relation
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from rlvlm.errors import DataError


def _fail(where: str, field: str, problem: str, fix: str):
    raise DataError(f"{where}: field '{field}' {problem}; fix: {fix}")


def to_image_array(image, where: str = "record", size: int | None = None) -> np.ndarray:
    """Coerce an image to uint8 HxWx3 (resized to size x size if given)."""
    if isinstance(image, dict):  # Hugging Face `Image(decode=False)` storage
        if image.get("bytes"):
            image = io.BytesIO(image["bytes"])
        elif image.get("path"):
            image = image["path"]
        else:
            _fail(where, "image", "is a dict without 'bytes' or 'path'", "give a PIL image, a uint8 array or a file path")
    if isinstance(image, (str, os.PathLike, io.BytesIO)):
        try:
            image = Image.open(image)
            image.load()
        except (OSError, ValueError) as exc:
            _fail(where, "image", f"cannot be opened ({exc})", "give a readable image file, a PIL image or a uint8 array")
    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            _fail(where, "image", f"has dtype {arr.dtype}", "convert it to uint8 in 0..255, e.g. (x * 255).astype('uint8')")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        if arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
            _fail(where, "image", f"has shape {image.shape}", "give an H x W x 3 (or H x W) uint8 array")
        if size is None or arr.shape[:2] == (size, size):
            return np.ascontiguousarray(arr)
        pil = Image.fromarray(arr)
    elif image is None:
        _fail(where, "image", "is missing", "give each record an 'image' (PIL image, uint8 array or path)")
    else:
        _fail(where, "image", f"has type {type(image).__name__}", "give a PIL image, a uint8 array or a file path")
    if size is not None and pil.size != (size, size):
        pil = pil.resize((size, size), Image.BILINEAR)
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))


def validate_record(record, where: str = "record", size: int | None = None) -> dict:
    """Check a record and return it normalised: image as uint8 HxWx3
    (resized to `size`), answers as a list of str, facts as a dict."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a dict with image, question, answers; got {type(record).__name__}; fix: build records as dicts")
    for field in ("image", "question", "answers"):
        if field not in record:
            _fail(where, field, "is missing", f"give each record '{field}' (found keys: {', '.join(map(str, record)) or 'none'})")
    question = record["question"]
    if not isinstance(question, str) or not question.strip():
        _fail(where, "question", f"must be a non-empty string, got {question!r:.60}", "give the question text")
    answers = record["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, (list, tuple)) or not answers or not all(isinstance(a, str) for a in answers):
        _fail(where, "answers", f"must be a non-empty list of strings, got {answers!r:.60}", "give e.g. answers=['2']")
    facts = record.get("facts") or {}
    if not isinstance(facts, dict):
        _fail(where, "facts", f"must be a dict, got {type(facts).__name__}", "give scene facts as a dict, or leave them out")
    out = dict(record)
    out.update(image=to_image_array(record["image"], where, size), question=question, answers=list(answers), facts=facts)
    choices = record.get("choices")
    if choices is not None and (not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) for c in choices)):
        _fail(where, "choices", "must be a list of strings", "give the answer vocabulary as strings, or leave it out")
    return out


class RecordSequence(Sequence):
    """Random access over `size` records made on demand by `_record(i)`;
    handles slices and negative indices once for every record source."""

    size: int

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} records")
        return self._record(index % self.size)

    def _record(self, index: int) -> dict:
        raise NotImplementedError
