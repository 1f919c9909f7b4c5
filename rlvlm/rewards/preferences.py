"""Simulated preferences: heuristic scorers stand in for a human annotator.

K replies to one (image, question) are scored with heuristics that read the
record's scene facts, ranked, and turned into (chosen, rejected) pairs for a
reward model. A scorer is `score(reply_text, record) -> float` in [0, 1]:

- mentions: does the reasoning talk about what is in the scene? Let M be the
  distinct entity words of the thoughts (colours, shapes, and in digit scenes
  bare numbers), R the entities of the scene objects and the question, T the
  entities of the question and reference answers. Then
      mentions = |M ∩ R| / |M| · (1 + |M ∩ T| / |T|) / 2
  (the fraction |M ∩ T| / |T| is 1 when T is empty; M empty gives 0). So
  hallucinated words (not in R) scale the score down, and naming the
  question's objects lifts it from 1/2 to 1.
- structure: points out of 10: 3 the reply is a JSON object; 2 it has string
  "thoughts" and "answer" keys, thoughts first; 1 the thoughts are
  non-empty; 2 they have 2-40 words; 2 they conclude: the answer's words
  appear in them and they say more than the answer. A reply that is not JSON
  gets at most 5.
- contradiction: 1 - wrong / checked over the distinct checkable claims of
  the thoughts (1.0 when none is checkable): counts ("3 black triangles":
  the scene has exactly 3 black triangles), colour-shape pairs ("red square",
  "square is red": some object is a red square), bare numbers in digit
  scenes (a digit shown; "N:" as in "I see 2: 3 left, 8 right" is a count
  of objects, not a digit), and the conclusion (of the answer choices named
  after the last "so / therefore / thus / hence / answer", or in the whole
  thoughts when none follows, the final answer must be one).
- correctness: vqa_accuracy(answer, record["answers"], "exact").

Thoughts are the JSON "thoughts" string; for a reply that is not valid JSON
they are the raw text, less the `"answer": ...` key and value when there is
one. Words are compared after `normalize_answer` ("Three." -> "3", articles
dropped). Spatial words (left, closest, ...) are not checked.

Keep one scorer out of the preference weights and use it, with the ground
truth, to evaluate: the seed project graded with the heuristic it trained on.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlvlm.envs.parsing import parse_action
from rlvlm.errors import ConfigError, DataError, did_you_mean
from rlvlm.tasks.answers import normalize_answer, vqa_accuracy
from rlvlm.tasks.procedural import COLOURS, SHAPES, SPLITS, make_task

# Colour words that no procedural scene uses: naming one is a hallucination.
# "white" is left out on purpose: it is the background, not an object.
EXTRA_COLOURS = ("yellow", "pink", "brown", "grey", "gray", "cyan", "magenta", "violet")
COLOUR_WORDS = frozenset(COLOURS) | frozenset(EXTRA_COLOURS)
_SHAPE_OF = {**{s: s for s in SHAPES}, **{s + "s": s for s in SHAPES}}
# Nouns a count may refer to; "object(s)" / "shape(s)" count every object.
_COUNT_NOUNS = {**_SHAPE_OF, "digit": "digit", "digits": "digit", "object": "*", "objects": "*", "shape": "*", "shapes": "*"}
_COPULAS = ("is", "are")
_MARKERS = ("so", "therefore", "thus", "hence", "answer")
_ANSWER_KEY = re.compile(r"[\"'\u201c\u201d\u2018\u2019]answer[\"'\u201c\u201d\u2018\u2019]\s*:", re.I)
_NUMBER = re.compile(r"[0-9]+")
# "I see 3: 8 left, ..." states a count of objects, not a digit 3: the colon
# form the long rationales use (envs/visual_qa.py) is read as "3 objects".
_COUNT_COLON = re.compile(r"\b([0-9]+)\s*:")
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```$", re.S)
STRUCTURE_WORDS = (2, 40)
STRATEGIES = ("all", "best_worst", "adjacent")
PAIR_KEYS = ("record_id", "question", "chosen", "rejected", "margin", "scores_chosen", "scores_rejected")
_EPS = 1e-9  # float slack: totals like 0.75 - 0.7 must still meet a 0.05 margin


# ------------------------------------------------------------ parsing ---
@dataclass(frozen=True)
class ParsedReply:
    """answer: the parsed answer (None if invalid); thoughts: see module doc;
    is_json: the reply (optionally code-fenced) is a JSON object; keys_ok:
    string "thoughts" and "answer" keys, in that order."""

    answer: str | None
    thoughts: str
    is_json: bool
    keys_ok: bool


def parse_reply(text: str) -> ParsedReply:
    """Split a reply into answer and thoughts, noting how well-formed it is."""
    text = text if isinstance(text, str) else ""
    parsed = parse_action(text, None, key="answer")
    body = text.strip()
    fence = _FENCE.match(body)
    try:
        obj = json.loads(fence.group(1) if fence else body)
    except (json.JSONDecodeError, RecursionError):  # deeply nested junk must not crash a scorer
        obj = None
    if isinstance(obj, dict):
        thoughts = obj.get("thoughts")
        keys = list(obj)
        keys_ok = (isinstance(thoughts, str) and isinstance(obj.get("answer"), str)
                   and keys.index("thoughts") < keys.index("answer"))  # fmt: skip
        return ParsedReply(parsed.action, thoughts if isinstance(thoughts, str) else "", True, keys_ok)
    thoughts = text
    if parsed.span is not None and _ANSWER_KEY.match(text, parsed.span[0]):
        # Cut the `"answer": ...` key and value so they do not count as reasoning.
        thoughts = text[: parsed.span[0]] + text[parsed.span[1]:]
    return ParsedReply(parsed.action, thoughts, False, False)


@dataclass
class _Scan:
    colours: set
    shapes: set
    numbers: list  # bare numbers: not part of a count phrase
    counts: set  # (n, colour | None, noun)
    pairs: set  # (colour, shape)


def _scan(tokens: list[str]) -> _Scan:
    """Entity words and claims of normalised tokens, read left to right."""
    out = _Scan({t for t in tokens if t in COLOUR_WORDS}, {_SHAPE_OF[t] for t in tokens if t in _SHAPE_OF}, [], set(), set())
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if _NUMBER.fullmatch(tok):
            j = i + 1
            colour = tokens[j] if j < n and tokens[j] in COLOUR_WORDS else None
            j += colour is not None
            if j < n and tokens[j] in _COUNT_NOUNS:
                out.counts.add((int(tok), colour, _COUNT_NOUNS[tokens[j]]))
                i = j + 1
            else:
                out.numbers.append(tok)
                i += 1
        elif tok in COLOUR_WORDS and i + 1 < n and tokens[i + 1] in _SHAPE_OF:
            out.pairs.add((tok, _SHAPE_OF[tokens[i + 1]]))
            i += 2
        elif tok in _SHAPE_OF:
            j = i + 1 + (i + 1 < n and tokens[i + 1] in _COPULAS)
            if j < n and tokens[j] in COLOUR_WORDS:
                out.pairs.add((tokens[j], _SHAPE_OF[tok]))
                i = j + 1
            else:
                i += 1
        else:
            i += 1
    return out


def _tokens(text: str) -> list[str]:
    return normalize_answer(_COUNT_COLON.sub(r"\1 objects ", text)).split()


def _objects(record: dict) -> list[dict]:
    return list((record.get("facts") or {}).get("objects") or [])


def _entities(scan: _Scan, digit_scene: bool) -> set:
    # In digit scenes a bare number names a digit; elsewhere it is a count.
    return scan.colours | scan.shapes | (set(scan.numbers) if digit_scene else set())


def _digit_scene(objects: list[dict]) -> bool:
    return any(o.get("shape") == "digit" for o in objects)


# ------------------------------------------------------------ scorers ---
def mentions(reply: str, record: dict) -> float:
    """Grounded, on-topic entity words in the thoughts (formula: module doc)."""
    objects = _objects(record)
    digit_scene = _digit_scene(objects)
    said = _entities(_scan(_tokens(parse_reply(reply).thoughts)), digit_scene)
    if not said:
        return 0.0
    target = _entities(_scan(_tokens(record.get("question", ""))), digit_scene)
    for answer in record.get("answers") or []:
        target |= _entities(_scan(_tokens(answer)), digit_scene)
    scene = {str(o["digit"]) if o.get("shape") == "digit" else o.get("shape") for o in objects}
    scene |= {o.get("colour") for o in objects}
    precision = len(said & (scene | target)) / len(said)
    coverage = len(said & target) / len(target) if target else 1.0
    return precision * (1.0 + coverage) / 2.0


def _contains(tokens: list[str], words: list[str]) -> bool:
    k = len(words)
    return k > 0 and any(tokens[i : i + k] == words for i in range(len(tokens) - k + 1))


def structure(reply: str, record: dict) -> float:
    """Points for a well-formed reasoned reply, out of 10 (see module doc)."""
    p = parse_reply(reply)
    words = p.thoughts.split()
    points = 3 * p.is_json + 2 * p.keys_ok + 1 * bool(words)
    points += 2 * (STRUCTURE_WORDS[0] <= len(words) <= STRUCTURE_WORDS[1])
    if p.answer is not None:
        thought_toks, answer_toks = _tokens(p.thoughts), _tokens(p.answer)
        points += 2 * (_contains(thought_toks, answer_toks) and len(thought_toks) > len(answer_toks))
    return points / 10.0


def _conclusion_ok(tokens: list[str], answer: str | None, choices) -> bool | None:
    """Whether the answer is among the choices the thoughts conclude with;
    None when the thoughts name no choice (nothing to check)."""
    if answer is None or not choices:
        return None
    options = [c for c in (_tokens(c) for c in choices) if c]
    marks = [i for i, t in enumerate(tokens) if t in _MARKERS]
    for start in [m + 1 for m in reversed(marks)] + [0]:
        named = [c for c in options if _contains(tokens[start:], c)]
        if named:
            return _tokens(answer) in named
    return None


def contradiction(reply: str, record: dict) -> float:
    """1 - wrong / checked over the thoughts' checkable claims (module doc)."""
    p = parse_reply(reply)
    tokens = _tokens(p.thoughts)
    scan = _scan(tokens)
    objects, facts = _objects(record), record.get("facts") or {}
    checks: list[bool] = []
    for n, colour, noun in scan.counts:
        if objects:
            true = sum((noun == "*" or o.get("shape") == noun) and colour in (None, o.get("colour")) for o in objects)
        elif noun == facts.get("target") and colour is None and "count" in facts:
            true = facts["count"]
        else:
            continue
        checks.append(n == true)
    if objects:
        checks += [any(o.get("shape") == s and o.get("colour") == c for o in objects) for c, s in scan.pairs]
        if _digit_scene(objects):
            shown = {str(o["digit"]) for o in objects if o.get("shape") == "digit"}
            checks += [d in shown for d in set(scan.numbers)]
    concluded = _conclusion_ok(tokens, p.answer, record.get("choices"))
    if concluded is not None:
        checks.append(concluded)
    return 1.0 - checks.count(False) / len(checks) if checks else 1.0


