#!/usr/bin/env bash
# Build the app bundle with PyInstaller from packaging/mlx_quant_studio.spec.
#
#   macOS: dist/MLX Quant Studio.app  (icon via iconutil; ad-hoc signed unless MQS_CODESIGN_IDENTITY is set)
#   Linux: dist/mlx-quant-studio/     (onedir folder)
#
# Usage: packaging/build.sh [--python PATH] [--dist DIR] [--work DIR]
#   PYTHON defaults to the interpreter of the active virtualenv (or python3); it must have the app's
#   dependencies and PyInstaller installed:  pip install -e ".[packaging]"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}}"
PYTHON="${PYTHON:-python3}"
DIST="$ROOT/dist"
WORK="$ROOT/build/pyinstaller"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --python) PYTHON="$2"; shift 2 ;;
        --dist) DIST="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cd "$ROOT"
"$PYTHON" -c "import PyInstaller" 2>/dev/null || {
    echo "build.sh: PyInstaller is not installed for $PYTHON (pip install -e '.[packaging]')" >&2
    exit 1
}
[[ -f resources/icon.png ]] || "$PYTHON" packaging/make_icon.py
mkdir -p "$WORK"

if [[ "$(uname -s)" == "Darwin" ]]; then
    [[ "$(uname -m)" == "arm64" ]] || echo "build.sh: warning: MLX needs Apple silicon; this is $(uname -m)" >&2
    # The .icns from the 1024 px PNG with Apple's own tool.
    ICONSET="$WORK/MLX Quant Studio.iconset"
    rm -rf "$ICONSET"
    "$PYTHON" packaging/make_icon.py --iconset "$ICONSET"
    iconutil -c icns "$ICONSET" -o "$WORK/MLX Quant Studio.icns"
    export MQS_ICNS="$WORK/MLX Quant Studio.icns"
fi

start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$DIST" --workpath "$WORK" packaging/mlx_quant_studio.spec
seconds=$(( $(date +%s) - start ))

if [[ "$(uname -s)" == "Darwin" ]]; then
    APP="$DIST/MLX Quant Studio.app"
    # PyInstaller signs each binary; verify the whole bundle's signature (ad-hoc or Developer ID).
    codesign --verify --deep --strict "$APP"
    echo "built $APP ($(du -sh "$APP" | cut -f1)) in ${seconds}s"
    echo "self-test: \"$APP/Contents/MacOS/MLX Quant Studio\" --selftest"
else
    OUT="$DIST/mlx-quant-studio"
    echo "built $OUT ($(du -sh "$OUT" | cut -f1)) in ${seconds}s"
    echo "self-test: QT_QPA_PLATFORM=offscreen $OUT/mlx-quant-studio --selftest"
fi
