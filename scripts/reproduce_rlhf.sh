#!/usr/bin/env bash
# Regenerate the RLHF tables of docs/results.md (issue 7: preferences -> reward model -> PPO, and DPO): run every
# command of experiments/rlhf_experiments.py runs() (skipping runs whose output exists), then rebuild the tables
# (preference set, reward models, before -> after on the four axes, commands) and docs/results/rlhf_curves.png.
#   bash scripts/reproduce_rlhf.sh [--dry-run] [--only KEY ...] [--force] [--table-only]
# Each run prints its progress; docs/results.md gives each one's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
exec "$PY" -m experiments.rlhf_experiments "$@"