def correctness(reply: str, record: dict) -> float:
    """Exact VQA accuracy of the parsed answer (ground truth, not a heuristic)."""
    return vqa_accuracy(parse_reply(reply).answer, record.get("answers") or [], "exact")


SCORERS = {"mentions": mentions, "structure": structure, "contradiction": contradiction, "correctness": correctness}


def check_weights(weights: dict) -> dict[str, float]:
    """Validate scorer weights: known names, numbers >= 0, positive sum."""
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"weights={weights!r} must be a non-empty dict of scorer name -> weight ({', '.join(SCORERS)})")
    out = {}
    for name, w in weights.items():
        if name not in SCORERS:
            raise ConfigError(f"weights: unknown scorer {name!r}{did_you_mean(str(name), SCORERS)}; valid: {', '.join(SCORERS)}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
            raise ConfigError(f"weights[{name!r}]={w!r} must be a number >= 0")
        out[name] = float(w)
    if sum(out.values()) <= 0:
        raise ConfigError(f"weights={weights!r} sum to 0; give at least one scorer a positive weight")
    return out


def score_reply(reply: str, record: dict, weights: dict[str, float]) -> dict[str, float]:
    """Every scorer's value plus "total" = Σ w·s / Σ w over the weighted scorers."""
    weights = check_weights(weights)
    scores = {name: float(fn(reply, record)) for name, fn in SCORERS.items()}
    scores["total"] = sum(w * scores[n] for n, w in weights.items()) / sum(weights.values())
    return scores


# ------------------------------------------------------------- pairs ---
def _pair(record_id, record, good, bad) -> dict:
    (chosen, sc), (rejected, sr) = good, bad
    return {"record_id": record_id, "question": record.get("question", ""), "chosen": chosen, "rejected": rejected,
            "margin": sc["total"] - sr["total"], "scores_chosen": sc, "scores_rejected": sr}  # fmt: skip


def build_pairs(groups, weights: dict[str, float], *, min_margin: float = 0.05, strategy: str = "all") -> list[dict]:
    """Preference pairs from groups {"record_id", "record", "replies"}.

    Distinct replies of a group are ranked by total score; equal totals share
    a rank (score level). strategy="all": every pair across levels with
    margin >= min_margin; "best_worst": the first top reply against the first
    bottom reply; "adjacent": every pair across consecutive levels. Ties and
    identical replies never pair; margins below min_margin are dropped.
    """
    weights = check_weights(weights)
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}{did_you_mean(str(strategy), STRATEGIES)}")
    if isinstance(min_margin, bool) or not isinstance(min_margin, (int, float)) or not min_margin >= 0:
        raise ConfigError(f"min_margin={min_margin!r} must be a number >= 0")
    pairs = []
    for g, group in enumerate(groups):
        missing = [k for k in ("record_id", "record", "replies") if not isinstance(group, dict) or k not in group]
        if missing:
            raise DataError(f"group {g}: missing key {missing[0]!r}; fix: give each group record_id, record and replies")
        record, rid = group["record"], str(group["record_id"])
        replies = list(dict.fromkeys(r for r in group["replies"] if isinstance(r, str)))  # dedupe, keep order
        scored = sorted(((r, score_reply(r, record, weights)) for r in replies), key=lambda x: -x[1]["total"])
        levels: list[list] = []
        for item in scored:
            if levels and abs(levels[-1][0][1]["total"] - item[1]["total"]) <= _EPS:
                levels[-1].append(item)
            else:
                levels.append([item])
        if len(levels) < 2:
            continue
        if strategy == "best_worst":
            candidates = [(levels[0][0], levels[-1][0])]
        else:
            spans = [(a, b) for a in range(len(levels)) for b in range(a + 1, len(levels))
                     if strategy == "all" or b == a + 1]  # fmt: skip
            candidates = [(x, y) for a, b in spans for x in levels[a] for y in levels[b]]
        pairs += [_pair(rid, record, x, y) for x, y in candidates if x[1]["total"] - y[1]["total"] >= min_margin - _EPS]
    return pairs


