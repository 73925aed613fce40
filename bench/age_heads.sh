#!/usr/bin/env bash
# Age heads side by side: k-fold cv of one recipe per head, predicted (flip TTA), each scored
# plain and with its calibration (learned age borders for heads that estimate the age, then the
# per-class biases), on the hidden answers (private half, per attribute).
#   [ONLY="ordinal regression"] bash bench/age_heads.sh DATA-faces RUNS [CONFIG] [FOLDS]
# e.g. maskcls synth d600 --people 600 --seed 7 && maskcls crop d600 d600-faces --size 192x256
#      bash bench/age_heads.sh d600-faces age-runs configs/cpu-pretrained.yaml 3
set -euo pipefail
BIN=${BIN:-$(dirname "$0")/../.venv/bin}
DATA=$1 RUNS=$2 CONFIG=${3:-configs/cpu-pretrained.yaml} FOLDS=${4:-3}
variants=(
    "classes -o model.age_head=classes"
    "classes-cut58 -o model.age_head=classes -o data.age_borders=[30,58]"
    "ordinal -o model.age_head=ordinal"
    "regression -o model.age_head=regression"
    "distribution -o model.age_head=distribution"
)
submissions=()
for spec in "${variants[@]}"; do
    read -r -a words <<<"$spec"
    name=${words[0]} group="$RUNS/${words[0]}-cv$FOLDS"
    if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then
        [ -f "$group/submission.csv" ] && submissions+=("$group/submission.csv" "$group/submission-calibrated.csv")
        continue
    fi
    started=$(date +%s)
    "$BIN/maskcls" cv "$CONFIG" --data "$DATA" --runs-dir "$RUNS" --folds "$FOLDS" -o "name=$name" "${words[@]:1}" --quiet
    trained=$(date +%s)
    "$BIN/maskcls" predict "$group" --data "$DATA" --tta flip --quiet
    "$BIN/maskcls" calibrate "$group"
    "$BIN/maskcls" ensemble "$group" --calibration "$group/calibration.json" --out "$group/submission-calibrated.csv"
    echo "$name: cv $((trained - started)) s; $(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('OOF F1', r['oof_f1'], 'age F1', r['oof_f1_age'], 'MAE', r.get('oof_age_mae'))" "$group/cv.json")"
    submissions+=("$group/submission.csv" "$group/submission-calibrated.csv")
done
"$BIN/maskcls" score "${submissions[@]}" --truth "$DATA"
