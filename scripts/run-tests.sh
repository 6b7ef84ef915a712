#!/usr/bin/env bash
# Runs every test: the GoogleTest suites through ctest (each TEST a ctest test, counted) and the pytest suite.
# Usage: scripts/run-tests.sh [BUILD_DIR] [extra ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
shift || true
JOBS=${WFM_TEST_JOBS:-$(nproc)}
start=$(date +%s)
status=0
echo "== ctest (${BUILD_DIR}, -j ${JOBS}) =="
(cd "$BUILD_DIR" && ctest --output-on-failure -j "$JOBS" "$@") || status=1
if [[ -d python/tests ]] && compgen -G "$BUILD_DIR/python/wfm/_wfm*.so" >/dev/null; then
  echo "== pytest =="
  PYTHONPATH="$PWD/$BUILD_DIR/python${PYTHONPATH:+:$PYTHONPATH}" WFM_BINARY_DIR="$PWD/$BUILD_DIR" \
    /usr/bin/python3 -m pytest -q python/tests || status=1
fi
echo "== all tests finished in $(( $(date +%s) - start )) s: $([[ $status == 0 ]] && echo PASSED || echo FAILED) =="
exit $status
