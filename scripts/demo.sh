#!/usr/bin/env bash
# README command 1: install everything, build, and run `aiagc demo` on the
# embedded simulator. Extra arguments go to `aiagc demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
AIAGC_BUILD=release bash scripts/setup.sh
export AIAGC_CACHE=${AIAGC_CACHE:-$HOME/.cache/aiagc}
export AIAGC_MODELS=${AIAGC_MODELS:-$AIAGC_CACHE/models}
echo "==> build (release)"
cargo build --release --quiet --bin aiagc
exec target/release/aiagc demo "$@"
