#!/usr/bin/env bash
# The main job end to end on a synthetic dataset it generates (see README.md).
# Grows with the toolkit: synth -> crop -> stats -> train (later: cv -> predict -> ensemble -> score).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=${DEMO_DATA:-demo-data}
QUIET=()
[ -n "${CI:-}" ] && QUIET=(--quiet)

echo "== synth: a synthetic competition folder in $DATA"
$BIN/maskcls synth "$DATA" --people 300 --seed 0 --overwrite "${QUIET[@]}"
echo "== crop: faces found by MTCNN (fixed box where none), same layout in $DATA-faces"
$BIN/maskcls crop "$DATA" "$DATA-faces" --size 192x256 --overwrite "${QUIET[@]}"
echo "== stats of the cropped set"
$BIN/maskcls stats "$DATA-faces" "${QUIET[@]}"
echo "== train: configs/cpu-demo.yaml on fold 0 of the cropped set (run folder under runs/)"
$BIN/maskcls train configs/cpu-demo.yaml --data "$DATA-faces" "${QUIET[@]}"
echo "== sheet: the 7 photos of a few people, before and after cropping"
$BIN/maskcls sheet "$DATA" "$DATA/sheet.png" --people 6
$BIN/maskcls sheet "$DATA-faces" "$DATA-faces/sheet.png" --people 6
