#!/usr/bin/env bash
# The main job end to end on a synthetic dataset it generates (see README.md).
# Grows with the toolkit: synth -> stats (later: crop -> cv -> predict -> ensemble -> score).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=${DEMO_DATA:-demo-data}
QUIET=()
[ -n "${CI:-}" ] && QUIET=(--quiet)

echo "== synth: a synthetic competition folder in $DATA"
$BIN/maskcls synth "$DATA" --people 300 --seed 0 --overwrite "${QUIET[@]}"
echo "== stats"
$BIN/maskcls stats "$DATA" "${QUIET[@]}"
echo "== sheet: the 7 photos of a few people"
$BIN/maskcls sheet "$DATA" "$DATA/sheet.png" --people 6
