"""RLHF pieces: heuristic reward components (values by hand), the reward-model
component scored in one batched call over a real rollout, the observation text
the collector keeps, preference collection (scripted policy: exact pairs and
summary; tiny VLM through the CLI), and the rlhf preset's validation.

Records: digits/train/0/i shows one black digit; answers of i = 0..3 are 8, 3, 2, 2.
Replies used for hand values, for a record showing digit d and a wrong digit w:
  good  {"thoughts": "I see the digit d", "answer": "d"}
        mentions 1 (said {d} ⊆ scene, covers the answer), structure 10/10,
        contradiction 1 (d shown; concludes with the answer)
  wrong {"thoughts": "I see the digit w", "answer": "w"}
        mentions 0 (w is not in the scene), structure 1, contradiction 1 − 1/2
        (w not shown; the conclusion names its own answer)
  bare  "blah": mentions 0, structure 1/10 (non-empty only), contradiction 1 (nothing to check)
"""

import json
import math
from types import SimpleNamespace

import gymnasium as gym
import pytest
import torch

from rlvlm.cli import main
from rlvlm.config import load_config
from rlvlm.errors import ConfigError, RlvlmError
from rlvlm.models.policy import SamplingConfig, load_policy
from rlvlm.models.reward_model import build_reward_model
from rlvlm.rewards import CompositeReward
from rlvlm.train.preferences import PreferenceConfig, collect_preferences, summary_path
from rlvlm.rewards.preferences import read_pairs_jsonl, resolve_record, score_reply
from rlvlm.rewards.rlhf import floor_invalid_scores, heuristic, reward_model
from rlvlm.rollout.collector import Collector
from rlvlm.train.config import TrainConfig
from rlvlm.train.reward_model import pair_observations

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
IMAGE_SIZE = 56
TRAIN = {"mentions": 1.0, "structure": 1.0}


def js(thoughts, answer):
    return json.dumps({"thoughts": thoughts, "answer": answer})


def good(d):
    return js(f"I see the digit {d}", str(d))


def wrong(d):
    w = (int(d) + 1) % 10
    return js(f"I see the digit {w}", str(w))


def info_of(record_id):
    """A VisualQA-like step info for a procedural record."""
    r = resolve_record(record_id, IMAGE_SIZE)
    return {"id": record_id, "question": r["question"], "answers": r["answers"], "facts": r["facts"],
            "choices": r["choices"]}


