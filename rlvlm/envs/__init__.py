"""rlvlm.envs: visual environments whose actions are a model's raw text.

Importing this package registers, with gymnasium:
    rlvlm/NumberLine-v0, rlvlm/EZPoints-v0, rlvlm/Points24-v0,
    rlvlm/Blackjack-v0 (RL4VLM's gym-cards) and rlvlm/VisualQA-v0.
Any other gymnasium env with Discrete actions and rgb_array frames comes in
through `from_gymnasium` (env.id=gymnasium:<ID> in a config).
Observations are {"image": uint8 HxWx3, "text": prompt}; the action is the
completion text, parsed by the env (`parse_action`). See DESIGN.md.

No torch here: envs run in light worker processes.
"""

from rlvlm.envs.base import PROMPT_STYLES, AnyText, TextImageEnv
from rlvlm.envs.blackjack import BlackjackEnv, basic_strategy
from rlvlm.envs.degrade import MODES as DEGRADATION_MODES
from rlvlm.envs.formula import FormulaError, count_solvable, is_solvable, solve
from rlvlm.envs.formula import evaluate as evaluate_formula
from rlvlm.envs.frozenlake import action_values as frozenlake_action_values  # registers its profile
from rlvlm.envs.minigrid_profiles import plan as minigrid_plan  # registers MiniGrid-* (and minigrid's ids)
from rlvlm.envs.gym_adapter import GYM_PROFILES, GymnasiumEnv, GymProfile, from_gymnasium, register_gym_profile
from rlvlm.envs.numberline import NumberLineEnv
from rlvlm.envs.parsing import ParsedAction, action_char_span, parse_action
from rlvlm.envs.points import EZPointsEnv, Points24Env
from rlvlm.envs.pool import (
    ENV_BACKENDS, EnvPool, EnvWorkerError, InProcessPool, as_env_pool, env_pool_backend, make_env_pool,
    register_env_backend,
)
from rlvlm.envs.policies import POLICIES, OraclePolicy, RandomPolicy, TextPolicy, make_policy, oracle, random_policy
from rlvlm.envs.registration import ENV_IDS, register_envs
from rlvlm.envs.runner import collect_demos, evaluate_policy, format_summary, run_episode
from rlvlm.envs.vector import EnvFactory, make, make_env, unbatch_info, unbatch_obs
from rlvlm.envs.visual_qa import VisualQAEnv
from rlvlm.envs.wrappers import HELP_MODES, AskForHelp, MissingVisualInfo
from rlvlm.envs.workers import ProcessPool  # registers env.backend=processes
from rlvlm.envs.ray_pool import RayPool  # registers env.backend=ray (ray itself is imported on use)

register_envs()

__all__ = [
    "DEGRADATION_MODES",
    "GYM_PROFILES",
    "GymProfile",
    "GymnasiumEnv",
    "from_gymnasium",
    "frozenlake_action_values",
    "minigrid_plan",
    "register_gym_profile",
    "ENV_BACKENDS",
    "ENV_IDS",
    "HELP_MODES",
    "POLICIES",
    "PROMPT_STYLES",
    "AnyText",
    "AskForHelp",
    "BlackjackEnv",
    "EnvFactory",
    "EnvPool",
    "EnvWorkerError",
    "EZPointsEnv",
    "FormulaError",
    "InProcessPool",
    "MissingVisualInfo",
    "NumberLineEnv",
    "OraclePolicy",
    "ParsedAction",
    "Points24Env",
    "ProcessPool",
    "RayPool",
    "RandomPolicy",
    "TextImageEnv",
    "TextPolicy",
    "VisualQAEnv",
    "action_char_span",
    "as_env_pool",
    "basic_strategy",
    "collect_demos",
    "count_solvable",
    "env_pool_backend",
    "evaluate_formula",
    "evaluate_policy",
    "format_summary",
    "is_solvable",
    "make",
    "make_env",
    "make_env_pool",
    "make_policy",
    "oracle",
    "parse_action",
    "random_policy",
    "register_env_backend",
    "register_envs",
    "run_episode",
    "solve",
    "unbatch_info",
    "unbatch_obs",
]
