"""Typed configuration of `rlvlm train` (PPO / GRPO with an SFT warm-start).

Every field documents itself (`rlvlm train --help` prints them). Presets in
rlvlm/presets/*.yaml set fields; `key=value` overrides with dotted keys come
last. Defaults follow RL4VLM where it gives one (gamma 0.9, GAE lambda 0.95,
clip 0.1, 4 epochs, value coefficient 0.5, thought coefficient 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from rlvlm import algos
from rlvlm.config import F, FF
from rlvlm.config.coerce import RETIRED_KEYS
from rlvlm.envs.pool import env_pool_backend
from rlvlm.errors import ConfigError
from rlvlm.models.options import PolicyOptions, options_from_dict, options_to_dict
from rlvlm.rewards import CompositeReward

for _old, _new in (("lora_r", "r"), ("lora_alpha", "alpha"), ("lora_vision", "vision")):
    RETIRED_KEYS[f"model.{_old}"] = (f"use model.lora.{_new} (LoRA is the model.lora section: model.lora.r=16 turns "
                                     "it on, model.lora=null trains every weight)")
RETIRED_KEYS["algo.name"] = ("drop it; algo.advantage alone chooses the algorithm (gae: PPO with a critic; grpo, "
                             "dr_grpo, rloo: group methods; reinforce_pp, reward_to_go)")


@dataclass
class ModelConfig(PolicyOptions):
    """The policy model: every `PolicyOptions` field (declared once, in rlvlm/models/options.py) plus its name."""

    name_or_path: str = F("tiny:qwen2_vl", "hub id, model directory, saved policy, or tiny:ARCH[:SIZE[:SEED]] "
                          "to build a from-scratch model into the cache")

    def policy_options(self) -> PolicyOptions:
        return options_from_dict(options_to_dict(self))


@dataclass
class EnvConfig:
    id: str = F("rlvlm/NumberLine-v0", "gymnasium id of the environment")
    image_size: int = F(84, "rendered image side in pixels")
    prompt_style: Literal["cot", "action_only"] = F("cot", "cot (thoughts + action JSON) | action_only")
    kwargs: dict = FF(dict, "extra keyword arguments for gymnasium.make")
    backend: str = F("inprocess", "where the training envs run (rlvlm.envs.ENV_BACKENDS): inprocess (in the "
                     "trainer, one step after another) | processes (one worker process per env: slow steps "
                     "overlap, a dead worker is restarted) | ray (one Ray actor per env; pip install 'rlvlm[ray]'). "
                     "Evaluation and SFT demonstrations always run in-process")
    step_timeout: Optional[float] = F(None, "seconds an env step may take under a worker backend before its "
                                      "worker is killed and restarted and its episode ends with info error "
                                      "(null: wait as long as the worker lives)")


@dataclass
class RolloutConfig:
    num_envs: int = F(16, "environments stepped in lockstep (one generation batch)")
    num_steps: int = F(8, "steps per env per update (PPO); GRPO plays whole episodes")
    group_size: int = F(1, "envs sharing a reset seed (GRPO groups); must divide num_envs")
    temperature: float = F(1.0, "sampling temperature during training")
    top_p: float = F(1.0, "nucleus sampling during training")
    max_new_tokens: int = F(48, "completion length cap")
    explore_ask: int = F(0, "under env.kwargs.ask_for_help with groups: in a group none of whose samples asks, "
                         "replace this many with the teacher-forced ask reply, so the group advantage can say "
                         "whether asking pays on that image (0: off)")


@dataclass
class AlgoConfig:
    advantage: str = F("gae", "the algorithm: a registered advantage estimator (rlvlm.algos.ADVANTAGE_ESTIMATORS): "
                       "gae (PPO: value head, lockstep steps) | turn_gae (value head, whole episodes) | grpo | "
                       "dr_grpo | rloo | gigpo (groups of whole episodes; gigpo adds anchor-state step groups) | "
                       "reinforce_pp | reward_to_go (whole episodes, no critic)")
    policy_loss: str = F("ppo_clip", "a registered policy loss (rlvlm.algos.POLICY_LOSSES): ppo_clip | reinforce")
    ratio_level: Literal["action", "token"] = F("action", "action: one ratio per env step from lambda*thought + action log-probs; "
                         "token: per-token ratios")
    thought_coef: float = F(0.5, "lambda weighting thought-token log-probs in the action log-prob (RL4VLM)")
    gamma: float = F(0.9, "discount")
    lam: float = F(0.95, "GAE lambda")
    step_weight: float = F(1.0, "gigpo: weight of the step-level (anchor-state) advantage added to the episode one")
    clip_low: float = F(0.1, "PPO clip below 1")
    clip_high: Optional[float] = F(None, "PPO clip above 1 (clip-higher); None = clip_low")
    epochs: int = F(4, "optimisation epochs over each rollout")
    target_kl: Optional[float] = F(None, "stop an update's epochs early once approx KL to the rollout policy "
                                   "exceeds 1.5 x this (None: always run all epochs)")
    minibatch_size: int = F(32, "env steps per minibatch (per run: split over data-parallel processes)")
    micro_batch_size: int = F(0, "gradient accumulation: samples per forward/backward pass on each process, "
                              "summed into one optimizer step per minibatch (0: the whole minibatch at once)")
    lr: float = F(1e-5, "Adam learning rate")
    value_lr: Optional[float] = F(None, "learning rate of the value head (None: algo.lr); a from-scratch head "
                                  "regressing returns of +-10 needs a larger step than a warm-started policy")
    lr_schedule: Literal["cosine", "constant", "wsd"] = F("cosine", "cosine | constant | wsd (constant, then a "
                                                          "linear decay to 0 over the last algo.decay_updates)")
    warmup_updates: int = F(0, "linear warm-up updates")
    decay_updates: int = F(0, "lr_schedule=wsd: final updates over which the lr falls linearly to 0, so the "
                           "policy settles instead of ending on one draw of a late-run swing")
    weight_decay: float = F(0.0, "AdamW weight decay")
    value_coef: float = F(0.5, "value loss weight")
    value_clip: Optional[float] = F(None, "clip range of the value update (None: unclipped)")
    entropy_coef: float = F(0.0, "entropy bonus weight (fixed), or the start value when adaptive")
    target_entropy: Optional[float] = F(None, "per-token entropy target for an adaptive coefficient")
    kl_coef: float = F(0.0, "weight of KL to the reference policy (0: off)")
    kl_estimator: Literal["k1", "k2", "k3"] = F("k3", "k1 | k2 | k3")
    ref_reset_every: int = F(0, "every N updates the KL reference becomes the current policy (a reference "
                             "reset): the penalty then holds the reply format near a recent policy instead of "
                             "pulling states the warm-start got confidently wrong back to it (0: never)")
    max_grad_norm: float = F(1.0, "gradient clipping")
    normalize_advantages: bool = F(True, "whiten advantages per rollout")
    reward_norm: bool = F(False, "scale rewards by a running std of discounted returns")
    aggregation: Literal["token_mean", "seq_mean", "seq_mean_token_sum"] = F("token_mean", "token-level loss aggregation: token_mean | seq_mean | seq_mean_token_sum")


@dataclass
class SFTConfig:
    episodes: int = F(0, "oracle demonstration episodes for the warm-start (0: no SFT)")
    epochs: int = F(3, "passes over the demonstrations")
    lr: float = F(1e-3, "learning rate")
    batch_size: int = F(16, "demonstrations per step")
    seed: int = F(500_000, "first reset seed of demonstration episodes (disjoint from RL and eval seeds)")
    env_kwargs: dict = FF(dict, "env kwargs that differ for the demonstrations, merged over env.kwargs (e.g. "
                          "missing_info: {p: 0} to imitate clean images only)")
    ask_rate: float = F(0.0, "under env.kwargs.ask_for_help: fraction of demonstration steps that ask for help, "
                        "drawn at random whatever the image shows (teaches the ask reply, not when to use it)")
    random_action_rate: float = F(0.0, "fraction of demonstration steps that take a uniformly random legal action, "
                                  "the reply reading the state as the oracle does (1.0 teaches the format and the "
                                  "reading, not the decision; envs with demo_reply, e.g. NumberLine)")


@dataclass
class RewardConfig:
    weights: dict[str, float] = FF(dict, "reward components and weights, e.g. {accuracy: 1.0, tokens: -0.005} "
                                   "(rlvlm.rewards.REWARDS); empty: the env's own reward")
    options: dict[str, Any] = FF(dict, "options per component, e.g. overlong: {max_tokens: 64, cache: 16}")


@dataclass
class EvalConfig:
    episodes: int = F(200, "held-out episodes for the SFT and final evaluations")
    every: int = F(0, "evaluate every N updates during training (0: only SFT and final)")
    during_episodes: int = F(64, "episodes of each periodic evaluation")
    temperature: float = F(0.0, "0 = greedy decoding")
    num_envs: int = F(32, "envs per evaluation batch")
    env_kwargs: dict = FF(dict, "env kwargs that differ at evaluation, merged over env.kwargs (e.g. split: test "
                          "so QA records are held out too, not only seeds)")


@dataclass
class TrainConfig:
    model: ModelConfig = FF(ModelConfig, "policy model")
    env: EnvConfig = FF(EnvConfig, "environment")
    rollout: RolloutConfig = FF(RolloutConfig, "rollout collection")
    algo: AlgoConfig = FF(AlgoConfig, "RL algorithm")
    sft: SFTConfig = FF(SFTConfig, "supervised warm-start")
    reward: RewardConfig = FF(RewardConfig, "reward shaping: a weighted sum of reward functions")
    eval: EvalConfig = FF(EvalConfig, "evaluation")
    updates: int = F(20, "RL updates (rollout + optimisation rounds); 0 saves the warm-started policy only")
    seed: int = F(0, "seed for envs, sampling and data order")
    threads: int = F(1, "torch CPU threads for the run (0: torch's default). Pinned because the thread count "
                        "changes float rounding, so the same seed on a machine with more cores is another run; "
                        "raise it for speed on a many-core CPU, knowing the numbers will differ")
    output_dir: str = F("runs/numberline", "run directory")
    checkpoint_every: int = F(0, "checkpoint every N updates (0: only at the end)")
    checkpoint_keep: int = F(3, "keep only the newest K checkpoints/step-N/ (the one just written, and so the "
                             "final one, always stays); 3 leaves a fallback or two behind the latest at a bounded "
                             "disk cost; 0 keeps every checkpoint")
    resume: Optional[str] = F(None, "checkpoint directory (or run directory) to continue from")
    log_every: int = F(1, "print a progress line every N updates")
    abstention_alarm: float = F(0.5, "under the help wrappers, warn and record in the report when the rollouts ask "
                                "for help on at least this fraction of clear images (over-abstention; 0: off)")
    extra: dict[str, Any] = FF(dict, "free-form notes stored with the run")

    def _check_learnable(self) -> None:
        """Combinations that run but cannot learn (or silently ignore a knob) fail here, before any work."""
        a, r, m = self.algo, self.rollout, self.model
        est = algos.advantage_estimator(a.advantage)
        algos.policy_loss(a.policy_loss)
        if est.needs_groups and r.group_size < 2:
            # Each episode would be its own group: its return minus its own mean is exactly 0.
            raise ConfigError(f"algo.advantage={a.advantage} with rollout.group_size={r.group_size} gives every "
                              "advantage exactly 0; fix: set rollout.group_size >= 2 (e.g. 4), or algo.advantage=gae "
                              "(with a value head) or reinforce_pp")
        if est.needs_critic and not m.value_head:
            raise ConfigError(f"algo.advantage={a.advantage} needs a critic; fix: set model.value_head=true, or a "
                              "critic-free estimator (e.g. algo.advantage=grpo rollout.group_size=4)")
        if est.needs_critic and r.group_size > 1:
            raise ConfigError(f"rollout.group_size={r.group_size} with algo.advantage={a.advantage}: groups are "
                              "read only by group estimators; fix: set rollout.group_size=1, or a group estimator "
                              "(e.g. algo.advantage=grpo)")
        if r.temperature <= 0:
            raise ConfigError(f"rollout.temperature={r.temperature}: RL needs sampled actions (greedy rollouts never "
                              "explore and their log-probs are not a sampling distribution); fix: set it > 0, e.g. 1.0")
        if not 0 < r.top_p <= 1:
            raise ConfigError(f"rollout.top_p={r.top_p} must be in (0, 1]")
        if a.step_weight < 0:
            raise ConfigError(f"algo.step_weight={a.step_weight} must be >= 0 (0: gigpo is episode-level GRPO)")
        for name, value in (("algo.gamma", a.gamma), ("algo.lam", a.lam)):
            if not 0 <= value <= 1:
                raise ConfigError(f"{name}={value} must be in [0, 1]")
        if a.reward_norm and not est.needs_critic:
            raise ConfigError(f"algo.reward_norm=true scales discounted returns for gae only; with "
                              f"algo.advantage={a.advantage} the group estimator already normalises; fix: set "
                              "algo.reward_norm=false")
        if a.kl_coef > 0 and (m.reference == "none" or (m.reference == "auto" and m.lora is None)):
            raise ConfigError(f"algo.kl_coef={a.kl_coef} needs a reference policy; fix: set model.reference=copy "
                              "(a frozen copy of the starting weights), or LoRA (model.lora.r=16), or algo.kl_coef=0")
        if a.kl_coef > 0 and m.reference == "auto" and m.lora is not None and self.sft.episodes > 0:
            raise ConfigError(f"algo.kl_coef={a.kl_coef} with LoRA and sft.episodes={self.sft.episodes}: the reference "
                              "(the model with its adapter disabled) would be the model before the warm-start; fix: "
                              "set model.reference=copy (taken after the warm-start) or sft.episodes=0")
        # A group estimator reads no values, yet a value head would still be fitted to the raw
        # returns through the shared trunk. On reward-model scores (no reward_norm with groups) its
        # loss ran 20-950 against a policy loss under 0.3, took the whole clipped gradient, and GRPO
        # on the RLHF reward model lost 0.755 -> 0.540 ground truth (0.755 -> 0.860 without it).
        if not est.needs_critic and self.model.value_head and a.value_coef > 0 and self.updates > 0:
            raise ConfigError(f"model.value_head=true with algo.advantage={a.advantage}: group advantages read no "
                              "values, but the critic would still train the shared trunk on raw returns; fix: set "
                              "model.value_head=false")
        if a.ref_reset_every < 0:
            raise ConfigError(f"algo.ref_reset_every={a.ref_reset_every} must be >= 0 (0: never reset the reference)")
        if a.ref_reset_every and (a.kl_coef <= 0 or m.reference != "copy"):
            raise ConfigError(f"algo.ref_reset_every={a.ref_reset_every} resets the frozen KL reference copy; it needs "
                              f"algo.kl_coef > 0 and model.reference=copy (they are {a.kl_coef} and "
                              f"{m.reference}); fix: set both, or algo.ref_reset_every=0")
        if a.target_entropy is not None and a.entropy_coef <= 0:
            raise ConfigError(f"algo.target_entropy={a.target_entropy} adapts the entropy coefficient from "
                              f"algo.entropy_coef={a.entropy_coef}, which stays 0; fix: set algo.entropy_coef > 0 "
                              "(e.g. 0.001) or algo.target_entropy=null")
        if self.sft.episodes > 0 and self.sft.epochs < 1:
            raise ConfigError(f"sft.episodes={self.sft.episodes} with sft.epochs={self.sft.epochs} collects "
                              "demonstrations and never trains on them; fix: set sft.epochs >= 1 or sft.episodes=0")
        if a.lr_schedule == "wsd" and not 0 < a.decay_updates <= self.updates - a.warmup_updates:
            raise ConfigError(f"algo.lr_schedule=wsd with algo.decay_updates={a.decay_updates} (updates={self.updates}, "
                              f"warmup_updates={a.warmup_updates}): the decay must cover 1 to updates - warmup_updates "
                              "updates; fix: set algo.decay_updates in that range (e.g. a third of updates)")
        if a.decay_updates and a.lr_schedule != "wsd":
            raise ConfigError(f"algo.decay_updates={a.decay_updates} is only read by algo.lr_schedule=wsd (it is "
                              f"{a.lr_schedule}); fix: set algo.lr_schedule=wsd or algo.decay_updates=0")
        if r.explore_ask:
            if env_pool_backend(self.env.backend).remote:
                raise ConfigError(f"rollout.explore_ask={r.explore_ask} reads each env's ask wrapper, which needs the "
                                  f"envs in the trainer's process (env.backend={self.env.backend}); fix: set "
                                  "env.backend=inprocess, or rollout.explore_ask=0")
            if not self.env.kwargs.get("ask_for_help"):
                raise ConfigError(f"rollout.explore_ask={r.explore_ask} forces the ask reply, which needs the ask "
                                  "action; fix: set env.kwargs.ask_for_help, or rollout.explore_ask=0")
            if not est.whole_episodes or not 0 < r.explore_ask < r.group_size:
                raise ConfigError(f"rollout.explore_ask={r.explore_ask} works inside groups (a group estimator with "
                                  f"0 < explore_ask < rollout.group_size={r.group_size}); fix: e.g. algo.advantage=grpo "
                                  "rollout.group_size=8 rollout.explore_ask=1, or rollout.explore_ask=0")
        if not 0.0 <= self.abstention_alarm <= 1.0:
            raise ConfigError(f"abstention_alarm={self.abstention_alarm} must be a fraction in [0, 1] (0: off)")
        if self.eval.episodes < 1:
            raise ConfigError(f"eval.episodes={self.eval.episodes} must be >= 1 (the report compares SFT and final "
                              "success on held-out episodes)")

    def _check_env(self) -> None:
        backend = env_pool_backend(self.env.backend)  # an unknown name fails here, naming env.backend
        backend.check_available()  # env.backend=ray without ray: the install line, before any work
        timeout = self.env.step_timeout
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"env.step_timeout={timeout} must be > 0 seconds; fix: e.g. env.step_timeout=60, "
                              "or null for no limit")
        if timeout is not None and not backend.remote:
            raise ConfigError(f"env.step_timeout={timeout} needs a worker backend: an in-process step cannot be "
                              f"interrupted (env.backend={self.env.backend}); fix: set env.backend=processes, or "
                              "env.step_timeout=null")

    def validate(self) -> None:
        a, r = self.algo, self.rollout
        self._check_env()
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads} must be >= 0; fix: threads=1 (reproducible) or 0 (torch's default)")
        if a.ratio_level not in ("action", "token"):
            raise ConfigError(f"algo.ratio_level={a.ratio_level!r} must be action or token")
        if r.group_size < 1:
            raise ConfigError(f"rollout.group_size={r.group_size} must be >= 1")
        if r.num_envs % r.group_size:
            raise ConfigError(f"rollout.group_size={r.group_size} must divide rollout.num_envs={r.num_envs}")
        self._check_learnable()
        if self.updates < 0:
            raise ConfigError(f"updates={self.updates} must be >= 0 (0: the warm-start only)")
        if self.updates == 0 and self.sft.episodes == 0:
            raise ConfigError("updates=0 with sft.episodes=0 trains nothing; fix: set updates >= 1 or sft.episodes >= 1")
        for name, value in (("algo.epochs", a.epochs), ("rollout.num_envs", r.num_envs),
                            ("rollout.num_steps", r.num_steps), ("algo.minibatch_size", a.minibatch_size)):
            if value < 1:
                raise ConfigError(f"{name}={value} must be >= 1")
        # Names and options checked now, not mid-run; a warm-start-only run (updates=0)
        # rewards nothing, so a component's artefact (a reward model) need not exist yet.
        if (self.reward.weights or self.reward.options) and self.updates > 0:

            CompositeReward(self.reward.weights, self.reward.options)
        if not 0.0 <= self.sft.random_action_rate <= 1.0:
            raise ConfigError(f"sft.random_action_rate={self.sft.random_action_rate} must be a fraction in [0, 1]")
        if not 0.0 <= self.sft.ask_rate <= 1.0:
            raise ConfigError(f"sft.ask_rate={self.sft.ask_rate} must be a fraction in [0, 1]")
        if self.sft.ask_rate > 0 and not self.env.kwargs.get("ask_for_help"):
            raise ConfigError(f"sft.ask_rate={self.sft.ask_rate} needs the ask action; fix: set env.kwargs.ask_for_help=single_turn "
                              "(or multi_turn), or sft.ask_rate=0")
        if a.micro_batch_size < 0:
            raise ConfigError(f"algo.micro_batch_size={a.micro_batch_size} must be >= 0; fix: 0 (no accumulation) "
                              f"or the samples one forward pass fits, e.g. algo.micro_batch_size=4")
        if a.lr <= 0:
            raise ConfigError(f"algo.lr={a.lr} must be > 0")
        if a.value_lr is not None and a.value_lr <= 0:
            raise ConfigError(f"algo.value_lr={a.value_lr} must be > 0 (or null to use algo.lr)")
        if a.target_kl is not None and a.target_kl <= 0:
            raise ConfigError(f"algo.target_kl={a.target_kl} must be > 0 (or null to disable)")
        if not 0 < a.clip_low < 1:
            raise ConfigError(f"algo.clip_low={a.clip_low} must be in (0, 1)")
        if self.checkpoint_keep < 0:
            raise ConfigError(f"checkpoint_keep={self.checkpoint_keep} must be >= 0; fix: set checkpoint_keep=K "
                              "to keep the newest K checkpoints, or checkpoint_keep=0 to keep all")
