#!/usr/bin/env bash
# Fine-tune both models at once on a GPU machine, from the shipped weights, within a time budget.
# Needs `python -m training.pack --out .pack` first (the machine has no ../shared, fonts or word list).
#   TIME_LIMIT=420 OUT=runs/gpu scripts/gpu_train.sh      # seconds of training per model, then export
set -uo pipefail
cd "$(dirname "$0")/.."
T=${TIME_LIMIT:-420}
OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
RUNS=${RUNS:-/tmp/ocr-runs}
mkdir -p "$OUT" "$RUNS"
tar -xJf .pack/fonts.tar.xz -C .pack
export OCR_SHARED_DIR=$PWD/.pack/shared OCR_FONT_DIRS=$PWD/.pack/fonts OCR_WORDLIST=$PWD/.pack/words.txt.gz
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
$PY -c "import torch, torchvision, PIL; print(torch.__version__, torchvision.__version__, PIL.__version__, torch.cuda.is_available())"
$PY -m training.train_crnn --device "$DEVICE" --workers "${CRNN_WORKERS:-7}" --batch-size "${CRNN_BATCH:-128}" \
  --lr "${CRNN_LR:-7e-4}" --steps 30000 --time-limit "$T" --val-every 500 --synth-fraction "${CRNN_SYNTH:-0.5}" \
  --init serve_app/assets/crnn_slim.pt --out "$RUNS/crnn" --snapshot "$OUT/crnn_slim.pt" > "$OUT/crnn.log" 2>&1 &
$PY -m training.train_ctpn --device "$DEVICE" --workers "${CTPN_WORKERS:-8}" --batch-size "${CTPN_BATCH:-16}" \
  --size 512 --lr "${CTPN_LR:-5e-4}" --steps 30000 --synth-fraction 0.25 --scene-fraction 0.35 --time-limit "$T" --save-every 250 \
  --init serve_app/assets/ctpn_mobilenet_v3.pt --out "$RUNS/ctpn" --snapshot "$OUT/ctpn_mobilenet_v3.pt" > "$OUT/ctpn.log" 2>&1 &
wait
$PY -m training.train_crnn --out "$RUNS/crnn" --export --export-path "$OUT/crnn_slim.pt" \
  --export-fp32 "$OUT/crnn_fp32.pt" >> "$OUT/crnn.log" 2>&1
$PY -m training.train_ctpn --out "$RUNS/ctpn" --export --export-path "$OUT/ctpn_mobilenet_v3.pt" \
  --export-fp32 "$OUT/ctpn_fp32.pt" >> "$OUT/ctpn.log" 2>&1
ls -la "$OUT"
tr "\r" "\n" < "$OUT/crnn.log" | grep -o "{\"step.*" | tail -1
tr "\r" "\n" < "$OUT/ctpn.log" | grep -o "{\"step.*" | tail -1
