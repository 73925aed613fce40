#!/usr/bin/env bash
# The package as a teammate gets it: build the wheel, install it (not editable) into a fresh
# virtualenv, and run synth -> crop (MTCNN) -> train (a shipped recipe by name, 1 epoch) ->
# predict -> score -> serve (/health, one /predict) in a temporary folder outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
started=$SECONDS
echo "== wheel"
$PYTHON -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" .
rm -rf build  # setuptools leaves its build folder in the checkout
echo "== fresh virtualenv, plain pip install of $(basename "$WORK"/dist/maskcls-*.whl)"
$PYTHON -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --upgrade pip
"$WORK/venv/bin/python" -m pip install --quiet --no-cache-dir "$WORK"/dist/maskcls-*.whl
BIN=$WORK/venv/bin
cd "$WORK"
echo "== synth, crop, train cpu-demo (by name), predict, score in $WORK"
$BIN/maskcls synth data --people 12 --eval-people 4 --seed 3 --quiet
$BIN/maskcls crop data faces --size 48x64 --quiet
$BIN/maskcls train cpu-demo --data faces --folds 3 --runs-dir runs -o train.epochs=1 \
    -o 'train.image_size=[24,32]' --quiet
$BIN/maskcls predict runs/cpu-demo-fold0 --data faces --backend torch --quiet
$BIN/maskcls score runs/cpu-demo-fold0/submission.csv --truth faces
echo "== serve"
PORT=$($BIN/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$BIN/maskcls serve runs/cpu-demo-fold0 --port "$PORT" --backend torch --quiet &
$BIN/python - "$PORT" "$(ls data/eval/images/*.jpg | head -1)" <<'PY'
import json, sys, time, urllib.request, uuid

port, photo = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
for _ in range(120):
    try:
        health = json.load(urllib.request.urlopen(f"{base}/health"))
        break
    except OSError:
        time.sleep(0.5)
else:
    sys.exit("the service did not answer /health within 60 s")
boundary = uuid.uuid4().hex
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n").encode() + open(photo, "rb").read() + f"\r\n--{boundary}--\r\n".encode()
request = urllib.request.Request(f"{base}/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
(result,) = json.load(urllib.request.urlopen(request))["results"]
print(f"/health {health}; /predict: class {result['class']} ({result['label']}), face {result['face_source']}")
PY
echo "== the installed package works outside the checkout ($((SECONDS - started)) s)"