def resolve_record(record_id: str, image_size: int) -> dict:
    """Rebuild a procedural record from its id "task/split/seed/index"."""
    parts = str(record_id).split("/")
    fix = 'fix: use a procedural id "task/split/seed/index", e.g. "digits/train/0/17"'
    if len(parts) != 4 or not all(parts):
        raise DataError(f"record_id={record_id!r} does not have 4 parts; {fix}")
    task, split, seed, index = parts
    if not re.fullmatch(r"-?\d+", seed) or not index.isdigit():
        raise DataError(f"record_id={record_id!r}: seed and index must be integers (index >= 0); {fix}")
    if split not in SPLITS:
        hint = did_you_mean(split, SPLITS)
        raise DataError(f"record_id={record_id!r}: split {split!r} is not one of {', '.join(SPLITS)}{hint}; {fix}")
    try:
        dataset = make_task(task, split, size=max(100_000, int(index) + 1), seed=int(seed), image_size=image_size)
    except ConfigError as exc:
        raise DataError(f"record_id={record_id!r}: {exc}") from exc
    return dataset[int(index)]


# -------------------------------------------------------- persistence ---
def _check_pair(pair, where: str) -> None:
    if not isinstance(pair, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(pair).__name__}; fix: one pair object per line")
    for key in PAIR_KEYS:
        if key not in pair:
            raise DataError(f"{where}: missing key {key!r}; fix: each pair needs {', '.join(PAIR_KEYS)}")


