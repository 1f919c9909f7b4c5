#!/usr/bin/env bash
# Regenerate the gym-cards table of docs/results.md: run every command of
# experiments/gym_cards.py RUNS (skipping runs whose report exists), then
# rebuild the tables and learning-curve PNGs from the reports.
#   bash scripts/reproduce_gym_cards.sh [--dry-run] [--only KEY ...] [--force] [--table-only]
# Each run prints its progress; docs/results.md gives each one's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
exec "$PY" -m experiments.gym_cards "$@"
