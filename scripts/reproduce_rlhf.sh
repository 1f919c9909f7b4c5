#!/usr/bin/env bash
# Regenerate the RLHF tables of docs/results.md (issue 7: preferences -> reward model -> PPO, and DPO): run the whole
# pipeline of experiments/rlhf_experiments.py runs() on each of the seeds 0, 1, 2 (seed S's runs take seed=S and read
# seed S's own warm-start, pairs and reward model from runs/rlhf/KEY/seedS), each seed of each run in its own process
# from an empty cache, skipping seeds whose output exists; then rebuild the tables (preference set, reward models,
# their on-policy check, before -> after on the four axes, commands), every figure as mean ± std (worst seed) with a
# "spread > gain" flag where a row has a before -> after pair, and docs/results/rlhf_curves.png (each seed, their mean).
#   bash scripts/reproduce_rlhf.sh [--dry-run] [--only KEY ...] [--seeds 0 1 2] [--force] [--table-only]
# Each run prints its progress; a failed seed is left out of the tables (and its downstream runs on that seed are not
# started), the failures are listed at the end and the exit code is 1. docs/results.md gives each run's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
exec "$PY" -m experiments.rlhf_experiments "$@"