@pytest.fixture(scope="module")
def rm_dir(idefics3_dir, tmp_path_factory):
    """A saved mlp reward model with random head weights (so replies score differently)."""
    model = build_reward_model("mlp", idefics3_dir, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return str(model.save(tmp_path_factory.mktemp("rm") / "model"))


# ------------------------------------------------------------ heuristic ---
def test_heuristic_components_by_hand():
    info = info_of("digits/train/0/0")  # digit 8
    train, held = heuristic(TRAIN), heuristic({"contradiction": 1})
    s = SimpleNamespace
    assert train(s(text=good(8)), info) == 1.0 and held(s(text=good(8)), info) == 1.0
    assert train(s(text=wrong(8)), info) == 0.5 and held(s(text=wrong(8)), info) == 0.5  # (0 + 1) / 2; 1 − 1/2
    assert train(s(text="blah"), info) == pytest.approx(0.05) and held(s(text="blah"), info) == 1.0
    weighted = heuristic({"mentions": 3, "correctness": 1})  # (3·0 + 1·0) / 4 and (3·1 + 1·1) / 4
    assert weighted(s(text=wrong(8)), info) == 0.0 and weighted(s(text=good(8)), info) == 1.0
    record = resolve_record("digits/train/0/0", IMAGE_SIZE)
    assert train(s(text=wrong(8)), info) == score_reply(wrong(8), record, TRAIN)["total"]
    # Not a QA step, or an ask-for-help step: nothing to score.
    assert train(s(text=good(8)), {"answers": ["8"]}) is None
    assert train(s(text=good(8)), {**info, "help_action": "ask"}) is None


def test_heuristic_names_log_side_by_side_and_errors_name_the_option():
    options = {"heuristic_train": {"scorers": TRAIN}, "heuristic_heldout": {"scorers": {"contradiction": 1}}}
    reward = CompositeReward({"heuristic_train": 0.0, "heuristic_heldout": 0.0, "accuracy": 1.0}, options)
    steps = [SimpleNamespace(sample=SimpleNamespace(text=t), info={**info_of("digits/train/0/0"), "prediction": a},
                             reward=0.0) for t, a in ((good(8), "8"), (wrong(8), "9"))]
    totals, m = reward.score(steps)
    assert totals == [1.0, 0.0]  # only accuracy has weight
    assert m["reward/heuristic_train"] == 0.75 and m["reward/heuristic_heldout"] == 0.75 and m["reward/accuracy"] == 0.5
    with pytest.raises(ConfigError, match=r"^reward.options.heuristic_heldout.scorers: unknown scorer 'mentionz'"):
        CompositeReward({"heuristic_heldout": 0.0}, {"heuristic_heldout": {"scorers": {"mentionz": 1}}})
    with pytest.raises(ConfigError, match=r"^reward.options.heuristic_train.scorers is not set"):
        CompositeReward({"heuristic_train": 0.0})


# --------------------------------------------------------- reward model ---
def test_reward_model_component_scores_a_rollout_in_one_batched_call(idefics3_dir, rm_dir):
    import rlvlm.envs  # noqa: F401

    policy = load_policy(idefics3_dir, value_head=False, reference="none")
    envs = [gym.make("rlvlm/VisualQA-v0", task="digits", image_size=IMAGE_SIZE) for _ in range(5)]
    rollout = Collector(envs, policy, SamplingConfig(temperature=1.0, max_new_tokens=12), seed=3,
                        need_values=False).collect_episodes()
    trs = rollout.transitions
    assert len(trs) == 5
    for tr in trs:  # the collector keeps the env's raw text; the sample keeps the image it saw
        obs = pair_observations([tr.info["id"]], IMAGE_SIZE)[tr.info["id"]]
        assert tr.sample.meta["obs_text"] == obs["text"] and (tr.sample.image == obs["image"]).all()

    reward = CompositeReward({"reward_model": 1.0, "accuracy": 0.0}, {"reward_model": {"path": rm_dir}})
    fn = reward.functions["reward_model"]
    calls = []
    score = fn.model.score
    fn.model.score = lambda o, a: calls.append(len(a)) or score(o, a)
    totals, metrics = reward.score(trs)
    assert calls == [5]  # one call for the whole rollout
    one_by_one = [fn(tr.sample, tr.info) for tr in trs]
    assert totals == pytest.approx(one_by_one, abs=1e-5)
    assert len(set(round(t, 6) for t in totals)) > 1  # a random head tells replies apart
    assert metrics["reward/reward_model"] == pytest.approx(sum(one_by_one) / 5, abs=1e-5)
    # Same as scoring the env's observation, rebuilt from the record id.
    obs = pair_observations([tr.info["id"] for tr in trs], IMAGE_SIZE)
    with torch.no_grad():
        direct = fn.model.score([obs[tr.info["id"]] for tr in trs], [tr.sample.text for tr in trs])
    assert totals == pytest.approx(direct.tolist(), abs=1e-5)
    with pytest.raises(RlvlmError, match=r"samples\[0\] has no meta\['obs_text'\]"):
        fn.score_batch([SimpleNamespace(text="x", image=None, meta={})], [{}])


def test_floor_invalid_scores_by_hand():
    # valid (2, 4, 6): mean 4, population std sqrt(8/3) = 1.633; the broken reply's 50 becomes 2 - 1.633
    assert floor_invalid_scores([2.0, 4.0, 6.0, 50.0], [True, True, True, False]) == pytest.approx(
        [2.0, 4.0, 6.0, 2.0 - (8 / 3) ** 0.5])
    assert floor_invalid_scores([5.0, 7.0], [True, True]) == [5.0, 7.0]
    assert floor_invalid_scores([5.0, -1.0], [True, False]) == [5.0, 5.0]  # one valid reply: std 0
    assert floor_invalid_scores([3.0, 1.0], [False, False]) == [1.0, 1.0]  # nothing to prefer among broken ones
    assert floor_invalid_scores([], []) == []
    with pytest.raises(ValueError, match="2 scores but 1 validity flags"):
        floor_invalid_scores([1.0, 2.0], [True])


def test_reward_model_floor_scores_broken_replies_below_every_parseable_one(idefics3_dir, rm_dir):
    import rlvlm.envs  # noqa: F401

    policy = load_policy(idefics3_dir, value_head=False, reference="none")
    envs = [gym.make("rlvlm/VisualQA-v0", task="digits", image_size=IMAGE_SIZE) for _ in range(4)]
    trs = Collector(envs, policy, SamplingConfig(temperature=1.0, max_new_tokens=12), seed=5,
                    need_values=False).collect_episodes().transitions
    infos = [{**tr.info, "action_valid": i != 0} for i, tr in enumerate(trs)]  # the first reply "broken"
    raw = reward_model(rm_dir).score_batch([tr.sample for tr in trs], infos)
    floored = reward_model(rm_dir, floor_invalid=True).score_batch([tr.sample for tr in trs], infos)
    ok = raw[1:]
    mean = sum(ok) / 3
    assert floored[1:] == pytest.approx(ok)
    assert floored[0] == pytest.approx(min(ok) - (sum((x - mean) ** 2 for x in ok) / 3) ** 0.5)
    assert floored[0] < min(ok)
    with pytest.raises(ConfigError, match="floor_invalid='yes' must be true or false"):
        reward_model(rm_dir, floor_invalid="yes")


def test_plain_callables_still_work_next_to_batched_ones():
    class Batched:
        def __init__(self):
            self.batches = []

        def __call__(self, sample, info):
            return self.score_batch([sample], [info])[0]

        def score_batch(self, samples, infos):
            self.batches.append(len(samples))
            return [len(s.text) if i.get("env_reward") else None for s, i in zip(samples, infos)]

    batched = Batched()
    reward = CompositeReward({"b": 2.0, "n": 1.0}, custom={"b": batched, "n": lambda s, i: 1.0})
    steps = [SimpleNamespace(sample=SimpleNamespace(text="ab"), info={}, reward=r) for r in (1.0, 0.0, 1.0)]
    totals, m = reward.score(steps)
    assert batched.batches == [3] and totals == [5.0, 1.0, 5.0]
    assert m["reward/b"] == 2.0 and m["reward/n"] == 1.0  # b did not apply to the step with env reward 0
    class Short(Batched):
        def score_batch(self, samples, infos):
            return [1.0]

    bad = CompositeReward({"b": 1.0}, custom={"b": Short()})
    with pytest.raises(RlvlmError, match="returned 1 values for 3 samples"):
        bad.score(steps)


def test_reward_model_option_errors(tmp_path):
    for opts, msg in (({}, "is not set"), ({"path": str(tmp_path / "nope")}, "does not exist"),
                      ({"path": str(tmp_path)}, "not a saved reward model"), ({"path": str(tmp_path), "bad": 1}, "")):
        with pytest.raises(ConfigError, match=rf"^reward.options.reward_model.(path|bad).*{msg}"):
            CompositeReward({"reward_model": 1.0}, {"reward_model": opts})
    with pytest.raises(ConfigError, match="train one with `rlvlm reward-model"):
        reward_model(str(tmp_path / "nope"))


def test_rlhf_preset_needs_a_reward_model_path(rm_dir):
    with pytest.raises(ConfigError, match=r"^reward.options.reward_model.path is not set; fix: train one"):
        load_config(TrainConfig, "rlhf")
    with pytest.raises(ConfigError, match=r"^reward.options.reward_model.path='/no/such/rm' does not exist"):
        load_config(TrainConfig, "rlhf", ["reward.options.reward_model.path=/no/such/rm"])
    cfg = load_config(TrainConfig, "rlhf", [f"reward.options.reward_model.path={rm_dir}"])
    assert cfg.algo.kl_coef > 0 and cfg.model.reference == "copy" and cfg.model.value_head
    assert cfg.eval.env_kwargs["split"] == "test" and set(cfg.reward.weights) == {
        "reward_model", "heuristic_train", "heuristic_heldout", "accuracy"}
    assert load_config(TrainConfig, "rlhf", ["updates=0"]).updates == 0  # the warm-start step needs no RM


# ------------------------------------------------------- preferences ---
class ScriptedPolicy:
    """Answers each prompt with [good, wrong, bare] (knows the records by call order)."""

    def __init__(self, ids):
        self.ids, self.calls = list(ids), []

    def sample(self, observations, sampling):
        self.calls.append((len(observations), sampling.n, sampling.temperature))
        out = []
        for _ in observations:
            d = resolve_record(self.ids.pop(0), IMAGE_SIZE)["answers"][0]
            out += [SimpleNamespace(text=t) for t in (good(d), wrong(d), "blah", good(d))[:sampling.n]]
        return out


def test_collect_preferences_pairs_and_summary_by_hand():
    ids = [f"digits/train/0/{i}" for i in range(5)]
    policy = ScriptedPolicy(ids)
    lines = []
    pairs, summary = collect_preferences(policy, task="digits", n_prompts=5, k=4, weights=TRAIN, image_size=IMAGE_SIZE,
                                         temperature=0.7, min_margin=0.5, batch_size=2, progress=lines.append)
    assert policy.calls == [(2, 4, 0.7), (2, 4, 0.7), (1, 4, 0.7)] and len(lines) == 3
    # Totals: good 1, wrong 0.5, bare 0.05; the duplicate good is dropped; wrong > bare (0.45) is below 0.5.
    assert len(pairs) == 10 and [p["record_id"] for p in pairs[:2]] == ["digits/train/0/0"] * 2
    assert sorted(round(p["margin"], 6) for p in pairs[:2]) == [0.5, 0.95]
    assert all(p["margin"] >= 0.5 - 1e-9 and p["chosen"] == good(resolve_record(p["record_id"], 56)["answers"][0])
               for p in pairs)
    assert summary["prompts"] == 5 and summary["replies"] == 20 and summary["distinct_replies_per_prompt"] == 3
    assert summary["pairs"] == 10 and summary["pairs_per_prompt"] == 2 and summary["prompts_with_pairs"] == 5
    assert summary["mean_margin"] == pytest.approx(0.725)
    assert summary["reply_accuracy"] == 0.5 and summary["chosen_correct"] == 1 and summary["rejected_correct"] == 0
    # contradiction: good 1 vs wrong 0.5 (chosen wins), good 1 vs bare 1 (tie, ½)
    assert summary["agreement"] == {"mentions": 1.0, "structure": 0.75, "contradiction": 0.75, "correctness": 1.0}


def test_preferences_command_with_a_tiny_vlm(idefics3_dir, tmp_path, capsys):
    out = tmp_path / "prefs" / "pairs.jsonl"
    rc = main(["preferences", f"policy={idefics3_dir}", "n_prompts=8", "k=3", "weights.contradiction=1",
               "max_new_tokens=12", "batch_size=4", f"out={out}"])
    assert rc == 0
    pairs = read_pairs_jsonl(out)
    summary = json.loads(summary_path(out).read_text())
    assert summary_path(out).name == "pairs.summary.json" and summary["pairs"] == len(pairs) > 0
    assert summary["replies"] == 24 and summary["agreement"]["contradiction"] == 1.0
    assert all(p["record_id"].startswith("digits/train/0/") and p["margin"] >= 0.05 for p in pairs)
    assert "[prefs] 8/8 prompts" in capsys.readouterr().out


@pytest.mark.parametrize("override,field", [("k=1", "k"), ("temperature=0", "temperature"), ("split=dev", "split"),
                                            ("strategy=best", "strategy"), ("weights.bogus=1", "weights")])
def test_preference_config_errors_name_the_field(override, field):
    extra = [] if field == "weights" else ["weights.mentions=1"]
    with pytest.raises(ConfigError, match=rf"^{field}"):
        load_config(PreferenceConfig, None, [override, *extra])


def test_preference_config_needs_explicit_training_weights():
    with pytest.raises(ConfigError, match=r"^weights is empty; fix: .*weights.mentions=1"):
        load_config(PreferenceConfig, None, [])
    cfg = load_config(PreferenceConfig, None, ["weights.mentions=1", "weights.structure=1"])
    assert cfg.weights == TRAIN and cfg.k == 4 and math.isfinite(cfg.min_margin)
