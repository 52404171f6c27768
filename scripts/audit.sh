#!/usr/bin/env bash
# Checks Cargo.lock (and fuzz/Cargo.lock) against the RustSec advisory
# database with cargo-audit; ignored advisories and why: .cargo/audit.toml.
# The database is a git repository on GitHub: set AIAGC_ADVISORY_DB to a
# local clone where GitHub is out of reach (CI here reaches only package
# registries; then the check is skipped with a notice).
set -euo pipefail
cd "$(dirname "$0")/.."
db="${AIAGC_ADVISORY_DB:-$HOME/.cargo/advisory-db}"
fetch=--no-fetch
if [ ! -d "$db/crates" ]; then
  if timeout 15 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
    fetch=
  else
    echo "==> cargo audit skipped: no advisory database at $db and github.com unreachable"
    exit 0
  fi
fi
if ! command -v cargo-audit >/dev/null; then
  echo "==> installing cargo-audit"
  cargo install cargo-audit --locked --quiet
fi
for lock in Cargo.lock fuzz/Cargo.lock; do
  echo "==> cargo audit $lock"
  cargo audit --db "$db" $fetch --file "$lock" --deny warnings
done
