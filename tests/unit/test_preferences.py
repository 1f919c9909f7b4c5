"""Simulated preferences: scorer values worked out by hand on real procedural
records, pair building, persistence, record ids and the held-out split.

Records used (make_task(..., "train", seed=0, image_size=56)):
- colours[0]: blue triangle, purple square; "What color is the triangle?" -> blue
- counting[0]: 3 black triangles, 2 black squares; "How many triangles are there?" -> 3
- digits[0]: one black digit 8; "What digit is shown?" -> 8
"""

import json

import numpy as np
import pytest

from rlvlm.errors import ConfigError, DataError
from rlvlm.rewards.preferences import (
    PAIR_KEYS,
    SCORERS,
    build_pairs,
    contradiction,
    correctness,
    mentions,
    pairs_to_dataset,
    parse_reply,
    read_pairs_jsonl,
    resolve_record,
    score_reply,
    split_pairs,
    structure,
    write_pairs_jsonl,
)
from rlvlm.tasks.procedural import make_task


def _task(name, i=0):
    return make_task(name, "train", seed=0, image_size=56)[i]


COL, CNT, DIG = _task("colours"), _task("counting"), _task("digits")


def js(thoughts, answer):
    return json.dumps({"thoughts": thoughts, "answer": answer})


def test_records_are_the_ones_the_expectations_assume():
    # If the generators change, every hand-worked value below must be redone.
    assert [(o["shape"], o["colour"]) for o in COL["facts"]["objects"]] == [("triangle", "blue"), ("square", "purple")]
    assert (COL["question"], COL["answers"]) == ("What color is the triangle?", ["blue"])
    shapes = sorted(o["shape"] for o in CNT["facts"]["objects"])
    assert shapes == ["square"] * 2 + ["triangle"] * 3 and {o["colour"] for o in CNT["facts"]["objects"]} == {"black"}
    assert (CNT["facts"]["count"], CNT["facts"]["target"], CNT["answers"]) == (3, "triangle", ["3"])
    assert DIG["facts"]["digit"] == 8 and DIG["answers"] == ["8"]


def test_parse_reply():
    p = parse_reply(js("the triangle is blue", "Blue"))
    assert (p.answer, p.thoughts, p.is_json, p.keys_ok) == ("blue", "the triangle is blue", True, True)
    fenced = parse_reply("```json\n" + js("t", "3") + "\n```")
    assert fenced.is_json and fenced.keys_ok and fenced.answer == "3"
    # Not JSON: the answer key and value are cut out of the thoughts.
    p = parse_reply('the triangle is blue. "answer": "blue"')
    assert (p.answer, p.thoughts, p.is_json, p.keys_ok) == ("blue", "the triangle is blue. ", False, False)
    # A bare reply: the thoughts are the raw text.
    assert parse_reply("blue") == parse_reply("blue").__class__("blue", "blue", False, False)
    assert parse_reply(json.dumps({"thoughts": ["x"], "answer": "3"})).thoughts == ""


# ----------------------------------------------------------- mentions ---
# colours[0]: R (scene + question + answer) = {triangle, blue, square, purple}, T = {triangle, blue}
@pytest.mark.parametrize(
    "thoughts, expected",
    [
        ("the triangle is blue", 1.0),  # M={triangle, blue}: 2/2 * (1 + 2/2)/2
        ("I see a purple square", 0.5),  # M={purple, square}: 2/2 * (1 + 0/2)/2
        ("the triangle is red", 0.375),  # M={triangle, red}: 1/2 * (1 + 1/2)/2
        ("a yellow circle", 0.0),  # M={yellow, circle}: 0/2 grounded
        ("blue triangle, blue triangles, triangle", 1.0),  # repeats count once
        ("triangle", 0.75),  # M={triangle}: 1/1 * (1 + 1/2)/2
        ("hmm, let me think", 0.0),  # nothing mentioned
        ("", 0.0),
    ],
)
def test_mentions_colours(thoughts, expected):
    assert mentions(js(thoughts, "blue"), COL) == pytest.approx(expected)


