#!/usr/bin/env bash
# The test command (README.md): installs what the tests need, builds and runs the C-core
# tests (plain and under -fsanitize=address,undefined), then the Python suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Test peers from Debian, installed when missing: ffprobe and the ffmpeg CLI; GStreamer's
# qtdemux (gst-launch-1.0, gst-discoverer-1.0, the libav decoders), a headless Chromium
# <video> and strace (a SIGKILL delivered on a chosen system call) for the hybrid finish.
need=()
command -v ffprobe >/dev/null 2>&1 && command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v gst-launch-1.0 >/dev/null 2>&1 || need+=(gstreamer1.0-tools)
command -v gst-discoverer-1.0 >/dev/null 2>&1 || need+=(gstreamer1.0-plugins-base-apps)
[ -n "$(find /usr/lib -name libgstisomp4.so 2>/dev/null | head -1)" ] ||
  need+=(gstreamer1.0-plugins-good)
[ -n "$(find /usr/lib -name libgstlibav.so 2>/dev/null | head -1)" ] || need+=(gstreamer1.0-libav)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v strace >/dev/null 2>&1 || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing from Debian: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
echo "== installing pyrec with its test extras"
$PY -m pip install -q --disable-pip-version-check ".[test]"

JOBS=$(nproc 2>/dev/null || echo 2)
for variant in plain asan; do
  dir=build/ctest-$variant
  san=OFF
  [ "$variant" = asan ] && san=ON
  echo "== C core tests ($variant)"
  # Bounded fuzzing in both builds: the plain build catches what the targets' own checks see
  # (payload bounds, error messages), the sanitizer build every out-of-bounds read.
  fuzz=${PYREC_FUZZ_SECONDS_PLAIN:-3}
  [ "$variant" = asan ] && fuzz=${PYREC_FUZZ_SECONDS:-15}
  cmake -S . -B "$dir" -DPYREC_C_TESTS=ON -DPYREC_SANITIZE=$san -DPYREC_FUZZ_SECONDS=$fuzz \
    -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build "$dir" -j "$JOBS" >/dev/null
  ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$dir" --output-on-failure -j "$JOBS"
done

echo "== Python tests"
# Run from outside the source tree so the installed package (with its extension) is tested.
cd tests
exec $PY -m pytest -c ../pyproject.toml --rootdir .. "$@" .
