#!/usr/bin/env bash
# Regenerate the reward-experiment tables of docs/results.md (help-seeking, fast-and-right): run every command of
# experiments/reward_experiments.py runs() (skipping runs whose report exists), then
# rebuild the tables and PNGs (help curves, Pareto front, stability) from the reports.
#   bash scripts/reproduce_rewards.sh [--dry-run] [--only KEY ...] [--force] [--table-only]
# Each run prints its progress; docs/results.md gives each one's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
exec "$PY" -m experiments.reward_experiments "$@"
