#!/usr/bin/env bash
# Installs the German caller recordings that the [aiagc-loadtest] context
# plays (deploy/asterisk/extensions.conf) into Asterisk's sound folder, as
# 8 kHz 16-bit mono WAV and as 16 kHz .wav16 (for g722 calls, which would
# otherwise hear the 8 kHz file). Run on the Asterisk host after scripts/setup.sh
# (which generates the fixtures); idempotent.
#   bash scripts/loadtest-sounds.sh [/var/lib/asterisk/sounds/de/aiagc]
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-/var/lib/asterisk/sounds/de/aiagc}"
src=fixtures/generated/de
command -v sox >/dev/null || { echo "sox is missing: apt-get install -y sox" >&2; exit 1; }
[ -d "$src" ] || { echo "$src is missing: run bash scripts/setup.sh first" >&2; exit 1; }
mkdir -p "$dest"
for id in book_01 book_02; do
  in="$src/${id}_v1_r150_16k.wav"
  for rate in 8000 16000; do
    out="$dest/$id.wav"; [ "$rate" = 16000 ] && out="$dest/$id.wav16"
    if [ ! -s "$out" ] || [ "$in" -nt "$out" ]; then
      sox "$in" -t wav -r "$rate" -b 16 -c 1 "$out"
      echo "installed $out"
    else
      echo "$out is up to date"
    fi
  done
done
if id asterisk >/dev/null 2>&1; then chown -R asterisk:asterisk "$dest"; fi
