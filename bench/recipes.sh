#!/usr/bin/env bash
# Recipes side by side on one synthetic set: one fold each, then predict (flip TTA) and score on
# the hidden answers (private half, per attribute, and the oracle's ceiling).
#   bash bench/recipes.sh DATA-faces RUNS "NAME CONFIG [-o KEY=VALUE ...]" ...
# e.g. bash bench/recipes.sh d600-faces bench-runs \
#        "scratch configs/cpu-demo.yaml -o train.epochs=28" \
#        "pretrained configs/cpu-pretrained.yaml -o train.epochs=7"
set -euo pipefail
BIN=${BIN:-$(dirname "$0")/../.venv/bin}
DATA=$1 RUNS=$2
shift 2
submissions=()
for spec in "$@"; do
    read -r -a words <<<"$spec"
    name=${words[0]} config=${words[1]}
    started=$(date +%s)
    "$BIN/maskcls" train "$config" --data "$DATA" --runs-dir "$RUNS" -o "name=$name" "${words[@]:2}" --quiet
    trained=$(date +%s)
    "$BIN/maskcls" predict "$RUNS/$name-fold0" --data "$DATA" --tta flip --quiet
    done_at=$(date +%s)
    echo "$name: train $((trained - started)) s, predict $((done_at - trained)) s"
    submissions+=("$RUNS/$name-fold0/submission.csv")
done
"$BIN/maskcls" score "${submissions[@]}" --truth "$DATA"
