#!/usr/bin/env bash
# What cropping to the face is worth: the same recipe trained for the same epochs on
#   whole   the whole photo, resized to the recipe's image size
#   fixed   crops of the fixed fallback box (`maskcls crop --detector fixed`)
#   mtcnn   crops of the faces MTCNN finds (`maskcls crop`, the fixed box where it finds none)
# each a k-fold cv, predicted with flip TTA and scored on the hidden answers (private half,
# per attribute). Crops keep `maskcls crop`'s defaults (margin 0.3) and are saved at 192x256.
#   bash bench/crop_gain.sh DATA RUNS [CONFIG] [FOLDS]
# e.g. maskcls synth d600 --people 600 --seed 7 && bash bench/crop_gain.sh d600 crop-runs
set -euo pipefail
BIN=${BIN:-$(dirname "$0")/../.venv/bin}
DATA=${1%/} RUNS=$2 CONFIG=${3:-configs/cpu-pretrained.yaml} FOLDS=${4:-3}
started=$SECONDS
"$BIN/maskcls" crop "$DATA" "$DATA-fixed" --detector fixed --size 192x256 --quiet
echo "fixed-box crops: $((SECONDS - started)) s"
started=$SECONDS
"$BIN/maskcls" crop "$DATA" "$DATA-faces" --size 192x256 --quiet   # its table: detected / fallback shares
echo "MTCNN crops: $((SECONDS - started)) s"
submissions=()
for variant in whole:"$DATA" fixed:"$DATA-fixed" mtcnn:"$DATA-faces"; do
    name=crop-${variant%%:*} data=${variant#*:} group="$RUNS/crop-${variant%%:*}-cv$FOLDS"
    started=$SECONDS
    "$BIN/maskcls" cv "$CONFIG" --data "$data" --runs-dir "$RUNS" --folds "$FOLDS" -o "name=$name" --quiet
    trained=$SECONDS
    "$BIN/maskcls" predict "$group" --data "$data" --tta flip --quiet
    echo "$name: cv $((trained - started)) s, predict $((SECONDS - trained)) s"
    submissions+=("$group/submission.csv")
done
"$BIN/maskcls" score "${submissions[@]}" --truth "$DATA"
