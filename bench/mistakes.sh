#!/usr/bin/env bash
# What a new user sees after common mistakes: one line per case (case | exit code | last stderr line).
#   bash bench/mistakes.sh CODE_DIR LABEL DATA     (CODE_DIR: a checkout, e.g. `git worktree add ../before REV`)
# DATA: a small synthetic set (maskcls synth DATA --people 30). Compare two checkouts line by line.
CODE=$(realpath "$1"); L=$2
PY=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}  # absolute, not resolved: the venv's
export PYTHONPATH=$CODE/src CI=1
D=$(realpath "$3")
W=${TMPDIR:-/tmp}/maskcls-mistakes-$L; rm -rf $W; mkdir -p $W; cd $W
printf 'name: r\nmodel: {name: test_resnet}\ntrain: {epochs: 1, image_size: [24, 32], folds: 3}\n' > r.yaml
printf 'train:\n  epochs: 3\n  epochs: 5\n' > dup.yaml
run() { local name=$1; shift; out=$(timeout 300 $PY -m maskcls.cli "$@" 2>&1 >/dev/null); code=$?; echo "$name | $code | $(echo "$out" | grep -v '^\s*$' | tail -1 | cut -c1-230)"; }
run "train.device=cuda" train r.yaml --data $D --runs-dir runs -q -o train.device=cuda
run "train.device=gpu" train r.yaml --data $D --runs-dir runs -q -o train.device=gpu
run "cv --devices cuda:0,cuda:1" cv r.yaml --data $D --runs-dir runs -q --devices cuda:0,cuda:1
run "optim.name=adamx" train r.yaml --data $D --runs-dir runs -q -o optim.name=adamx
run "sweep adamw,adamx" sweep r.yaml --data $D --runs-dir runs -q --vary optim.name=adamw,adamx
run "duplicate YAML key" train dup.yaml --data $D --runs-dir runs -q
run "ensemble A B (no --out)" ensemble a.csv b.csv
run "loss weight x3 on multi" train r.yaml --data $D --runs-dir runs -q -o model.head=multi -o "loss=[{name: cross_entropy, options: {weight: [1,2,3]}}]"
run "train (for the next cases)" train r.yaml --data $D --runs-dir runs -q -o name=base
run "predict --batch-size 0" predict runs/base-fold0 --data $D --batch-size 0 -q
run "serve --port 99999" serve runs/base-fold0 --port 99999
run "weights=runs/.../best.pt" train r.yaml --data $D --runs-dir runs -q -o name=ft -o model.weights=runs/base-fold0/best.pt
echo "runs folder after the weights case: $(ls runs | tr '\n' ' ')"
run "cv (for the next cases)" cv r.yaml --data $D --runs-dir runs -q
run "export GROUP" export runs/r-cv3
run "train --resume GROUP" train --resume runs/r-cv3
run "predict --data DATA/eval" predict runs/r-cv3 --data $D/eval -q
run "predict (for score)" predict runs/r-cv3 --data $D -q
run "score --truth DATA/truth" score runs/r-cv3/submission.csv --truth $D/truth
