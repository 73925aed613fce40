#!/usr/bin/env bash
# The main job end to end on a synthetic dataset it generates (see README.md).
# synth -> crop -> stats -> cv -> calibrate -> predict (flip TTA) -> ensemble -> score on the hidden answers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=${DEMO_DATA:-demo-data}
QUIET=()
[ -n "${CI:-}" ] && QUIET=(--quiet)

echo "== synth: a synthetic competition folder in $DATA"
$BIN/maskcls synth "$DATA" --people 300 --seed 0 --overwrite "${QUIET[@]}"
echo "== crop: faces found by MTCNN (fixed box where none), same layout in $DATA-faces"
echo "   (margin 0.15: a tighter crop than the default 0.3 puts more of the small input on the face)"
$BIN/maskcls crop "$DATA" "$DATA-faces" --size 192x256 --margin 0.15 --overwrite "${QUIET[@]}"
echo "== stats of the cropped set"
$BIN/maskcls stats "$DATA-faces" "${QUIET[@]}"
RUNS=${DEMO_RUNS:-demo-runs}
RECIPE=${DEMO_RECIPE:-configs/cpu-pretrained.yaml}   # the name inside each recipe is its file name
GROUP=$RUNS/$(basename "$RECIPE" .yaml)-cv3
rm -rf "$RUNS"
echo "== cv: $RECIPE on 3 folds of the cropped set (runs in $GROUP)"
$BIN/maskcls cv "$RECIPE" --data "$DATA-faces" --folds 3 --runs-dir "$RUNS" "${QUIET[@]}"
echo "== calibrate: where to cut the age estimate, and per-class biases, learned on the out-of-fold probabilities"
echo "   and kept only where held-out folds gain (predict then applies them)"
$BIN/maskcls calibrate "$GROUP"
echo "== predict: the test set with every fold's model and flip TTA, calibrated"
$BIN/maskcls predict "$GROUP" --data "$DATA-faces" --tta flip "${QUIET[@]}"
echo "== ensemble: hard vote of the folds (predict already wrote their soft vote: $GROUP/submission.csv)"
$BIN/maskcls ensemble "$GROUP"/fold*/test_probabilities.csv --method hard --out "$GROUP/submission-hard.csv"
$BIN/maskcls ensemble "$GROUP" --oof
echo "== audit: training labels that are probably wrong (a corrections file to review, nothing edited)"
$BIN/maskcls audit "$GROUP" --top 10
echo "== score: the local leaderboard (synthetic answers in $DATA-faces/truth)"
$BIN/maskcls score "$GROUP/submission.csv" "$GROUP/submission-hard.csv" "$GROUP/fold0/submission.csv" \
    --truth "$DATA-faces"
echo "== sheet: the 7 photos of a few people, before and after cropping"
$BIN/maskcls sheet "$DATA" "$DATA/sheet.png" --people 6
$BIN/maskcls sheet "$DATA-faces" "$DATA-faces/sheet.png" --people 6
echo "== report: learning curves, confusion matrix, F1 bars, confident mistakes"
$BIN/maskcls report "$GROUP"
echo "== runs: every experiment in $RUNS (TensorBoard: tensorboard --logdir $RUNS)"
$BIN/maskcls runs --dir "$RUNS" --sort f1
echo "Report: $GROUP/report.html"
