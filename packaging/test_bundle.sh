#!/usr/bin/env bash
# Build the bundle into a scratch folder and run its --selftest offscreen, plus one CLI command.
# Slow (a PyInstaller build takes minutes); pytest runs it with -m slow
# (tests/packaging/test_bundle_build.py).
#
# Usage: packaging/test_bundle.sh [--python PATH] [--out DIR] [--keep]
#   --out DIR   build there (default: a temporary folder, removed afterwards unless --keep)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}}"
PYTHON="${PYTHON:-python3}"
OUT=""
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) PYTHON="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "test_bundle.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ -z "$OUT" ]]; then
    OUT="$(mktemp -d "${TMPDIR:-/tmp}/mqs-bundle.XXXXXX")"
    [[ $KEEP == 1 ]] || trap 'rm -rf "$OUT"' EXIT
fi

"$ROOT/packaging/build.sh" --python "$PYTHON" --dist "$OUT/dist" --work "$OUT/work"

if [[ "$(uname -s)" == "Darwin" ]]; then
    BIN="$OUT/dist/MLX Quant Studio.app/Contents/MacOS/MLX Quant Studio"
else
    BIN="$OUT/dist/mlx-quant-studio/mlx-quant-studio"
fi
export QT_QPA_PLATFORM=offscreen
export MQS_DATA_DIR="$OUT/data"

echo "== $BIN --selftest"
start=$(date +%s)
"$BIN" --selftest
echo "selftest took $(( $(date +%s) - start ))s"

echo "== $BIN info --model default (the frozen program is the CLI too)"
"$BIN" info --model default | head -3

echo "== a bad command exits 2"
set +e
"$BIN" no-such-command >/dev/null 2>&1
rc=$?
set -e
[[ $rc == 2 ]] || { echo "expected exit 2 for a usage error, got $rc" >&2; exit 1; }
echo "bundle test passed"
