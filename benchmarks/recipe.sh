#!/bin/bash
# Recipes against compute (issue #35): each run of train.py into runs/recipes/NAME, its
# files copied here (config, history, metrics, curves, console, machine, epoch gaps),
# then the table.
#   bash benchmarks/recipe.sh NAME [train.py flags...]   one run
#   bash benchmarks/recipe.sh --table                    the table of every run here
# SRC: a checkout to run the code from (default: this one), so that editing this one
# while a run lasts changes nothing it imports late.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/results/recipes
py=${PYTHON:-$root/.venv/bin/python}
src=${SRC:-$root}
if [ "$1" = "--table" ]; then  # these runs, and the earlier ones of results/README.md
  cd "$root/results"
  "$py" "$root/benchmarks/accuracy_vs_compute.py" recipes/*/ default_run/d-30ep/ default_run/a-30ep/ \
    --json recipes/table.json | tee recipes/table.md
  exit
fi
name=$1; shift
out=$here/$name
run=${RUNS:-$root/runs/recipes}/$name
mkdir -p "$out"
{
  echo "date: $(date -u +%FT%TZ)"; echo "commit: $(git -C "$src" rev-parse --short HEAD)"
  echo "command: python train.py $* --run-dir $run"
  lscpu | grep -E '^(Model name|CPU family|Model|CPU\(s\)):' ; grep -m1 -o -E 'avx512_bf16|amx_bf16|avx512f ' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
} > "$out/machine.txt"
( cd "$src" && "$py" train.py "$@" --run-dir "$run" ) 2>&1 | tee "$out/console.txt"
cp "$run"/{config.json,history.csv,metrics.json,curves.png} "$out/"
PYTHONPATH="$src" "$py" "$src/benchmarks/epoch_gaps.py" "$run" > "$out/epoch_gaps.txt" || true  # the gaps are a finding, not a failure
