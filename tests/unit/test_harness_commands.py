"""Every `rlvlm train` command of the results harnesses resolves to a config that passes validation.

A harness row whose command fails at start (a config trap added later, a preset that moved under it)
would only show as a missing seed hours into a reproduction run; this checks them all in seconds.
Upstream artefacts (a reward model another row trains) do not exist here, so only that error is allowed.
"""

from __future__ import annotations

import pytest

from experiments import gym_cards, reward_experiments, rlhf_experiments
from rlvlm.config import load_config
from rlvlm.errors import ConfigError
from rlvlm.train.config import TrainConfig

UPSTREAM = "reward.options.reward_model.path="  # trained by an earlier row of the same harness


def _train_commands():
    for name, rows in (("gym-cards", gym_cards.RUNS), ("rewards", reward_experiments.runs()),
                       ("rlhf", rlhf_experiments.runs())):
        for row in rows:
            argv = row.seed_argv("runs/x", 0)
            if argv[:2] == ["rlvlm", "train"]:
                yield pytest.param(argv[2:], id=f"{name}:{row.key}")


@pytest.mark.parametrize("args", list(_train_commands()))
def test_harness_train_command_validates(args):
    preset, overrides = (args[0], args[1:]) if "=" not in args[0] else ("numberline", args)
    try:
        load_config(TrainConfig, preset, overrides)
    except ConfigError as err:
        if not str(err).startswith(UPSTREAM):
            raise
