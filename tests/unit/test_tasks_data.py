"""Procedural QA tasks, answer scoring, record checks, the HF loader, VisualQA."""

import importlib.util
import sys

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image

import rlvlm  # noqa: F401
from rlvlm.errors import ConfigError, DataError
from rlvlm.tasks import (
    COLOURS,
    TASKS,
    load_hf_vqa,
    make_task,
    normalize_answer,
    to_image_array,
    validate_record,
    vqa_accuracy,
)

SIZE = 64


# ----------------------------------------------------------------- answers ---
@pytest.mark.parametrize(
    "raw, norm",
    [
        ("Two", "2"), ("two dogs.", "2 dogs"), ("The Red one", "red 1"), ("an apple", "apple"),
        ("Yes!", "yes"), ("  YES  ", "yes"), ("don't", "dont"), ("1,000", "1000"), ("2.5", "2.5"),
        ("U.S.A.", "usa"), ("t-shirt", "t shirt"), ("none", "0"), ("ten", "10"), ("left,", "left"),
    ],
)  # fmt: skip
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_vqa_soft_and_exact_accuracy_hand_values():
    answers = ["2", "two", "2", "3", "Two", "4", "2", "2", "3", "2"]
    assert vqa_accuracy("2", answers) == 1.0  # 7 matches, capped
    assert vqa_accuracy("3", answers) == pytest.approx(2 / 3)
    assert vqa_accuracy("4", answers) == pytest.approx(1 / 3)
    assert vqa_accuracy("5", answers) == 0.0
    assert vqa_accuracy("three", ["3"], "exact") == 1.0
    assert vqa_accuracy("3", ["3"], "soft") == pytest.approx(1 / 3)
    assert vqa_accuracy(None, ["3"]) == 0.0
    assert vqa_accuracy("A", ["a", "b"], "exact") == 1.0  # article-only answers still compare
    with pytest.raises(ValueError):
        vqa_accuracy("3", ["3"], "fuzzy")


# -------------------------------------------------------------- procedural ---
@pytest.mark.parametrize("name", TASKS)
def test_records_are_valid_reproducible_and_split(name):
    train = make_task(name, "train", seed=0, image_size=SIZE)
    again = make_task(name, "train", seed=0, image_size=SIZE)
    test = make_task(name, "test", seed=0, image_size=SIZE)
    for i in range(10):
        r = validate_record(train[i])
        assert r["image"].shape == (SIZE, SIZE, 3)
        assert r["answers"][0] in r["choices"] and r["rationale"]
        assert r["facts"]["boxes"] and r["facts"]["answer_attr"]
        assert r["image"].tobytes() == again[i]["image"].tobytes() and r["question"] == again[i]["question"]
    assert [train[i]["image"].tobytes() for i in range(10)] != [test[i]["image"].tobytes() for i in range(10)]
    assert make_task(name, seed=1, image_size=SIZE)[0]["id"] != train[0]["id"]


def test_counting_answer_matches_the_scene():
    for r in make_task("counting", image_size=SIZE)[:50]:
        target = r["facts"]["target"]
        assert int(r["answers"][0]) == sum(o["shape"] == target for o in r["facts"]["objects"]) == len(r["facts"]["boxes"])
        assert target in r["question"]


def test_colour_answer_is_drawn_in_the_object_box():
    for r in make_task("colours", image_size=SIZE)[:30]:
        x0, y0, x1, y1 = r["facts"]["boxes"][0]
        cx, cy = int((x0 + x1) / 2 * SIZE), int((y0 + y1) / 2 * SIZE + 0.1 * (y1 - y0) * SIZE)
        assert tuple(r["image"][cy, cx]) == COLOURS[r["answers"][0]]


def test_spatial_answers_follow_the_geometry():
    seen = set()
    for r in make_task("spatial", image_size=SIZE)[:200]:
        kind, objs, ans = r["facts"]["question_type"], r["facts"]["objects"], r["answers"][0]
        seen.add(kind)
        by_colour = {o["colour"]: o for o in objs}
        ref = by_colour[r["question"].split(" the ")[1].split()[0]] if kind != "closest" and kind != "farthest" else None
        if kind == "side":
            assert ans == ("left" if ref["center"][0] < 0.5 else "right")
        elif kind == "shape":
            assert ans == ref["shape"]
        elif kind == "left_of":
            other = by_colour[r["question"].split(" the ")[2].split()[0]]
            assert ans == ("yes" if ref["center"][0] < other["center"][0] else "no")
        else:
            ref = by_colour[r["question"].split(" the ")[-1].split()[0]]
            d = {o["colour"]: np.hypot(o["center"][0] - ref["center"][0], o["center"][1] - ref["center"][1]) for o in objs if o is not ref}
            assert ans == (min(d, key=d.get) if kind == "closest" else max(d, key=d.get))
    assert seen == {"shape", "side", "closest", "farthest", "left_of"}


