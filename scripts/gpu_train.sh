#!/usr/bin/env bash
# Fine-tune both models at once on a GPU machine, from the shipped weights, within a time budget.
# Needs `python -m training.pack --out .pack` first (the machine has no ../shared, fonts or word list).
#   TIME_LIMIT=420 OUT=runs/gpu scripts/gpu_train.sh      # seconds of training per model, then export
#   ONLY=crnn CRNN_INIT= CRNN_WORKERS=14 CRNN_ARGS="--real-sets words sroie borndigital ..." ...
#       # the CRNN alone from scratch on all cores: docs/training.md gives the two runs that made the shipped one
#   CRNN_VARIANT=slim ...                                  # the 2.3 M-parameter CRNN instead of the full one
#   CTPN_ARGS="--hard-fraction 0.6" ...                    # CTPN options after the fixed ones (default: the CPU
#                                                          # stages' --clutter-fraction 0.7 --hard-fraction 0.4)
# A second run needs its own RUNS folder, or it resumes the first one's checkpoint. A device call's files come back
# only under 16 MiB each: split the weights there (split -b 15M) and join them here (cat).
set -uo pipefail
cd "$(dirname "$0")/.."
T=${TIME_LIMIT:-420}
OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
RUNS=${RUNS:-/tmp/ocr-runs}
CRNN_VARIANT=${CRNN_VARIANT:-full}
CRNN_INIT=${CRNN_INIT-serve_app/assets/crnn_$CRNN_VARIANT.pt}  # set it empty to train from scratch
CRNN_NAME=${CRNN_NAME:-crnn_$CRNN_VARIANT.pt}
CRNN_FROM=()
[ -n "$CRNN_INIT" ] && CRNN_FROM=(--init "$CRNN_INIT")
mkdir -p "$OUT" "$RUNS"
tar -xJf .pack/fonts.tar.xz -C .pack
export OCR_SHARED_DIR=$PWD/.pack/shared OCR_FONT_DIRS=$PWD/.pack/fonts OCR_WORDLIST=$PWD/.pack/words.txt.gz
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
$PY -c "import torch, torchvision, PIL; print(torch.__version__, torchvision.__version__, PIL.__version__, torch.cuda.is_available())"
ONLY=${ONLY:-}
read -r -a CRNN_MORE <<< "${CRNN_ARGS:-}"
# the CPU stages' frame recipe (docs/training.md): cluttered, unevenly lit and hard (small, faded, low-resolution) layouts
read -r -a CTPN_MORE <<< "${CTPN_ARGS---clutter-fraction 0.7 --hard-fraction 0.4}"
[ "$ONLY" != ctpn ] && $PY -m training.train_crnn --device "$DEVICE" --workers "${CRNN_WORKERS:-7}" --batch-size "${CRNN_BATCH:-128}" \
  --lr "${CRNN_LR:-7e-4}" --steps 30000 --time-limit "$T" --val-every "${CRNN_VAL_EVERY:-500}" --synth-fraction "${CRNN_SYNTH:-0.5}" \
  --variant "$CRNN_VARIANT" "${CRNN_FROM[@]}" "${CRNN_MORE[@]}" --out "$RUNS/crnn" --snapshot "$OUT/$CRNN_NAME" > "$OUT/crnn.log" 2>&1 &
[ "$ONLY" != crnn ] && $PY -m training.train_ctpn --device "$DEVICE" --workers "${CTPN_WORKERS:-8}" --batch-size "${CTPN_BATCH:-16}" \
  --size 512 --lr "${CTPN_LR:-5e-4}" --steps 30000 --synth-fraction 0.25 --scene-fraction "${CTPN_SCENES:-0.3}" \
  --layout-fraction "${CTPN_LAYOUTS:-0.5}" --time-limit "$T" --save-every 250 \
  --init serve_app/assets/ctpn_mobilenet_v3.pt "${CTPN_MORE[@]}" --out "$RUNS/ctpn" --snapshot "$OUT/ctpn_mobilenet_v3.pt" > "$OUT/ctpn.log" 2>&1 &
wait
[ "$ONLY" != ctpn ] && $PY -m training.train_crnn --variant "$CRNN_VARIANT" --out "$RUNS/crnn" --export --export-path "$OUT/$CRNN_NAME" \
  --export-fp32 "$OUT/crnn_fp32.pt" >> "$OUT/crnn.log" 2>&1
[ "$ONLY" != crnn ] && $PY -m training.train_ctpn --out "$RUNS/ctpn" --export --export-path "$OUT/ctpn_mobilenet_v3.pt" \
  --export-fp32 "$OUT/ctpn_fp32.pt" >> "$OUT/ctpn.log" 2>&1
ls -la "$OUT"
for m in crnn ctpn; do  # each trained model's last validation record
  if [ -f "$OUT/$m.log" ]; then tr "\r" "\n" < "$OUT/$m.log" | grep -o "{\"step.*" | tail -1; fi
done
