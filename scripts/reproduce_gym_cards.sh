#!/usr/bin/env bash
# Regenerate the gym-cards tables of docs/results.md: run every command of
# experiments/gym_cards.py RUNS on each of the seeds 0, 1, 2 (seed S writes
# runs/gym_cards/KEY/seedS; each seed in its own process from an empty
# XDG_CACHE_HOME, so its wall time includes building the model), skipping
# seeds whose report exists, then rebuild the tables (mean, sample std and
# worst seed; whether the spread over seeds exceeds the gain) and the
# learning-curve PNGs from the reports. A failed seed does not stop the rest:
# it shows as a missing seed, and the script exits 1 after listing it.
#   bash scripts/reproduce_gym_cards.sh [--dry-run] [--only KEY ...] [--seeds S ...] [--force] [--table-only]
# Each seed's output goes to its stdout.log; docs/results.md gives the wall time range.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
exec "$PY" -m experiments.gym_cards "$@"
