#!/usr/bin/env bash
# Regenerate the reward-experiment tables of docs/results.md (help-seeking, fast-and-right): run every command of
# experiments/reward_experiments.py runs() on seeds 0, 1 and 2, each seed in its own process from an empty cache
# into runs/rewards/KEY/seedS (a run that starts from another run's policy takes that run's same seed; seeds whose
# report exists are skipped, a failed seed is left missing), then rebuild the tables (mean ± std (worst seed) of
# every figure, spread > gain) and PNGs (help curves, Pareto front, stability) from the reports.
#   bash scripts/reproduce_rewards.sh [--dry-run] [--only KEY ...] [--seeds S ...] [--force] [--table-only]
# Each run prints its progress to KEY/seedS/stdout.log; docs/results.md gives each one's wall time per seed.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
exec "$PY" -m experiments.reward_experiments "$@"
