#!/usr/bin/env bash
# Decode throughput side by side: wfm (bench/decode_benchmark: decode + RGB, full size and 256x144; frame
# counting) and the ffmpeg tool (`ffmpeg -threads N -i X -f null -`, decode only, and with `-pix_fmt rgb24`,
# decode + the same swscale conversion) on the same 720p H.264 file made from a real clip, 1 and 2 threads.
# Usage: scripts/bench-decode.sh [BUILD_DIR]     (env: WFM_SHARED_DIR, WFM_BENCH_VIDEO, REPEATS)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
SHARED=${WFM_SHARED_DIR:-../shared}
REPEATS=${REPEATS:-3}
BENCH="$BUILD_DIR/bin/decode_benchmark"
[[ -x "$BENCH" ]] || { echo "missing $BENCH (cmake --build $BUILD_DIR --target decode_benchmark)" >&2; exit 1; }

# The test file: cityCC0.mpg (real footage, 720x405 MPEG-2) upscaled to 1280x720, H.264 CRF 20, looped 3x.
VIDEO=${WFM_BENCH_VIDEO:-${TMPDIR:-/tmp}/wfm_bench_720p.mp4}
if [[ ! -s "$VIDEO" ]]; then
  ffmpeg -v error -nostdin -y -stream_loop 2 -i "$SHARED/media/cityCC0.mpg" -an \
    -vf scale=1280:720:flags=bicubic -c:v libx264 -preset veryfast -crf 20 -pix_fmt yuv420p -r 25 "$VIDEO"
fi
FRAMES=$(ffprobe -v error -count_packets -select_streams v:0 -show_entries stream=nb_read_packets -of csv=p=0 "$VIDEO")
echo "input: $VIDEO ($FRAMES frames, $(ffprobe -v error -select_streams v:0 \
  -show_entries stream=codec_name,width,height -of csv=p=0 "$VIDEO"))"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"

# Best of REPEATS runs of an ffmpeg command -> frames/s (ffmpeg -benchmark rtime: the processing loop, without
# process start-up, like the wfm numbers).
ffmpeg_fps() {
  for _ in $(seq "$REPEATS"); do
    ffmpeg -nostdin -hide_banner -nostats -benchmark "$@" -f null - </dev/null 2>&1 | grep -a 'rtime=' |
      sed 's/.*rtime=\([0-9.]*\)s.*/\1/'
  done | awk -v n="$FRAMES" 'BEGIN { best = 0 } { if ($1 > 0 && n / $1 > best) best = n / $1 } END { printf "%.1f", best }'
}

declare -A FF
for t in 1 2; do
  FF[null_$t]=$(ffmpeg_fps -threads "$t" -i "$VIDEO")
  FF[rgb_$t]=$(ffmpeg_fps -threads "$t" -i "$VIDEO" -sws_flags bicubic+accurate_rnd+full_chroma_int -pix_fmt rgb24)
  FF[small_$t]=$(ffmpeg_fps -threads "$t" -i "$VIDEO" -sws_flags bicubic+accurate_rnd+full_chroma_int \
    -vf scale=256:144 -pix_fmt rgb24)
done

JSON=$(mktemp)
trap 'rm -f "$JSON"' EXIT
WFM_BENCH_VIDEO="$VIDEO" "$BENCH" --benchmark_format=json --benchmark_repetitions="$REPEATS" >"$JSON" 2>/dev/null

/usr/bin/python3 - "$JSON" "${FF[null_1]}" "${FF[null_2]}" "${FF[rgb_1]}" "${FF[rgb_2]}" "${FF[small_1]}" \
  "${FF[small_2]}" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
ff = [float(x) for x in sys.argv[2:]]
def wfm(name):  # best repetition, like the ffmpeg side
    fps = [r["frames/s"] for r in runs if r.get("run_type") == "iteration"
           and (r["run_name"] == name or r["run_name"].startswith(name + "/"))]
    return max(fps) if fps else float("nan")
rows = [
    ("decode only", "ffmpeg -f null", ff[0], ff[1], "wfm ProbeVideo(exact)*",
     wfm("BM_CountFrames/threads:1"), wfm("BM_CountFrames/threads:2")),
    ("decode + RGB 1280x720", "ffmpeg -pix_fmt rgb24", ff[2], ff[3], "wfm DecodeVideoStream",
     wfm("BM_DecodeRgb/threads:1/width:0"), wfm("BM_DecodeRgb/threads:2/width:0")),
    ("decode + RGB 256x144", "ffmpeg -vf scale -pix_fmt rgb24", ff[4], ff[5], "wfm DecodeVideoStream",
     wfm("BM_DecodeRgb/threads:1/width:256"), wfm("BM_DecodeRgb/threads:2/width:256")),
]
print()
print("| task | ffmpeg command | ffmpeg 1 thr | ffmpeg 2 thr | wfm | wfm 1 thr | wfm 2 thr |")
print("|---|---|---:|---:|---|---:|---:|")
for task, fcmd, f1, f2, w, w1, w2 in rows:
    print(f"| {task} | {fcmd} | {f1:.1f} | {f2:.1f} | {w} | {w1:.1f} | {w2:.1f} |")
print("\nframes/s; ffmpeg: best of REPEATS runs (-benchmark rtime); wfm: best of REPEATS repetitions.")
print("* frame counting skips the H.264 loop filter (the count is unaffected), so it is not pure decoding.")
PY
