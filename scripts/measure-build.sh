#!/usr/bin/env bash
# Measures the build the README's commands run: a clean build (ccache off, then ccache warm) and three
# incremental rebuilds (one .cc body, one module-private header, one widely included core header), each as wall
# time and CPU time (user+sys). CPU time is the load-independent number on a shared machine; wall time on an idle
# machine is about CPU / cores. Results go to stdout as a Markdown table (docs/PERFORMANCE.md, "Build").
# Usage: [SKIP_COLD=1] scripts/measure-build.sh [BUILD_DIR=build-measure] [JOBS=nproc]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-measure}
JOBS=${2:-$(nproc)}
CONFIG=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE=/usr/bin/python3)
rows=()
LOG=$(mktemp /tmp/measure-build.XXXXXX.log)

# timed LABEL CMD... : runs CMD, appends "| LABEL | wall s | cpu s | steps |" to rows.
timed() {
  local label=$1; shift
  local t0 c0 t1 c1 steps
  t0=$(date +%s.%N)
  c0=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
  "$@" > "$LOG" 2>&1 || { tail -30 "$LOG"; exit 1; }
  t1=$(date +%s.%N)
  # children's CPU (cutime+cstime) accumulates in this shell's /proc stat once they are waited for.
  c1=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat)
  steps=$(grep -c '^\[' "$LOG" || true)
  rows+=("| $label | $(printf '%.0f' "$(echo "$t1 - $t0" | bc)") | $(( (c1 - c0) / $(getconf CLK_TCK) )) | $steps |")
}

if [[ -z ${SKIP_COLD:-} ]]; then  # SKIP_COLD=1: leave out the (long) build without ccache
  rm -rf "$BUILD"
  cmake -S . -B "$BUILD" "${CONFIG[@]}" > /dev/null
  timed "clean, ccache disabled" env CCACHE_DISABLE=1 cmake --build "$BUILD" -j "$JOBS"
fi
rm -rf "$BUILD"
cmake -S . -B "$BUILD" "${CONFIG[@]}" > /dev/null
timed "clean, ccache warm" cmake --build "$BUILD" -j "$JOBS"
timed "no-op" cmake --build "$BUILD" -j "$JOBS"

touch_and_build() {  # LABEL FILE
  local label=$1 file=$2
  echo "// measure-build $(date +%s%N)" >> "$file"
  timed "$label ($file)" env CCACHE_DISABLE=1 cmake --build "$BUILD" -j "$JOBS"
  sed -i '$ d' "$file"
}
touch_and_build "edit one .cc" tokenizer/src/fsq.cc
touch_and_build "edit a module header" tokenizer/include/wfm/tokenizer/fsq.h
touch_and_build "edit a core header" core/include/wfm/core/status.h
cmake --build "$BUILD" -j "$JOBS" > /dev/null 2>&1  # back to the committed sources

echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), load average at end: $(cut -d' ' -f1-3 /proc/loadavg); jobs: $JOBS; $(date -u +%F)"
echo
echo "| build | wall s | CPU s (user+sys) | ninja steps |"
echo "|---|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
