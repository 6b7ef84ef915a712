#!/usr/bin/env bash
# The tokenizer training acceptance run (docs/PERFORMANCE.md, "Tokenizer / Training"): a small CV4x8x8-shaped and
# a small DV4x8x8-shaped tokenizer trained from scratch on the shared real clips (../shared/media; the last 15% of
# every video, by time, held out) for at most MINUTES minutes each, then scored on the held-out clips with
# `wfm tokenizer eval`. Outputs: OUT/{cv,dv}/ (metrics.jsonl, curves.svg, samples/recon_*.png, model_ema.safetensors,
# config.json, summary.json, eval.json) and OUT/eval_{cv,dv}/clip_*.png.
# STEPS sets the length of the warmup + cosine schedule (pick it so the run ends within MINUTES on the machine at
# hand; --max-time is the hard cap either way).
# Usage: scripts/train-tokenizer-acceptance.sh [BUILD_DIR] [OUT] [MINUTES] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=${2:-out/tokenizer_training}
MINUTES=${3:-20}
STEPS=${4:-1500}
WFM="$BUILD/bin/wfm"
MEDIA=${WFM_MEDIA:-../shared/media}
COMMON=(--input "$MEDIA" --fps 10 --frames 9 --size 64 --short-side 72 --batch-size 4 --channels 16
        --steps "$STEPS" --max-time "${MINUTES}m" --lr 1e-3 --warmup 50 --eval-every 200 --sample-every 400
        --checkpoint-every 400 --val-clips 16 --log-every 10)
mkdir -p "$OUT"
for kind in cv dv; do
  config=$([[ $kind == cv ]] && echo CV4x8x8 || echo DV4x8x8)
  echo "== $config: training for at most $MINUTES min =="
  /usr/bin/time -v "$WFM" tokenizer train --config "$config" --output "$OUT/$kind" "${COMMON[@]}" \
    2> >(tee "$OUT.$kind.stderr" >&2)
  echo "== $config: held-out evaluation =="
  "$WFM" tokenizer eval --config "$OUT/$kind/config.json" --weights "$OUT/$kind/model_ema.safetensors" \
    --input "$MEDIA" --split val --fps 10 --frames 9 --size 64 --short-side 72 \
    --output "$OUT/$kind/eval.json" --save-reconstructions "$OUT/eval_$kind"
done
