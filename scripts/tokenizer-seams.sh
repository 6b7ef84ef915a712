#!/usr/bin/env bash
# Tiling seam cost on real footage (issue 3: "seam error on a real clip below 0.5 dB PSNR versus untiled"):
# scores a trained tokenizer on the held-out part of the shared clips at a resolution larger than the tiles, once
# through the whole-frame serving path and once per tile size (`wfm tokenizer eval --mode streaming [--tile T
# --tile-overlap O]`), and prints the PSNR/SSIM of each and the drop versus untiled as a Markdown table.
# Usage: scripts/tokenizer-seams.sh CONFIG.json WEIGHTS [BUILD_DIR] [OUT_DIR] [SHORT_SIDE] [TILES...]
#   e.g. scripts/tokenizer-seams.sh out/tokenizer_training/cv/config.json out/tokenizer_training/cv/model_ema.safetensors
# TILES are "tile/overlap" pairs in pixels (default: 128/32 96/32 64/16).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=$1
WEIGHTS=$2
BUILD=${3:-build}
OUT=${4:-out/tokenizer_seams}
SHORT=${5:-288}
shift $(( $# < 5 ? $# : 5 ))
TILES=("$@")
[[ ${#TILES[@]} -gt 0 ]] || TILES=(128/32 96/32 64/16)
MEDIA=${WFM_MEDIA:-../shared/media}
WFM="$BUILD/bin/wfm"
mkdir -p "$OUT"
COMMON=(--config "$CONFIG" --weights "$WEIGHTS" --input "$MEDIA" --split val --fps 10 --frames 9
        --short-side "$SHORT" --max-clips "${MAX_CLIPS:-6}" --mode streaming --device cpu)
score() {  # name, extra args...
  local name=$1
  shift
  "$WFM" tokenizer eval "${COMMON[@]}" "$@" --output "$OUT/$name.json" --save-reconstructions "$OUT/$name" >"$OUT/$name.log" 2>&1 ||
    { cat "$OUT/$name.log" >&2; exit 1; }
}
field() { /usr/bin/python3 -c "import json,sys; print('%.3f' % json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
score untiled
base=$(field "$OUT/untiled.json" mean_psnr)
echo "| tiles (px, overlap) | held-out PSNR | SSIM | PSNR drop vs untiled |"
echo "|---|---|---|---|"
echo "| untiled | $base dB | $(field "$OUT/untiled.json" mean_ssim) | - |"
for t in "${TILES[@]}"; do
  tile=${t%/*}
  overlap=${t#*/}
  score "tile$tile" --tile "$tile" --tile-overlap "$overlap"
  p=$(field "$OUT/tile$tile.json" mean_psnr)
  drop=$(/usr/bin/python3 -c "print('%.3f' % ($base - $p))")
  echo "| $tile, $overlap | $p dB | $(field "$OUT/tile$tile.json" mean_ssim) | $drop dB |"
done