def test_digit_is_drawn_inside_its_box():
    for r in make_task("digits", image_size=SIZE)[:20]:
        x0, y0, x1, y1 = (int(v * SIZE) for v in r["facts"]["boxes"][0])
        ink = r["image"].min(axis=-1) < 128
        assert ink.any() and not ink[:, : max(0, x0 - 1)].any() and not ink[: max(0, y0 - 1)].any()


def test_bad_task_arguments():
    with pytest.raises(ConfigError, match="did you mean"):
        make_task("countin")
    with pytest.raises(ConfigError):
        make_task("digits", split="dev")
    assert make_task("colors").task == "colours"
    with pytest.raises(IndexError):
        make_task("digits", size=3)[3]


# ----------------------------------------------------------------- records ---
def test_images_are_coerced(tmp_path):
    gray = np.full((10, 12), 7, np.uint8)
    assert to_image_array(gray).shape == (10, 12, 3)
    assert to_image_array(np.zeros((5, 5, 4), np.uint8)).shape == (5, 5, 3)
    assert to_image_array(Image.new("L", (9, 9)), size=16).shape == (16, 16, 3)
    path = tmp_path / "x.png"
    Image.new("RGB", (20, 10), (1, 2, 3)).save(path)
    assert tuple(to_image_array(str(path))[0, 0]) == (1, 2, 3)
    assert to_image_array({"bytes": path.read_bytes()}).shape == (10, 20, 3)


@pytest.mark.parametrize(
    "record, field",
    [
        ({"question": "q", "answers": ["a"]}, "image"),
        ({"image": np.zeros((4, 4, 3), np.uint8), "answers": ["a"]}, "question"),
        ({"image": np.zeros((4, 4, 3), np.uint8), "question": "q"}, "answers"),
        ({"image": np.zeros((4, 4, 3), np.uint8), "question": "q", "answers": []}, "answers"),
        ({"image": np.zeros((4, 4, 3), np.uint8), "question": "q", "answers": [3]}, "answers"),
        ({"image": np.zeros((4, 4, 3), np.uint8), "question": " ", "answers": ["a"]}, "question"),
        ({"image": np.zeros((4, 4, 3), np.float32), "question": "q", "answers": ["a"]}, "image"),
        ({"image": np.zeros((4, 4, 2), np.uint8), "question": "q", "answers": ["a"]}, "image"),
        ({"image": "/no/such/file.png", "question": "q", "answers": ["a"]}, "image"),
        ({"image": 42, "question": "q", "answers": ["a"]}, "image"),
        ({"image": np.zeros((4, 4, 3), np.uint8), "question": "q", "answers": ["a"], "facts": [1]}, "facts"),
    ],
)
def test_bad_records_give_one_line_errors_naming_field_and_fix(record, field):
    with pytest.raises(DataError) as err:
        validate_record(record, "record 7")
    msg = str(err.value)
    assert "\n" not in msg and f"'{field}'" in msg and "fix:" in msg and "record 7" in msg


def test_visual_qa_over_custom_records():
    records = [
        {"image": np.zeros((20, 30, 3), np.uint8), "question": "What is it?", "answers": ["cat"] * 3 + ["dog"], "facts": {"n": 1}},
        {"image": Image.new("RGB", (8, 8)), "question": "How many?", "answers": "two"},
    ]
    env = gym.make("rlvlm/VisualQA-v0", records=records, image_size=32)
    obs, info = env.reset(options={"index": 0})
    assert obs["image"].shape == (32, 32, 3) and "What is it?" in obs["text"] and info["facts"] == {"n": 1}
    _, r, term, trunc, info = env.step('{"thoughts": "fur", "answer": "The cat."}')
    assert (r, term, trunc, info["correct"], info["prediction"]) == (1.0, True, False, True, "the cat.")
    env.reset(options={"index": 1})
    _, r, _, _, info = env.step('{"answer": "2"}')
    assert r == 1.0
    env.reset(options={"index": 1})
    _, r, term, _, info = env.step("{not json")
    assert (r, term, info["action_valid"], info["accuracy"], info["correct"]) == (0.0, True, False, 0.0, False)


