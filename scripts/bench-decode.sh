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

# Best of REPEATS runs of an ffmpeg command -> "wall_fps cpu_fps": frames per second of the processing loop
# (ffmpeg -benchmark rtime, without process start-up, like the wfm numbers) and frames per CPU-second (utime +
# stime, all threads), which stays meaningful on a machine shared with other jobs.
ffmpeg_fps() {
  for _ in $(seq "$REPEATS"); do
    ffmpeg -nostdin -hide_banner -nostats -benchmark "$@" -f null - </dev/null 2>&1 | grep -a 'rtime=' |
      sed 's/.*utime=\([0-9.]*\)s stime=\([0-9.]*\)s rtime=\([0-9.]*\)s.*/\1 \2 \3/'
  done | awk -v n="$FRAMES" '{ if ($3 > 0 && n / $3 > w) w = n / $3; c0 = $1 + $2; if (c0 > 0 && n / c0 > c) c = n / c0 }
                             END { printf "%.1f,%.1f", w, c }'
}

FF=()
for t in 1 2; do
  FF+=("$(ffmpeg_fps -threads "$t" -i "$VIDEO")")
done
for t in 1 2; do
  FF+=("$(ffmpeg_fps -threads "$t" -i "$VIDEO" -sws_flags bicubic+full_chroma_int -pix_fmt rgb24)")
done
for t in 1 2; do
  FF+=("$(ffmpeg_fps -threads "$t" -i "$VIDEO" -sws_flags bicubic+full_chroma_int -vf scale=256:144 -pix_fmt rgb24)")
done

JSON=$(mktemp)
trap 'rm -f "$JSON"' EXIT
WFM_BENCH_VIDEO="$VIDEO" "$BENCH" --benchmark_format=json --benchmark_repetitions="$REPEATS" >"$JSON" 2>/dev/null

/usr/bin/python3 - "$JSON" "${FF[@]}" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["benchmarks"]
ff = [tuple(float(v) for v in x.split(",")) for x in sys.argv[2:]]  # (wall fps, cpu fps) per ffmpeg run
def wfm(name):  # best repetition, like the ffmpeg side: (wall fps, cpu fps)
    sel = [r for r in runs if r.get("run_type") == "iteration"
           and (r["run_name"] == name or r["run_name"].startswith(name + "/"))]
    if not sel:
        return (float("nan"), float("nan"))
    return (max(r["frames/s"] for r in sel), max(r["frames/cpu_s"] for r in sel))
rows = [
    ("decode only", "ffmpeg -f null", ff[0], ff[1], "ProbeVideo(exact)*",
     wfm("BM_CountFrames/threads:1"), wfm("BM_CountFrames/threads:2")),
    ("decode + RGB 1280x720", "ffmpeg -pix_fmt rgb24", ff[2], ff[3], "DecodeVideoStream",
     wfm("BM_DecodeRgb/threads:1/width:0"), wfm("BM_DecodeRgb/threads:2/width:0")),
    ("decode + RGB 256x144", "ffmpeg -vf scale=256:144 -pix_fmt rgb24", ff[4], ff[5], "DecodeVideoStream",
     wfm("BM_DecodeRgb/threads:1/width:256"), wfm("BM_DecodeRgb/threads:2/width:256")),
]
for title, k in (("frames/s (wall clock)", 0), ("frames per CPU-second (all threads)", 1)):
    print(f"\n{title}\n")
    print("| task | ffmpeg command | ffmpeg 1 thr | ffmpeg 2 thr | wfm | wfm 1 thr | wfm 2 thr |")
    print("|---|---|---:|---:|---|---:|---:|")
    for task, fcmd, f1, f2, w, w1, w2 in rows:
        print(f"| {task} | `{fcmd}` | {f1[k]:.1f} | {f2[k]:.1f} | {w} | {w1[k]:.1f} | {w2[k]:.1f} |")
print("\nbest of REPEATS runs each (ffmpeg: -benchmark rtime / utime+stime; wfm: Google Benchmark repetitions,")
print("getrusage). Both use swscale bicubic + full chroma interpolation for RGB.")
print("* frame counting skips the H.264 loop filter (the count is unaffected), so it is not pure decoding.")
PY
