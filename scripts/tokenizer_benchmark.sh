#!/bin/bash
# Tokenizer, whole program on CPU: `wfm tokenizer reconstruct` (full-width CV8x8x8, random weights) against the
# Python reference (scripts/tokenizer_reference.py bench, same network and clip size), and peak memory of the
# streaming and windowed modes on video files of growing length. Each line gives wall time, CPU time (user + sys
# of all threads) and peak RSS from /usr/bin/time, with the 1-minute load average before the run: on a shared
# machine compare CPU times, wall time only means something when the load is below the core count.
#
#   scripts/tokenizer_benchmark.sh [speed] [memory]      (default: both; WORK=/tmp/wfm-tokenizer-bench)
#
# Needs build/bin/wfm and /usr/bin/python3 with torch. Writes WORK/{weights,x17}.safetensors once (420 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
WFM=${WFM:-build/bin/wfm}
PY=${PY:-/usr/bin/python3}
WORK=${WORK:-/tmp/wfm-tokenizer-bench}
THREADS=${THREADS:-2}
CLIP=${CLIP:-../shared/media/cityCC0.mpg}
what=${*:-speed memory}
mkdir -p "$WORK"
[ -f "$WORK/weights.safetensors" ] || $PY scripts/tokenizer_reference.py weights --preset CV8x8x8 --out "$WORK/weights.safetensors"
[ -f "$WORK/x17.safetensors" ] || $PY scripts/tokenizer_reference.py input --frames 17 --height 256 --width 256 --out "$WORK/x17.safetensors"

measure() {  # LABEL CMD...: one result line
  local label=$1 load
  shift
  load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -o "$WORK/time.txt" -f "%e %U %S %M" "$@" >"$WORK/log.txt" 2>&1 || { cat "$WORK/log.txt"; exit 1; }
  read -r wall user sys rss <"$WORK/time.txt"
  awk -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v a="$load" \
    'BEGIN { printf "%-52s wall %7.1f s  cpu %7.1f s  peak RSS %6.0f MB  (load %s)\n", l, w, u + s, r / 1024, a }'
}

common=(--config CV8x8x8 --weights "$WORK/weights.safetensors" --threads "$THREADS")
if [[ $what == *speed* ]]; then
  echo "# encode + decode, CV8x8x8 full width (105.7M parameters), 17x256x256, $THREADS threads"
  measure "wfm tokenizer reconstruct (streaming, default)" \
    "$WFM" tokenizer reconstruct "${common[@]}" --input "$WORK/x17.safetensors" --output "$WORK/rec.safetensors"
  measure "same, WFM_CPU_ALLOCATOR=default (LibTorch's)" \
    env WFM_CPU_ALLOCATOR=default "$WFM" tokenizer reconstruct "${common[@]}" --input "$WORK/x17.safetensors" --output "$WORK/rec.safetensors"
  measure "wfm tokenizer reconstruct --mode windowed" \
    "$WFM" tokenizer reconstruct "${common[@]}" --mode windowed --input "$WORK/x17.safetensors" --output "$WORK/rec.safetensors"
  measure "python reference (tokenizer_reference.py bench)" \
    $PY scripts/tokenizer_reference.py bench --preset CV8x8x8 --frames 17 --height 256 --width 256 --threads "$THREADS"
  grep -o '"encode_ms_per_frame.*' "$WORK/log.txt" || true
  measure "python reference, OPENBLAS_CORETYPE=SkylakeX" \
    env OPENBLAS_CORETYPE=SkylakeX $PY scripts/tokenizer_reference.py bench --preset CV8x8x8 --frames 17 --height 256 \
    --width 256 --threads "$THREADS"
  grep -o '"encode_ms_per_frame.*' "$WORK/log.txt" || true
fi
if [[ $what == *memory* ]]; then
  echo "# peak memory by mode and clip length: $CLIP resized to 256x256, video in -> video out"
  for frames in ${FRAMES:-17 41}; do
    for mode in streaming windowed; do
      measure "reconstruct $frames frames, --mode $mode" \
        "$WFM" tokenizer reconstruct "${common[@]}" --mode "$mode" --input "$CLIP" --num-frames "$frames" \
        --width 256 --height 256 --output "$WORK/rec.mp4"
    done
  done
fi
