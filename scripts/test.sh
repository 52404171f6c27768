#!/usr/bin/env bash
# README command 2: install what the tests need, then run the whole suite
# (unit, integration and doc tests of every workspace crate).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export AIAGC_CACHE=${AIAGC_CACHE:-$HOME/.cache/aiagc}
export AIAGC_MODELS=${AIAGC_MODELS:-$AIAGC_CACHE/models}
profile=default
[ "${CI:-}" = "true" ] && profile=ci
echo "==> tests (nextest profile $profile)"
cargo nextest run --workspace --lib --bins --tests --profile "$profile"
echo "==> doc tests"
cargo test --workspace --doc --quiet
