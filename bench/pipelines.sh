#!/usr/bin/env bash
# The README's pipelines on one synthetic set (cpu-pretrained, 3 folds, flip TTA), each timed from
# the crop, then scored together on the hidden answers (private half, per attribute, the interval
# over people, each line's share of resamples beating the first, the oracle's ceiling):
#   classes: the first round with three age classes, calibrated biases
#   first:   the recipe (distribution age head), calibrate (learned borders), predict
#   pseudo:  first, then maskcls pseudo --threshold 0.9, calibrate, predict
#   tuned:   first, then maskcls pseudo --fine-tune 2 at 96x128 (each fold model continued on the
#            pseudo-labels at the larger size), calibrate, predict
#   r96:     first at 96x128
#   grouped: tuned's models predicted with --group-people (the vote where its held-out check says so)
#   voted:   first's models predicted with --group-people (first voted on crops made with --margin 0.15:
#            about 6 minutes for 600 people from the photos)
#   five:    the recipe with 5 folds (each model on 4/5 of the people), calibrate, predict with
#            --group-people (the best measured, on --margin 0.15 crops: about 9 minutes for 600 people)
#   bash bench/pipelines.sh DATA-faces RUNS [STAGE...]     (all eight by default; pseudo, tuned and voted
#            need first, grouped needs tuned)
# e.g. maskcls synth d600 --people 600 --seed 29 && maskcls crop d600 d600-faces --size 192x256 --margin 0.15 &&
#      bash bench/pipelines.sh d600-faces pipeline-runs first voted five
set -euo pipefail
BIN=${BIN:-$(dirname "$0")/../.venv/bin}
DATA=$1 RUNS=$2
shift 2
ALL_STAGES=(classes first pseudo tuned r96 grouped voted five)
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=("${ALL_STAGES[@]}")
seconds_since() { echo $(($(date +%s) - $1)); }

first_round() {  # NAME [-o KEY=VALUE ...]: cv, calibrate, predict (calibrated)
    local name=$1
    shift
    "$BIN/maskcls" cv cpu-pretrained --data "$DATA" --folds 3 --runs-dir "$RUNS" -o "name=$name" "$@" --quiet
    "$BIN/maskcls" calibrate "$RUNS/$name-cv3"
    "$BIN/maskcls" predict "$RUNS/$name-cv3" --data "$DATA" --tta flip --quiet
}

second_round() {  # NAME [pseudo's options]: pseudo from the first round, calibrate, predict
    local name=$1
    shift
    "$BIN/maskcls" pseudo "$RUNS/first-cv3" --threshold 0.9 "$@" --quiet
    "$BIN/maskcls" calibrate "$RUNS/$name-cv3"
    "$BIN/maskcls" predict "$RUNS/$name-cv3" --data "$DATA" --tta flip --quiet
}

classes() { first_round classes -o model.age_head=classes; }

first() {
    "$BIN/maskcls" cv cpu-pretrained --data "$DATA" --folds 3 --runs-dir "$RUNS" -o name=first --quiet
    "$BIN/maskcls" predict "$RUNS/first-cv3" --data "$DATA" --tta flip --quiet --calibration none  # pseudo's labels
    "$BIN/maskcls" calibrate "$RUNS/first-cv3"
    "$BIN/maskcls" ensemble "$RUNS/first-cv3/test_probabilities.csv" \
        --calibration "$RUNS/first-cv3/calibration.json" --out "$RUNS/first-cv3/submission-calibrated.csv"
}

pseudo() { second_round first-pseudo; }

tuned() { second_round first-pseudo-ft --fine-tune 2 -o "train.image_size=[96,128]"; }

r96() { first_round r96 -o "train.image_size=[96,128]"; }

grouped() {
    "$BIN/maskcls" predict "$RUNS/first-pseudo-ft-cv3" --data "$DATA" --tta flip --group-people \
        --out "$RUNS/grouped" --quiet
}

voted() {
    "$BIN/maskcls" predict "$RUNS/first-cv3" --data "$DATA" --tta flip --group-people --out "$RUNS/voted" --quiet
}

five() {
    "$BIN/maskcls" cv cpu-pretrained --data "$DATA" --folds 5 --runs-dir "$RUNS" -o name=five --quiet
    "$BIN/maskcls" calibrate "$RUNS/five-cv5"
    "$BIN/maskcls" predict "$RUNS/five-cv5" --data "$DATA" --tta flip --group-people --out "$RUNS/five-voted" --quiet
}

declare -A SUBMISSION=(
    [classes]=classes-cv3/submission.csv [first]=first-cv3/submission-calibrated.csv
    [pseudo]=first-pseudo-cv3/submission.csv [tuned]=first-pseudo-ft-cv3/submission.csv [r96]=r96-cv3/submission.csv
    [grouped]=grouped/submission.csv [voted]=voted/submission.csv [five]=five-voted/submission.csv
)
for stage in "${STAGES[@]}"; do  # every name checked before anything runs
    [ -n "${SUBMISSION[$stage]:-}" ] || { echo "unknown stage $stage (${ALL_STAGES[*]})" >&2; exit 2; }
done
submissions=()
for stage in "${STAGES[@]}"; do
    started=$(date +%s)
    "$stage"
    echo "$stage: $(seconds_since "$started") s"
    submissions+=("$RUNS/${SUBMISSION[$stage]}")
done
"$BIN/maskcls" score "${submissions[@]}" --truth "$DATA"
