#!/usr/bin/env bash
# The tokenizer training acceptance run (docs/PERFORMANCE.md, "Tokenizer / Training"): a small CV4x8x8-shaped and
# a small DV4x8x8-shaped tokenizer trained from scratch on the shared real clips (../shared/media; the last 15% of
# every video, by time, held out), both at once with one thread each (the two cores), for at most MINUTES minutes,
# then scored on the held-out clips with `wfm tokenizer eval`. Outputs: OUT/{cv,dv}/ (metrics.jsonl, curves.svg,
# samples/recon_*.png, model_ema.safetensors, config.json, summary.json, eval.json), OUT/eval_{cv,dv}/clip_*.png
# and OUT/{cv,dv}.time (GNU time -v: CPU seconds, peak RSS).
# STEPS sets the length of the warmup + cosine schedule (700 steps = ~14 min of the 2 free cores, ~1.2 CPU s per
# step); --max-time is the hard cap either way. Run it again with the same OUT to resume an interrupted run.
# Usage: scripts/train-tokenizer-acceptance.sh [BUILD_DIR] [OUT] [MINUTES] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=${2:-out/tokenizer_training}
MINUTES=${3:-20}
STEPS=${4:-700}
WFM="$BUILD/bin/wfm"
MEDIA=${WFM_MEDIA:-../shared/media}
COMMON=(--input "$MEDIA" --fps 10 --frames 9 --size 64 --short-side 72 --batch-size 4 --channels 16
        --steps "$STEPS" --max-time "${MINUTES}m" --lr 1e-3 --warmup 50 --eval-every 175 --sample-every 350
        --checkpoint-every 175 --val-clips 16 --log-every 10 --threads 1)
mkdir -p "$OUT"
echo "== CV4x8x8 and DV4x8x8: training for at most $MINUTES min (one thread each) =="
pids=()
for kind in cv dv; do
  config=$([[ $kind == cv ]] && echo CV4x8x8 || echo DV4x8x8)
  /usr/bin/time -v -o "$OUT/$kind.time" "$WFM" tokenizer train --config "$config" --output "$OUT/$kind" \
    "${COMMON[@]}" >"$OUT/$kind.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
for kind in cv dv; do
  tail -n 3 "$OUT/$kind.log"
  grep -E "User time|System time|Elapsed|Maximum resident" "$OUT/$kind.time"
  echo "== $kind: held-out evaluation =="
  "$WFM" tokenizer eval --config "$OUT/$kind/config.json" --weights "$OUT/$kind/model_ema.safetensors" \
    --input "$MEDIA" --split val --fps 10 --frames 9 --size 64 --short-side 72 --threads 1 \
    --output "$OUT/$kind/eval.json" --save-reconstructions "$OUT/eval_$kind"
done
