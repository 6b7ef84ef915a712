#!/usr/bin/env bash
# Curation speed, side by side with FFmpeg on the same machine and file:
#   1. builds a 720p H.264 input (~2 min, 25 fps) from the shared clips (cityCC0, vtest, tree);
#   2. times `ffmpeg -threads 2 -i X -f null -` (decode only) and
#      `wfm curate --no-transcode` (decode + shot detection + clip rules + borders + motion + filters + hashes),
#      then `wfm curate` with transcode (libx264 veryfast 4 Mbit/s, clips at source size) and, for context,
#      `ffmpeg -threads 2 -i X -c:v libx264 -preset veryfast -b:v 4M -f null -` (a full re-encode);
#   3. alternates the runs REPEAT times and reports the median wall time, CPU time and the speed ratios
#      (ffmpeg decode wall / wfm wall; >= 0.6 is the target for the analysis).
# Usage: scripts/bench-curation.sh [BUILD_DIR] [REPEAT]    (WORK=/tmp/... to keep the files;
#        WFM_CURATE_ARGS="--decode nvdec --encoder h264_nvenc" adds options to the wfm runs)
set -euo pipefail
BUILD=${1:-build}
REPEAT=${2:-3}
WFM=$(readlink -f "$BUILD/bin/wfm")
MEDIA=$(readlink -f "$(dirname "$0")/../../shared/media")
WORK=${WORK:-$(mktemp -d /tmp/bench-curation.XXXXXX)}
mkdir -p "$WORK"
IN="$WORK/bench720.mp4"
if [[ ! -s "$IN" ]]; then
  ffmpeg -v error -y -i "$MEDIA/cityCC0.mpg" -i "$MEDIA/vtest.avi" -i "$MEDIA/tree.avi" -filter_complex \
    "[0:v]scale=1280:720,fps=25,setsar=1[a];[1:v]scale=1280:720,fps=25,setsar=1[b];[2:v]scale=1280:720,fps=25,setsar=1[c];[a][b][c]concat=n=3:v=1[v]" \
    -map "[v]" -c:v libx264 -preset veryfast -crf 20 -threads 2 "$IN"
fi
FRAMES=$(ffprobe -v error -count_packets -select_streams v -show_entries stream=nb_read_packets -of csv=p=0 "$IN")
echo "input: $IN ($FRAMES frames, 1280x720 H.264); machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# run NAME CMD...: appends "wall cpu" to $WORK/NAME.times
run() {
  local name=$1; shift
  local t0 t1 c
  rm -rf "$WORK/out"
  /usr/bin/time -f "%e %U %S" -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/$name.log"
  read -r wall user sys < "$WORK/time.txt"
  echo "$wall $(echo "$user + $sys" | bc)" >> "$WORK/$name.times"
}
rm -f "$WORK"/*.times
for ((i = 0; i < REPEAT; i++)); do
  run ffmpeg_decode ffmpeg -v error -threads 2 -i "$IN" -f null -
  run wfm_analysis "$WFM" curate --input "$IN" --output "$WORK/out" --no-transcode --workers 1 --decode-threads 2 --quiet ${WFM_CURATE_ARGS:-}
  run wfm_transcode "$WFM" curate --input "$IN" --output "$WORK/out" --workers 1 --decode-threads 2 --quiet ${WFM_CURATE_ARGS:-}
  run ffmpeg_x264 ffmpeg -v error -threads 2 -i "$IN" -c:v libx264 -preset veryfast -b:v 4M -f null -
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
printf "%-16s %10s %10s %10s\n" run "wall s" "cpu s" "frames/s"
declare -A W
for n in ffmpeg_decode wfm_analysis wfm_transcode ffmpeg_x264; do
  w=$(cut -d' ' -f1 "$WORK/$n.times" | median)
  c=$(cut -d' ' -f2 "$WORK/$n.times" | median)
  W[$n]=$w
  printf "%-16s %10.2f %10.2f %10.1f\n" "$n" "$w" "$c" "$(echo "$FRAMES / $w" | bc -l)"
done
printf "speed vs ffmpeg decode: analysis %.2fx (target >= 0.6), with transcode %.2fx; transcode vs ffmpeg x264 re-encode %.2fx\n" \
  "$(echo "${W[ffmpeg_decode]} / ${W[wfm_analysis]}" | bc -l)" \
  "$(echo "${W[ffmpeg_decode]} / ${W[wfm_transcode]}" | bc -l)" \
  "$(echo "${W[ffmpeg_x264]} / ${W[wfm_transcode]}" | bc -l)"
echo "(medians of $REPEAT alternating runs; wfm times include process start-up; files in $WORK)"