def test_mentions_counting_digits_and_no_facts():
    # counting[0]: R={triangle, square, black}, T={triangle}; numbers are counts, not entities.
    assert mentions(js("3 triangles and 2 squares", "3"), CNT) == pytest.approx(1.0)  # 2/2 * (1+1)/2
    assert mentions(js("2 black squares and 4 red circles", "2"), CNT) == pytest.approx(0.25)  # M={black,square,red,circle}: 2/4 * (1+0)/2
    # digits[0]: a bare number names a digit. R={8, black, digit-less question}, T={8}.
    assert mentions(js("the digit is 8", "8"), DIG) == pytest.approx(1.0)
    assert mentions(js("looks like a 3 or an 8", "8"), DIG) == pytest.approx(0.5)  # M={3, 8}: 1/2 * (1+1)/2
    assert mentions(js("I count 1 digit", "1"), DIG) == 0.0  # "1 digit" is a count: nothing named
    # The long rationale's "I see 1:" is a count too: M={8}: 1/1 * (1 + 1/1)/2
    assert mentions(js("I see 1: 8 middle; so digit 8", "8"), DIG) == pytest.approx(1.0)
    # No scene facts: only the question and the answers are a reference.
    car = {"question": "What color is the car?", "answers": ["red"]}
    assert mentions(js("the car is red", "red"), car) == 1.0
    assert mentions(js("the car is blue", "blue"), car) == 0.0
    # A reply that is not JSON: its raw text is the thoughts.
    assert mentions("triangle blue", COL) == 1.0


# ---------------------------------------------------------- structure ---
@pytest.mark.parametrize(
    "reply, expected",
    [
        (js("the triangle is blue", "blue"), 1.0),  # 3 + 2 + 1 + 2 + 2
        (json.dumps({"answer": "blue", "thoughts": "the triangle is blue"}), 0.8),  # answer first: -2
        (js("the triangle is coloured", "blue"), 0.8),  # no conclusion: -2
        (js("blue", "blue"), 0.6),  # 1 word (-2), says no more than the answer (-2)
        (js(" ".join(["w"] * 40) + " blue", "blue"), 0.8),  # 41 words: -2
        (js("", "blue"), 0.5),  # 3 + 2 only
        (json.dumps({"thoughts": "the triangle is blue"}), 0.6),  # no answer key: 3 + 1 + 2
        ('the triangle is blue. "answer": "blue"', 0.5),  # not JSON: 1 + 2 + 2 at most
        ("{'thoughts': 'triangle is blue', 'answer': 'blue'}", 0.5),  # single quotes: not JSON
        ("blue", 0.1),  # bare: 1 (non-empty) only
        ("", 0.0),
    ],
)
def test_structure(reply, expected):
    assert structure(reply, COL) == pytest.approx(expected)


# ------------------------------------------------------ contradiction ---
@pytest.mark.parametrize(
    "record, reply, expected",
    [
        # counting[0]: 3 black triangles, 2 black squares; choices 1..6
        (CNT, js("3 triangles and 2 squares, so 3", "3"), 1.0),  # counts ok, ok; conclusion {3} ok
        (CNT, js("five triangles", "3"), 0.0),  # 5 != 3; conclusion names {5}, answer 3 not in it
        (CNT, js("3 black triangles, 2 red squares", "2"), 2 / 3),  # 0 red squares; conclusion {3, 2} holds 2
        (CNT, js("3 triangles, so the answer is 4", "3"), 0.5),  # count ok; after "answer": {4}, not 3
        (CNT, js("5 objects in all", "5"), 1.0),  # 5 objects ok; conclusion {5} ok
        (CNT, js("I think carefully", "3"), 1.0),  # nothing checkable
        # colours[0]: blue triangle, purple square; choices = colour names
        (COL, js("the square is purple and the triangle is blue", "blue"), 1.0),  # 2 pairs ok; {purple, blue} holds blue
        (COL, js("the square is blue", "blue"), 0.5),  # square is purple: wrong; conclusion ok
        (COL, js("square red, so red", "blue"), 0.0),  # wrong pair; after "so": {red}, not blue
        (COL, js("a yellow circle", "blue"), 0.0),  # no yellow circle; conclusion {yellow} lacks blue
        # digits[0]: digit 8; choices 0..9
        (DIG, js("digit 8", "8"), 1.0),  # digit 8 ok; conclusion ok
        (DIG, js("I see 1 digit, it is 3", "8"), 1 / 3),  # 1 digit ok; 3 not shown; {1, 3} lacks 8
        (DIG, js("it is 3, so 8", "8"), 2 / 3),  # 3 wrong, 8 ok; after "so": {8} ok -> 1 - 1/3
        (DIG, js("I see 1: 8 middle; so digit 8", "8"), 1.0),  # 1 object ok, 8 shown, conclusion 8 ok
        (DIG, js("I see 2: 8 middle; so digit 8", "8"), 2 / 3),  # the scene has 1 object, not 2
    ],
)
def test_contradiction(record, reply, expected):
    assert contradiction(reply, record) == pytest.approx(expected)


