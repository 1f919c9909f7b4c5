"""RLHF reward components: a trained reward model, and heuristic scorers as curves.

- `reward_model(path=DIR)`: r(image, question, reply) from a reward model
  saved by `rlvlm reward-model` (`RewardModel.save`). It scores a whole
  rollout in one call (`score_batch`), in chunks of `batch_size`, under
  no_grad; the model is loaded on first use, so building a config (which
  `TrainConfig.validate` does) only checks that the directory exists.
- `heuristic(scorers={mentions: 1, structure: 1})`: the simulated
  annotator's total, score_reply(reply, record, scorers)["total"] =
  Σ_s w_s · s(reply, record) / Σ_s w_s (rlvlm.rewards.preferences), with the
  record rebuilt from the VisualQA step info (question, answers, facts,
  choices). It is registered under three names, `heuristic`,
  `heuristic_train` and `heuristic_heldout`, so one run can log the
  heuristic that made the preferences next to a held-out one, each with its
  own `reward.options.<name>.scorers` (weight 0: logged, not optimised).

`reward_model(..., floor_invalid=true)` scores a reply the env could not
parse (info["action_valid"] false) below every parseable reply of its batch:
min(parseable scores) - std(parseable scores). The reward model learned from
pairs of the warm-start's replies, which parse, so its score on a broken reply
is extrapolation; unbounded, it is the easiest thing for RL to climb. Without
the floor, PPO on the rlhf preset (seed 1) found `:::::4"}`, which the reward
model scored at about 90 against 6-12 for a good reply, and accuracy fell from
0.632 to 0.109 (docs/results.md). The floor is relative to the batch, so it
needs no knowledge of the reward model's scale; `__call__` on one sample has
no batch to compare with and returns the raw score.

Where the reward model's observation comes from: the collector stores the
env's raw observation text on each sample (`sample.meta["obs_text"]`), and
the sample already holds the exact image it was sampled on. We do not
rebuild the observation from info["id"]: that re-renders the record (only
possible for procedural ids, with the right image size), would miss what
wrappers changed (a degraded image, a multi-turn prompt), and
`sample.prompt_text` cannot be used either, since it is already wrapped in
the policy's chat template while the reward model may be another model with
another template.

Like functions.py, this module imports no torch at import time.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path

from rlvlm.errors import ConfigError, RlvlmError
from rlvlm.models.reward_model import load_reward_model
from rlvlm.rewards.preferences import check_weights, score_reply

# info keys that score_reply reads from a record (VisualQA's info carries all of them).
RECORD_KEYS = ("question", "answers", "facts", "choices")
OBS_TEXT = "obs_text"  # Sample.meta key the collector fills with the env's raw observation text
_RM_CONFIG = "rlvlm_reward_model.json"  # written by RewardModel.save (kept in sync with models/reward_model.py)


# ------------------------------------------------------------ heuristic ---
def _check_scorers(scorers) -> dict[str, float]:

    try:
        return check_weights(scorers)
    except ConfigError as err:
        # check_weights names its argument "weights"; here the option is "scorers".
        msg = str(err)
        raise ConfigError("scorers" + msg[len("weights"):] if msg.startswith("weights") else msg) from None


def record_from_info(info: Mapping) -> dict:
    """The QA record score_reply needs, rebuilt from a VisualQA step info."""
    return {k: info.get(k) for k in RECORD_KEYS}


def heuristic(scorers: Mapping[str, float] | None = None):
    """The weighted heuristic total of the reply, in [0, 1] (module doc).

    None on steps that are not QA (no question / answers in info) and on
    ask-for-help steps, which answer nothing.
    """
    if scorers is None:
        raise ConfigError("scorers is not set; fix: e.g. scorers={mentions: 1, structure: 1} "
                          "(names: mentions, structure, contradiction, correctness)")
    weights = _check_scorers(dict(scorers) if isinstance(scorers, Mapping) else scorers)

    def heuristic_reward(sample, info) -> float | None:

        if "question" not in info or "answers" not in info or info.get("help_action") == "ask":
            return None
        return score_reply(sample.text, record_from_info(info), weights)["total"]

    heuristic_reward.scorers = weights  # what this component measures, for reports
    return heuristic_reward


# --------------------------------------------------------- reward model ---
def observation_of(sample, where: str = "sample") -> dict:
    """{"image", "text"}: the observation the sample was drawn from (see module doc)."""
    text = (getattr(sample, "meta", None) or {}).get(OBS_TEXT)
    if not isinstance(text, str):
        raise RlvlmError(f"{where} has no meta[{OBS_TEXT!r}] (the env's observation text); fix: collect samples "
                         f"with rlvlm.rollout.Collector, or set sample.meta[{OBS_TEXT!r}] to the observation text")
    return {"image": sample.image, "text": text}


def floor_invalid_scores(scores: Sequence[float], valid: Sequence[bool]) -> list[float]:
    """Each invalid reply's score replaced by min(valid) - std(valid) (population std; 0 for one
    valid reply); valid scores unchanged. With no valid reply every score becomes min(scores), so
    the batch carries no preference among broken replies.

    >>> floor_invalid_scores([1.0, 3.0, 90.0], [True, True, False])  # std of (1, 3) is 1
    [1.0, 3.0, 0.0]
    """
    if len(scores) != len(valid):
        raise ValueError(f"floor_invalid_scores: {len(scores)} scores but {len(valid)} validity flags")
    ok = [s for s, v in zip(scores, valid) if v]
    if not ok:
        return [min(scores)] * len(scores) if scores else []
    floor = min(ok) - statistics.pstdev(ok)
    return [s if v else floor for s, v in zip(scores, valid)]


class RewardModelReward:
    """`fn(sample, info)` and `score_batch(samples, infos)` backed by a saved reward model."""

    def __init__(self, path: str, device: str = "cpu", batch_size: int = 32, floor_invalid: bool = False):
        self.path, self.device, self.batch_size = path, device, batch_size
        self.floor_invalid = floor_invalid
        self._model = None

    @property
    def model(self):
        if self._model is None:  # lazy: validating a config must not load a VLM

            self._model = load_reward_model(self.path, device=self.device).eval()
        return self._model

    def score_batch(self, samples: Sequence, infos: Sequence[Mapping]) -> list[float]:
        """One reward per sample, r(observation, sample.text), batched over the whole list.

        A group of G samples on one image runs the reward model's VLM G
        times: it reads image, question and reply in one pass, so only a
        vision-feature cache (planned, DESIGN.md) could share the image part.
        """
        import torch

        if len(samples) != len(infos):
            raise ValueError(f"score_batch: {len(samples)} samples but {len(infos)} infos")
        obs = [observation_of(s, f"samples[{i}]") for i, s in enumerate(samples)]
        out: list[float] = []
        model = self.model
        with torch.no_grad():
            for start in range(0, len(obs), self.batch_size):
                stop = start + self.batch_size
                scores = model.score(obs[start:stop], [s.text for s in samples[start:stop]])
                out.extend(float(v) for v in scores.float().cpu())
        if self.floor_invalid:
            out = floor_invalid_scores(out, [bool(info.get("action_valid", True)) for info in infos])
        return out

    def __call__(self, sample, info) -> float:
        return self.score_batch([sample], [info])[0]

    def __repr__(self) -> str:
        return f"RewardModelReward({self.path!r})"


def reward_model(path: str = "", device: str = "cpu", batch_size: int = 32,
                 floor_invalid: bool = False) -> RewardModelReward:
    """The saved reward model at `path` as a reward component (module doc)."""
    fix = "fix: train one with `rlvlm reward-model pairs=PAIRS.jsonl output_dir=runs/rm` and pass path=runs/rm/model"
    if not isinstance(path, (str, Path)) or not str(path):
        raise ConfigError(f"path is not set; {fix}")
    if not Path(path).is_dir():
        raise ConfigError(f"path={str(path)!r} does not exist; {fix}")
    if not (Path(path) / _RM_CONFIG).is_file():
        raise ConfigError(f"path={str(path)!r} has no {_RM_CONFIG}, so it is not a saved reward model; {fix}")
    if not isinstance(device, str) or not device:
        raise ConfigError(f"device={device!r} must be a torch device string, e.g. cpu or cuda")
    if isinstance(batch_size, bool) or not isinstance(batch_size, Real) or int(batch_size) != batch_size \
            or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1; fix: e.g. batch_size=32")
    if not isinstance(floor_invalid, bool):
        raise ConfigError(f"floor_invalid={floor_invalid!r} must be true or false")
    return RewardModelReward(str(path), device, int(batch_size), floor_invalid)
