"""Points24: what limits it? Deal coverage, then perception vs search after SFT.

    python scripts/points24_probe.py coverage            # distinct solvable hands, top-k coverage
    python scripts/points24_probe.py sft 256 8 2e-3 4    # demo episodes, epochs, lr, eval every k epochs

The sft mode warm-starts the points24 preset's model on oracle demonstrations
and, every k epochs, reports on 100 held-out first steps: the share whose
"cards" list matches the hand, the share whose "thoughts" formula is a correct
solution for the hand, and greedy success over 100 whole episodes.
docs/results.md quotes `sft 256 8 2e-3 4` (run with OMP_NUM_THREADS=1).
"""
import collections
import json
import sys
import time

import transformers

from rlvlm.config import load_config
from rlvlm.envs.formula import FormulaError
from rlvlm.envs.formula import evaluate as formula_value
from rlvlm.eval.episodes import EVAL_SEED_OFFSET, evaluate
from rlvlm.models.policy import SamplingConfig
from rlvlm.train.config import TrainConfig
from rlvlm.train.rl import build_policy, make_env_factory, seed_everything
from rlvlm.train.sft import collect_demonstrations, sft_train

transformers.logging.set_verbosity_error()
args = sys.argv[1:]
if not args or args[0] not in ("coverage", "sft"):
    sys.exit("usage: points24_probe.py coverage | sft EPISODES EPOCHS LR EVERY [key=value ...]")
if args[0] == "coverage":
    import gymnasium as gym
    import rlvlm.envs  # noqa: F401
    env = gym.make("rlvlm/Points24-v0", disable_env_checker=True, image_size=32)
    counts, n = collections.Counter(), 4000
    for s in range(n):
        _, info = env.reset(seed=s)
        counts[tuple(sorted(info["values"]))] += 1
    print("distinct solvable hands in", n, "deals:", len(counts))
    total = 0
    for k, (_, c) in enumerate(counts.most_common(), 1):
        total += c
        if k in (10, 25, 50, 100, 200, 300):
            print(f"top {k} hands cover {total / n:.3f} of deals")
    sys.exit(0)
args = args[1:]
eps = int(args[0]); epochs=int(args[1]); lr=float(args[2]); every=int(args[3]); ov=args[4:]
cfg = load_config(TrainConfig, "points24", ov)
seed_everything(0)
make_env = make_env_factory(cfg)
policy = build_policy(cfg)
print("params", policy.num_parameters(), flush=True)
t=time.time()
demos = collect_demonstrations(make_env, eps, 500000)
print("demos", len(demos), f"{time.time()-t:.0f}s", flush=True)
env = make_env()
states = []
for s in range(100):
    o, info = env.reset(seed=EVAL_SEED_OFFSET + s); states.append((o, sorted(info["values"])))
mnt = cfg.rollout.max_new_tokens


def read_reply(text: str, hand: list[int]) -> tuple[bool, bool]:
    """(the "cards" list is the hand, the "thoughts" formula uses exactly the hand and equals 24)."""
    try:
        reply = json.loads(text)
        cards_ok = sorted(int(c) for c in reply["cards"]) == hand
        formula = str(reply["thoughts"]).split("=")[0]
        numbers = sorted(int(x) for x in formula.replace("(", " ").replace(")", " ").replace("+", " ")
                         .replace("-", " ").replace("*", " ").replace("/", " ").split())
        solved = numbers == hand and formula_value(formula) == 24
    except (ValueError, KeyError, TypeError, FormulaError):  # not JSON, a missing key, or a broken formula
        return False, False
    return cards_ok, solved


def diag():
    outs = []
    for i in range(0, 100, 50):
        outs += policy.sample([s[0] for s in states[i:i+50]], SamplingConfig(temperature=0.0, max_new_tokens=mnt))
    flags = [read_reply(s.text, hand) for (_, hand), s in zip(states, outs)]
    return sum(c for c, _ in flags) / 100, sum(v for _, v in flags) / 100, outs[0].text


t=time.time()
for chunk in range(epochs // every):
    m = sft_train(policy, demos, epochs=every, lr=lr, batch_size=cfg.sft.batch_size, seed=chunk)
    t1 = time.time()
    ev = evaluate(policy, make_env, episodes=100, seed=EVAL_SEED_OFFSET, sampling=SamplingConfig(temperature=0.0, max_new_tokens=mnt), num_envs=50)
    r = diag()
    print(f"epochs {(chunk+1)*every} nll {m['sft/final_nll']:.3f} greedy {ev['success_rate']:.2f} inv {ev.get('invalid_action_rate',0):.2f} read {r[0]:.2f} solved {r[1]:.2f} train={t1-t:.0f}s eval={time.time()-t1:.0f}s", flush=True)
    print("   ", r[2], flush=True)
    t = time.time()