def test_contradiction_uses_count_facts_without_objects_and_skips_invalid_answers():
    rec = {"question": "How many circles?", "answers": ["2"], "facts": {"count": 2, "target": "circle"}}
    assert contradiction(js("3 circles", "3"), rec) == 0.0  # 3 != 2; no choices, no conclusion check
    assert contradiction(js("2 circles", "2"), rec) == 1.0
    assert contradiction(js("4 squares", "4"), rec) == 1.0  # not the target: uncheckable
    # An invalid answer (a list) cannot disagree with the thoughts.
    assert contradiction(json.dumps({"thoughts": "so red", "answer": ["blue"]}), COL) == 1.0


def test_correctness():
    assert correctness(js("x", "Blue"), COL) == 1.0
    assert correctness(js("x", "red"), COL) == 0.0
    assert correctness(json.dumps({"thoughts": "x", "answer": ["blue"]}), COL) == 0.0
    assert correctness(js("x", "three"), CNT) == 1.0  # VQA normalisation


# -------------------------------------------------------- score_reply ---
def test_score_reply_total_and_weights():
    s = score_reply(js("the triangle is red", "red"), COL, {"mentions": 1, "contradiction": 3})
    # mentions 0.375, structure 1.0, contradiction 0.5 (red triangle wrong, conclusion ok), correctness 0
    assert s == pytest.approx({"mentions": 0.375, "structure": 1.0, "contradiction": 0.5, "correctness": 0.0,
                               "total": (0.375 + 3 * 0.5) / 4})  # fmt: skip
    assert set(s) == set(SCORERS) | {"total"}
    with pytest.raises(ConfigError, match=r"'mention'.*did you mean: mentions.*valid: mentions, structure"):
        score_reply("x", COL, {"mention": 1})
    for bad in ({"structure": -1}, {"structure": 0}, {}, {"structure": "1"}):
        with pytest.raises(ConfigError):
            score_reply("x", COL, bad)


# -------------------------------------------------------------- pairs ---
# Under {"structure": 1} the totals are the structure scores.
A = js("the triangle is blue", "blue")  # 1.0
B = json.dumps({"answer": "blue", "thoughts": "the triangle is blue"})  # 0.8
F = js("the triangle is coloured", "blue")  # 0.8, ties with B
C = 'the triangle is blue. "answer": "blue"'  # 0.5
D = "blue"  # 0.1
GROUP = {"record_id": COL["id"], "record": COL, "replies": [C, A, B, D, A, F]}  # A twice
W = {"structure": 1.0}


def _names(pairs):
    names = {A: "A", B: "B", C: "C", D: "D", F: "F"}
    return sorted(names[p["chosen"]] + names[p["rejected"]] for p in pairs)


def test_build_pairs_strategies():
    # Levels: [A] 1.0 > [B, F] 0.8 > [C] 0.5 > [D] 0.1; B-F tie and A-A duplicate never pair.
    assert _names(build_pairs([GROUP], W)) == ["AB", "AC", "AD", "AF", "BC", "BD", "CD", "FC", "FD"]
    assert _names(build_pairs([GROUP], W, strategy="adjacent")) == ["AB", "AF", "BC", "CD", "FC"]
    (bw,) = build_pairs([GROUP], W, strategy="best_worst")
    assert (bw["chosen"], bw["rejected"], bw["record_id"]) == (A, D, "colours/train/0/0")
    assert bw["margin"] == pytest.approx(0.9) and bw["question"] == COL["question"]
    assert bw["scores_chosen"]["structure"] == 1.0 and bw["scores_rejected"]["total"] == pytest.approx(0.1)
    assert "image" not in bw and set(bw) == set(PAIR_KEYS)
    # Margins: A-C 0.5, A-D 0.9, B/F-D 0.7, C-D 0.4 reach 0.35; A-B 0.2, B-C 0.3 do not.
    assert _names(build_pairs([GROUP], W, min_margin=0.35)) == ["AC", "AD", "BD", "CD", "FD"]
    # 1.0 - 0.8 is 0.19999999999999996 in floats: still meets a 0.2 margin.
    assert "AB" in _names(build_pairs([GROUP], W, min_margin=0.2))


