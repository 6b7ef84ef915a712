#!/usr/bin/env bash
# The main job (`make demo`). Usage: scripts/demo.sh [BUILD_DIR] [--quick]
# Runs `wfm demo`, which writes out/demo/ (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
shift || true
exec "$BUILD_DIR/bin/wfm" demo --shared "${WFM_SHARED_DIR:-../shared}" --output out/demo "$@"