def write_pairs_jsonl(pairs, path) -> Path:
    """Write pairs one JSON object per line, atomically (temp file + os.replace),
    so a crash never leaves a half-written file in place of a good one."""
    pairs, path = list(pairs), Path(path)
    for i, pair in enumerate(pairs):
        _check_pair(pair, f"pair {i}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for pair in pairs:
                fh.write(json.dumps(pair, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_pairs_jsonl(path) -> list[dict]:
    """Read pairs written by write_pairs_jsonl; blank lines are skipped, and a
    bad line raises DataError naming the file, the line and the problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such pairs file; fix: write it with write_pairs_jsonl")
    pairs = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                pair = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}); fix: one pair object per line") from exc
            _check_pair(pair, f"{path}:{lineno}")
            pairs.append(pair)
    return pairs


def pairs_to_dataset(pairs):
    """A `datasets.Dataset` with one row per pair (columns: PAIR_KEYS + extras)."""
    import datasets  # lazy: only reward-model training needs it

    pairs = list(pairs)
    if not pairs:
        return datasets.Dataset.from_dict({k: [] for k in PAIR_KEYS})
    return datasets.Dataset.from_list(pairs)


def split_pairs(pairs, held_out_fraction: float = 0.2, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, held_out) by record_id: every pair of one prompt lands on one side.

    round(fraction · #ids) shuffled ids are held out (at least one, and one
    kept for training, when there are two or more ids and fraction is in
    (0, 1)); pairs keep their order within each side."""
    if isinstance(held_out_fraction, bool) or not isinstance(held_out_fraction, (int, float)) or not 0 <= held_out_fraction <= 1:
        raise ConfigError(f"held_out_fraction={held_out_fraction!r} must be a number in [0, 1]")
    pairs = list(pairs)
    ids = sorted({str(p["record_id"]) for p in pairs})
    random.Random(seed).shuffle(ids)
    k = round(held_out_fraction * len(ids))
    if 0 < held_out_fraction < 1 and len(ids) >= 2:
        k = min(max(k, 1), len(ids) - 1)
    held = set(ids[:k])
    return [p for p in pairs if str(p["record_id"]) not in held], [p for p in pairs if str(p["record_id"]) in held]


def load_pairs(path: str, pairs=None, need_margin: bool = False) -> list[dict]:
    """`pairs` if given, else the JSONL file at `path`; a clear error when neither holds any pair,
    or when a pair lacks record_id / chosen / rejected (and margin, with `need_margin`)."""
    if pairs is None:
        if not path:
            raise ConfigError("pairs is empty; fix: pairs=PATH to a JSONL file written by `rlvlm preferences`")
        pairs = read_pairs_jsonl(path)
    pairs = list(pairs)
    if not pairs:
        raise DataError(f"no preference pairs in {path or 'the given list'}; fix: collect some with "
                        "`rlvlm preferences` (more prompts, k, or a lower min_margin)")
    keys = ("record_id", "chosen", "rejected") + (("margin",) if need_margin else ())
    for i, p in enumerate(pairs):
        missing = [k for k in keys if not isinstance(p, dict) or k not in p]
        if missing:
            raise DataError(f"pair {i}: missing key {missing[0]!r}; fix: each pair needs {', '.join(keys)}")
    return pairs
