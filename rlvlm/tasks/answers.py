"""VQA answer normalisation and accuracy (exact, and the VQA soft score).

The normalisation follows the spirit of the official VQA evaluation, written
from its description: lower case; drop apostrophes (so "don't" == "dont");
keep the decimal point and thousands comma inside numbers ("2.5", "1,000" ->
"1000"), drop other full stops ("U.S.A." -> "usa") and turn the remaining
punctuation into spaces ("t-shirt" -> "t shirt"); number words zero-ten (and
"none") become digits; the articles a/an/the go.
"""

from __future__ import annotations

import re

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
_PUNCT = re.compile(r"[^\w\s\u0001]")
_DOT_MARK = "\u0001"  # stands in for a decimal point while punctuation goes


def normalize_answer(answer: str) -> str:
    """Canonical form of an answer for comparison, e.g. 'Two dogs.' -> '2 dogs'."""
    text = str(answer).lower().replace("\n", " ").replace("\t", " ")
    text = text.replace("'", "").replace("\u2019", "")
    text = _THOUSANDS.sub("", text)
    text = _DECIMAL.sub(_DOT_MARK, text).replace(".", "")
    text = _PUNCT.sub(" ", text).replace("_", " ")
    words = [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words).replace(_DOT_MARK, ".")


def vqa_accuracy(prediction: str | None, answers, scoring: str = "soft") -> float:
    """Accuracy of one prediction against the reference answers.

    scoring="soft": min(#matching answers / 3, 1), the VQA score for
        datasets with several human answers per question.
    scoring="exact": 1.0 if the prediction matches any reference, else 0.0.
    Both compare normalised strings; None (no valid prediction) scores 0.
    """
    if prediction is None:
        return 0.0
    norm = normalize_answer
    pred = norm(prediction)
    if not pred:
        # Answers made only of articles or punctuation ("A" in a multiple-
        # choice set) vanish under VQA normalisation; compare them lightly.
        def norm(a):
            return " ".join(str(a).lower().split()).strip(".")

        pred = norm(prediction)
        if not pred:
            return 0.0
    matches = sum(norm(a) == pred for a in answers)
    if scoring == "exact":
        return 1.0 if matches else 0.0
    if scoring == "soft":
        return min(matches / 3.0, 1.0)
    raise ValueError(f"scoring={scoring!r} is not 'exact' or 'soft'")