def test_visual_qa_rejects_bad_datasets_at_construction():
    with pytest.raises(DataError, match="'answers'"):
        gym.make("rlvlm/VisualQA-v0", records=[{"image": np.zeros((4, 4, 3), np.uint8), "question": "q"}])
    with pytest.raises(DataError, match="empty"):
        gym.make("rlvlm/VisualQA-v0", records=[])
    with pytest.raises(DataError, match="not a sequence"):
        gym.make("rlvlm/VisualQA-v0", records=42)
    env = gym.make("rlvlm/VisualQA-v0", image_size=32)
    with pytest.raises(DataError, match="index"):
        env.reset(options={"index": -1})


def test_visual_qa_draws_records_by_seed_from_the_chosen_split():
    a = gym.make("rlvlm/VisualQA-v0", task="digits", split="test", image_size=32)
    b = gym.make("rlvlm/VisualQA-v0", task="digits", split="test", image_size=32)
    assert a.reset(seed=5)[1]["id"] == b.reset(seed=5)[1]["id"]
    assert a.reset(seed=5)[1]["id"].startswith("digits/test/")


# -------------------------------------------------------------- HF loader ---
class FakeDataset:
    """The slice of the `datasets.Dataset` interface the loader uses."""

    def __init__(self, rows):
        self.rows = rows
        self.column_names = list(rows[0])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def _rows():
    img = Image.new("RGB", (12, 12), (255, 0, 0))
    return [
        {"img": img, "q": "What color?", "ans": [{"answer": "red", "answer_confidence": "yes"}] * 3, "extra": 1},
        {"img": img, "q": "Is it red?", "ans": {"answer": ["yes", "yes", "no"]}, "extra": 2},
    ]


def test_hf_loader_maps_columns_and_answer_formats():
    ds = load_hf_vqa(FakeDataset(_rows()), columns={"image": "img", "question": "q", "answers": "ans"})
    assert len(ds) == 2 and ds[0]["answers"] == ["red"] * 3 and ds[1]["answers"] == ["yes", "yes", "no"]
    env = gym.make("rlvlm/VisualQA-v0", records=ds, scoring="soft", image_size=32)
    env.reset(options={"index": 1})
    assert env.step('{"answer": "no"}')[1] == pytest.approx(1 / 3)
    assert len(load_hf_vqa(FakeDataset(_rows()), columns={"image": "img", "question": "q", "answers": "ans"}, limit=1)) == 1


def test_hf_loader_errors():
    with pytest.raises(DataError, match="no column 'image'.*columns=") as err:
        load_hf_vqa(FakeDataset(_rows()))
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="split"):
        load_hf_vqa({"train": FakeDataset(_rows())})
    assert len(load_hf_vqa({"train": FakeDataset(_rows())}, split="train", columns={"image": "img", "question": "q", "answers": "ans"})) == 2
    with pytest.raises(ConfigError):
        load_hf_vqa(FakeDataset(_rows()), columns={"picture": "img"})


def test_hf_loader_by_name_needs_datasets(monkeypatch):
    from rlvlm.errors import OptionalDependencyError

    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed: `import datasets` raises

    with pytest.raises(OptionalDependencyError, match="pip install datasets"):
        load_hf_vqa("HuggingFaceM4/VQAv2", split="validation")


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="datasets not installed")
def test_hf_loader_on_a_real_local_dataset():
    import datasets

    img = Image.new("RGB", (16, 16), (0, 0, 255))
    ds = datasets.Dataset.from_dict(
        {"image": [img, img], "question": ["What color?", "Shape?"], "answers": [["blue"] * 3, ["square", "box", "square"]]},
        features=datasets.Features({
            "image": datasets.Image(), "question": datasets.Value("string"), "answers": datasets.Sequence(datasets.Value("string")),
        }),
    )  # fmt: skip
    records = load_hf_vqa(ds)
    env = gym.make("rlvlm/VisualQA-v0", records=records, scoring="soft", image_size=32)
    env.reset(options={"index": 0})
    assert env.step('{"answer": "Blue"}')[1] == 1.0
    assert load_hf_vqa(datasets.DatasetDict({"val": ds}), split="val")[1]["answers"] == ["square", "box", "square"]