def test_build_pairs_ties_duplicates_and_errors():
    tie = {"record_id": "r", "record": COL, "replies": [B, F]}
    dup = {"record_id": "r", "record": COL, "replies": [A, A, A]}
    assert build_pairs([tie, dup], W) == []
    assert build_pairs([tie, dup], W, min_margin=0.0) == []
    assert len(build_pairs(iter([GROUP, GROUP]), W, strategy="best_worst")) == 2  # any iterable
    with pytest.raises(ConfigError, match="did you mean: best_worst"):
        build_pairs([GROUP], W, strategy="best-worst")
    with pytest.raises(ConfigError, match="min_margin"):
        build_pairs([GROUP], W, min_margin=-0.1)
    with pytest.raises(DataError, match="group 0: missing key 'replies'"):
        build_pairs([{"record_id": "r", "record": COL}], W)


# -------------------------------------------------------- persistence ---
def test_jsonl_round_trip_and_atomic_write(tmp_path):
    pairs = build_pairs([GROUP], W)
    path = write_pairs_jsonl(pairs, tmp_path / "sub" / "pairs.jsonl")
    assert read_pairs_jsonl(path) == pairs
    assert [p.name for p in path.parent.iterdir()] == ["pairs.jsonl"]  # no temp file left
    with pytest.raises(DataError, match="pair 1: missing key 'margin'"):
        write_pairs_jsonl([pairs[0], {k: v for k, v in pairs[1].items() if k != "margin"}], path)
    assert read_pairs_jsonl(path) == pairs  # the failed write left the old file whole
    assert [p.name for p in path.parent.iterdir()] == ["pairs.jsonl"]


def test_read_pairs_jsonl_names_the_bad_line(tmp_path):
    good = build_pairs([GROUP], W, strategy="best_worst")[0]
    bad = {k: v for k, v in good.items() if k != "rejected"}
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=r"p\.jsonl:3: missing key 'rejected'"):
        read_pairs_jsonl(path)
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"p\.jsonl:2: not valid JSON"):
        read_pairs_jsonl(path)
    with pytest.raises(DataError, match="no such pairs file"):
        read_pairs_jsonl(tmp_path / "missing.jsonl")


def test_pairs_to_dataset():
    pairs = build_pairs([GROUP], W)
    ds = pairs_to_dataset(pairs)
    assert len(ds) == 9 and set(PAIR_KEYS) <= set(ds.column_names)
    assert ds[0]["chosen"] == pairs[0]["chosen"] and ds[0]["scores_chosen"]["structure"] == pairs[0]["scores_chosen"]["structure"]
    assert set(pairs_to_dataset([]).column_names) == set(PAIR_KEYS)


# ----------------------------------------------------------- records ---
def test_resolve_record_round_trip():
    rec = make_task("digits", "train", seed=0, image_size=56)[17]
    assert rec["id"] == "digits/train/0/17"
    back = resolve_record(rec["id"], 56)
    assert back["id"] == rec["id"] and back["answers"] == rec["answers"] and back["facts"] == rec["facts"]
    assert np.array_equal(np.asarray(back["image"]), np.asarray(rec["image"]))
    assert resolve_record("colours/validation/3/5", 56)["id"] == "colours/validation/3/5"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("digits/train/0", "4 parts"),
        ("digits/train//1", "4 parts"),
        ("digits/train/x/1", "integers"),
        ("digits/train/0/-1", "integers"),
        ("digits/dev/0/1", "split 'dev'"),
        ("digitz/train/0/1", "did you mean: digits"),
    ],
)
def test_resolve_record_bad_id(bad, message):
    with pytest.raises(DataError, match=message):
        resolve_record(bad, 56)


def test_split_pairs_keeps_records_together_and_is_deterministic():
    pairs = [{"record_id": f"r{i % 10}", "k": i} for i in range(40)]  # 10 ids, 4 pairs each
    train, held = split_pairs(pairs, 0.2, seed=0)
    train_ids, held_ids = {p["record_id"] for p in train}, {p["record_id"] for p in held}
    assert len(held_ids) == 2 and len(train_ids) == 8 and not train_ids & held_ids
    assert len(held) == 8 and sorted(p["k"] for p in train + held) == list(range(40))
    assert [p["k"] for p in train] == sorted(p["k"] for p in train)  # order kept
    assert split_pairs(pairs, 0.2, seed=0) == (train, held)
    seeds = {frozenset(p["record_id"] for p in split_pairs(pairs, 0.2, seed=s)[1]) for s in range(5)}
    assert len(seeds) > 1  # the seed matters
    assert split_pairs(pairs, 0.0) == (pairs, [])
    assert len({p["record_id"] for p in split_pairs(pairs[:2], 0.01)[1]}) == 1  # at least one id held out
    with pytest.raises(ConfigError):
        split_pairs(pairs, 1.5)
