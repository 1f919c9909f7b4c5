"""VisualQA: a one-step env over any sequence of QA records.

Each episode shows one record's image and question; the model replies
`{"thoughts": ..., "answer": ...}` (or only the answer) and the episode ends.
The reward is the answer's accuracy after VQA normalisation: exact (1 if it
matches a reference) or soft (min(#matching references / 3, 1)).

`rationale=` picks the oracle's chain of thought: "short" (the record's),
"long" (`long_rationale`: every object and where it is, then the short one)
or "mixed" (long with probability `long_fraction`, drawn per episode).

Records come from `records=` (any sequence: a list of dicts, a
`rlvlm.tasks.load_hf_vqa(...)` dataset, ...) or, by default, from a
procedural task (`task=`, `split=`, `task_seed=`). The record is drawn with
the env's seeded RNG, or chosen with `reset(options={"index": i})` to walk a
dataset in order.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence

from rlvlm.envs.base import TextImageEnv, check_choice, check_float, reply_format
from rlvlm.errors import ConfigError, DataError
from rlvlm.tasks.answers import normalize_answer, vqa_accuracy
from rlvlm.tasks.procedural import make_task
from rlvlm.tasks.records import validate_record

SCORINGS = ("exact", "soft")
RATIONALES = ("short", "long", "mixed")
# Answer vocabulary of the random baseline when a record gives no choices.
_GENERIC_CHOICES = ("yes", "no") + tuple(str(i) for i in range(11))


def majority_answer(answers) -> str:
    """The reference answer most annotators gave (ties: the first given)."""
    counts = Counter(normalize_answer(a) for a in answers)
    best = max(counts.values())
    return next(a for a in answers if counts[normalize_answer(a)] == best)


def _where(center) -> str:
    """A coarse place word for a fractional (x, y) centre: 'top left', 'middle', ..."""
    col = ("left", "", "right")[min(2, int(center[0] * 3))]
    row = ("top", "", "bottom")[min(2, int(center[1] * 3))]
    return f"{row} {col}".strip() or "middle"


def long_rationale(record: dict) -> str | None:
    """A step-by-step chain of thought from the scene facts: every object,
    where it is, then the record's short rationale. Same answer, about 3-6x
    the tokens: the raw material of the response-length experiments."""
    objects = (record.get("facts") or {}).get("objects")
    short = record.get("rationale") or f"answer {majority_answer(record['answers'])}"
    if not objects:
        return short
    seen = []
    for o in objects:
        name = str(o["digit"]) if o.get("shape") == "digit" else f"{o['colour']} {o['shape']}"
        seen.append(f"{name} {_where(o['center'])}")
    return f"I see {len(objects)}: " + ", ".join(seen) + f"; so {short}"


class VisualQAEnv(TextImageEnv):
    legal_actions = None  # free-text answers
    action_key = "answer"
    invalid_terminates = True

    def __init__(
        self,
        records: Sequence | None = None,
        task: str = "mixed",
        split: str = "train",
        task_seed: int = 0,
        scoring: str = "exact",
        invalid_penalty: float = 0.0,
        rationale: str = "short",
        long_fraction: float = 0.5,
        **kwargs,
    ):
        kwargs["max_steps"] = 1
        super().__init__(invalid_penalty=invalid_penalty, **kwargs)
        check_choice("scoring", scoring, SCORINGS)
        check_choice("rationale", rationale, RATIONALES)
        self.scoring = scoring
        self.rationale = rationale
        self.long_fraction = check_float("long_fraction", long_fraction)
        if not 0.0 <= self.long_fraction <= 1.0:
            raise ConfigError(f"long_fraction={long_fraction} must be a probability in [0, 1]")
        if records is None:
            records = make_task(task, split, seed=task_seed, image_size=self.image_size)
        if not hasattr(records, "__len__") or not hasattr(records, "__getitem__") or isinstance(records, (str, dict)):
            raise DataError(
                f"records of type {type(records).__name__} is not a sequence; fix: pass a list of record dicts or a dataset"
            )
        if len(records) == 0:
            raise DataError("records is empty; fix: pass at least one {image, question, answers} record")
        self.records = records
        self._load(0)  # fail at construction, not mid-training, on a malformed dataset

    def _load(self, index: int) -> dict:
        return validate_record(self.records[index], f"VisualQA record {index}", self.image_size)

    def _new_episode(self, options: dict) -> None:
        if "index" in options:
            index = int(options["index"])
            if not 0 <= index < len(self.records):
                raise DataError(f"reset option index={index} is outside 0..{len(self.records) - 1}; fix: pass a valid record index")
        else:
            index = int(self.np_random.integers(len(self.records)))
        self.index = index
        self.record = self._load(index)
        # The oracle's chain of thought this episode (drawn here, from the env's RNG,
        # so a seed fixes it): "mixed" demonstrations teach both lengths.
        long = self.rationale == "long" or (self.rationale == "mixed" and self.np_random.random() < self.long_fraction)
        self.thoughts = long_rationale(self.record) if long else self.record.get("rationale")
        self.prediction: str | None = None
        self.accuracy: float | None = None

    def _act(self, action: str):
        self.prediction = action
        self.accuracy = vqa_accuracy(action, self.record["answers"], self.scoring)
        return self.accuracy, True, {}

    def _state(self) -> dict:
        r = self.record
        return {
            "index": self.index,
            "id": r.get("id", str(self.index)),
            "question": r["question"],
            "answers": list(r["answers"]),
            "facts": copy.deepcopy(r["facts"]),  # fresh per call: callers may keep or edit infos
            "rationale": self.thoughts,
            "choices": None if r.get("choices") is None else list(r["choices"]),
            "prediction": self.prediction,
            # Invalid replies score 0: they answered nothing right.
            "accuracy": self.accuracy if self.accuracy is not None else (0.0 if self._steps else None),
            # Reliable-VQA convention: an answer with any accuracy counts as correct.
            "correct": None if not self._steps else (self.accuracy or 0.0) > 0,
        }

    def _draw(self):
        return self.record["image"]

    def _instructions(self) -> str:
        fmt = reply_format([("thoughts", '"short reasoning"'), ("answer", '"a word or number"')], self.prompt_style, "answer")
        return f"Answer the question about the image.\nQuestion: {self.record['question']}\n{fmt}"

    def _state_text(self) -> str:
        return ""  # the state is the image itself; there is nothing to say in words

    def oracle_reply(self, info: dict) -> str:
        answer = majority_answer(info["answers"])
        thoughts = info.get("rationale") or f"answer {answer}"  # this episode's (short or long) chain
        return self.reply({"thoughts": thoughts, "answer": answer})

    def random_reply(self, info: dict, rng) -> str:
        choices = info.get("choices") or _GENERIC_CHOICES
        return self.reply({"thoughts": "random", "answer": str(rng.choice(list(choices)))})
