#!/usr/bin/env bash
# Run one `rlvlm train` command from two checkouts and compare the runs value by value.
#   bash experiments/compare_runs.sh OLD_TREE NEW_TREE NAME PRESET key=value ...
# Each tree runs its own code (PYTHONPATH), with one shared tiny-model cache; metrics.jsonl rows
# are compared without time/* and report.json's final figures side by side. Used to show that a
# refactor keeps behaviour bit for bit (issue 16).
set -euo pipefail
old=$(cd "$1" && pwd); new=$(cd "$2" && pwd); name=$3; shift 3
out=${COMPARE_OUT:-/tmp/compare_runs}; mkdir -p "$out"
py=${PYTHON:-$new/.venv/bin/python}
for tree in "$old" "$new"; do
  tag=$(basename "$tree")
  (cd "$tree" && PYTHONPATH="$tree" XDG_CACHE_HOME="$out/cache" HF_HUB_OFFLINE=1 \
     "$py" -m rlvlm.cli train "$@" output_dir="$out/$name-$tag" > "$out/$name-$tag.log" 2>&1) \
    || { echo "$tag failed; see $out/$name-$tag.log"; exit 1; }
done
"$py" - "$out/$name-$(basename "$old")" "$out/$name-$(basename "$new")" "$name" <<'PY'
import json, sys
a_dir, b_dir, name = sys.argv[1:4]
rows = lambda d: [{k: v for k, v in json.loads(l).items() if not k.startswith("time/")}
                  for l in open(f"{d}/metrics.jsonl")]
a, b = rows(a_dir), rows(b_dir)
diff = [(i, k, r[k], b[i].get(k) if i < len(b) else None) for i, r in enumerate(a) for k in r
        if i >= len(b) or r[k] != b[i].get(k)]
fa, fb = (json.load(open(f"{d}/report.json"))["final"]["success_rate"] for d in (a_dir, b_dir))
print(f"{name}: {len(a)} vs {len(b)} rows, {len(diff)} differing values; final success {fa} vs {fb}")
for d in diff[:8]:
    print("  ", d)
PY
