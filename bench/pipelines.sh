#!/usr/bin/env bash
# The README's pipelines on one synthetic set (cpu-pretrained, 3 folds, flip TTA), each timed from
# the crop, then scored together on the hidden answers (private half, per attribute, the interval
# over people, each line's share of resamples beating the first, the oracle's ceiling):
#   classes: the first round with three age classes, calibrated biases
#   first:   the recipe (distribution age head), calibrate (learned borders), predict
#   pseudo:  first, then maskcls pseudo --threshold 0.9, calibrate, predict
#   r96:     first at 96x128
#   bash bench/pipelines.sh DATA-faces RUNS
# e.g. maskcls synth d600 --people 600 --seed 29 && maskcls crop d600 d600-faces --size 192x256 &&
#      bash bench/pipelines.sh d600-faces pipeline-runs
set -euo pipefail
BIN=${BIN:-$(dirname "$0")/../.venv/bin}
DATA=$1 RUNS=$2
seconds_since() { echo $(($(date +%s) - $1)); }

first_round() {  # NAME [-o KEY=VALUE ...]: cv, calibrate, predict (calibrated)
    local name=$1
    shift
    "$BIN/maskcls" cv cpu-pretrained --data "$DATA" --folds 3 --runs-dir "$RUNS" -o "name=$name" "$@" --quiet
    "$BIN/maskcls" calibrate "$RUNS/$name-cv3"
    "$BIN/maskcls" predict "$RUNS/$name-cv3" --data "$DATA" --tta flip --quiet
}

started=$(date +%s)
first_round classes -o model.age_head=classes
echo "classes: $(seconds_since "$started") s"

started=$(date +%s)
"$BIN/maskcls" cv cpu-pretrained --data "$DATA" --folds 3 --runs-dir "$RUNS" -o name=first --quiet
"$BIN/maskcls" predict "$RUNS/first-cv3" --data "$DATA" --tta flip --quiet --calibration none  # pseudo's labels
"$BIN/maskcls" calibrate "$RUNS/first-cv3"
"$BIN/maskcls" ensemble "$RUNS/first-cv3/test_probabilities.csv" --calibration "$RUNS/first-cv3/calibration.json" \
    --out "$RUNS/first-cv3/submission-calibrated.csv"
echo "first: $(seconds_since "$started") s"

started=$(date +%s)
"$BIN/maskcls" pseudo "$RUNS/first-cv3" --threshold 0.9 --quiet
"$BIN/maskcls" calibrate "$RUNS/first-pseudo-cv3"
"$BIN/maskcls" predict "$RUNS/first-pseudo-cv3" --data "$DATA" --tta flip --quiet
echo "pseudo: $(seconds_since "$started") s more"

started=$(date +%s)
first_round r96 -o "train.image_size=[96,128]"
echo "r96: $(seconds_since "$started") s"

"$BIN/maskcls" score "$RUNS/classes-cv3/submission.csv" "$RUNS/first-cv3/submission-calibrated.csv" \
    "$RUNS/first-pseudo-cv3/submission.csv" "$RUNS/r96-cv3/submission.csv" --truth "$DATA"
