#!/usr/bin/env bash
# Builds the Asterisk that the tests run against, from the unmodified source
# in ../shared/asterisk (22.10.1), with only the modules aiagc's tests need,
# into $AIAGC_CACHE/asterisk/<version>-<options hash>. Idempotent: a finished
# build (its stamp file) is reused; a host Asterisk is used instead when
# AIAGC_ASTERISK points at its binary.
#
# Prints the prefix on success. Build time on 2 cores: about 5 minutes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${AIAGC_CACHE:-$HOME/.cache/aiagc}
tarball=${AIAGC_ASTERISK_TARBALL:-$repo/../shared/asterisk/asterisk-22.10.1.tar.xz}
version=22.10.1

if [ -n "${AIAGC_ASTERISK:-}" ]; then
  if [ -x "$AIAGC_ASTERISK" ]; then
    echo "$AIAGC_ASTERISK"
    exit 0
  fi
  echo "asterisk.sh: AIAGC_ASTERISK=$AIAGC_ASTERISK is not an executable" >&2
  exit 1
fi

# The modules the tests use; everything else is left out (faster build, and
# the bundled sounds and pjproject would be downloaded at build time).
modules=(
  app_playback app_record app_stasis app_senddtmf app_echo app_dial app_exec
  app_verbose app_originate app_db app_system app_waitforsilence app_amd chan_rtp pbx_config
  func_channel func_strings func_rand func_logic func_db func_callerid func_cut func_cdr
  res_ari res_ari_applications res_ari_asterisk res_ari_bridges res_ari_channels
  res_ari_device_states res_ari_endpoints res_ari_events res_ari_playbacks
  res_ari_recordings res_ari_sounds res_ari_model
  res_stasis res_stasis_answer res_stasis_playback res_stasis_recording
  res_stasis_snoop res_stasis_device_state res_http_websocket
  res_rtp_asterisk res_timing_timerfd res_sorcery_config res_sorcery_memory
  res_sorcery_astdb bridge_simple bridge_softmix bridge_holding bridge_native_rtp
  format_wav format_pcm format_sln format_g722
  codec_ulaw codec_alaw codec_resample codec_a_mu codec_g722
  chan_websocket res_websocket_client res_audiosocket chan_audiosocket app_audiosocket
  res_agi res_convert
)
categories=(
  MENUSELECT_ADDONS MENUSELECT_APPS MENUSELECT_BRIDGES MENUSELECT_CDR MENUSELECT_CEL
  MENUSELECT_CHANNELS MENUSELECT_CODECS MENUSELECT_FORMATS MENUSELECT_FUNCS
  MENUSELECT_PBX MENUSELECT_RES MENUSELECT_TESTS MENUSELECT_UTILS MENUSELECT_AGIS
  MENUSELECT_CORE_SOUNDS MENUSELECT_MOH MENUSELECT_EXTRA_SOUNDS
)

[ -f "$tarball" ] || { echo "asterisk.sh: no source tarball at $tarball" >&2; exit 1; }
mkdir -p "$cache/asterisk"
# One build at a time (parallel test processes may all ask for it).
exec 9>"$cache/asterisk/.lock"
flock 9
key=$( (echo "$version"; printf '%s\n' "${modules[@]}"; sha256sum "$tarball" | cut -c1-16) | sha256sum | cut -c1-12)
prefix="$cache/asterisk/$version-$key"
if [ -f "$prefix/.built" ] && [ -x "$prefix/sbin/asterisk" ]; then
  echo "$prefix"
  exit 0
fi

build="$cache/asterisk/build-$key"
log="$cache/asterisk/build-$key.log"
rm -rf "$build" "$prefix"
mkdir -p "$build"
echo "asterisk.sh: building Asterisk $version into $prefix (log: $log)" >&2
{
  tar -xJf "$tarball" -C "$build" --strip-components=1
  cd "$build"
  ./configure --prefix="$prefix" --without-pjproject-bundled --without-pjproject \
    --with-jansson --without-dahdi --without-pri --without-ss7 --without-openr2 \
    --disable-xmldoc
  make menuselect.makeopts
  for c in "${categories[@]}"; do
    menuselect/menuselect --disable-category "$c" menuselect.makeopts
  done
  for m in "${modules[@]}"; do
    # A module whose dependencies are missing here (res_pjproject without
    # pjproject) is left out rather than failing the build.
    menuselect/menuselect --enable "$m" menuselect.makeopts || true
  done
  menuselect/menuselect --disable BUILD_NATIVE menuselect.makeopts || true
  make -j"$(nproc)"
  make install
} >"$log" 2>&1 || { tail -40 "$log" >&2; echo "asterisk.sh: build failed (full log: $log)" >&2; exit 1; }
rm -rf "$build"
touch "$prefix/.built"
[ -n "${AIAGC_KEEP_BUILD_LOG:-}" ] || rm -f "$log"
# Builds of other module lists or sources are not needed any more.
for old in "$cache/asterisk/$version"-* "$cache/asterisk"/build-*.log; do
  [ "$old" = "$prefix" ] || [ "$old" = "$log" ] || rm -rf "$old"
done
echo "$prefix"
