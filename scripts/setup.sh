#!/usr/bin/env bash
# Installs every dependency Tessera needs on a fresh Debian 12 machine (Debian packages and
# PyPI only) and is safe to run again: it installs only what is missing.
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git unzip curl ca-certificates
  clang libclang-rt-14-dev                      # libFuzzer + ASan for the parser fuzz targets
  libabsl-dev                                   # Status/StatusOr, strings, flags, sync
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libopenmpi-dev openmpi-bin                    # mpirun, CPU collectives
  libhwy-dev                                    # portable SIMD with run-time dispatch
  libcli11-dev nlohmann-json3-dev libutf8proc-dev libcpp-httplib-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  openssl                                       # self-signed certificates for the TLS tests
  python3-venv
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --no-python: the Debian packages only (what a container image's build stage needs).
if [ "${1:-}" = "--no-python" ]; then echo "[setup] done (Debian packages only)"; exit 0; fi

# Python tools for fetching the default model and for test references, in a venv under the
# cache so that system Python stays untouched.
CACHE="${TESSERA_CACHE:-$HOME/.cache/tessera}"
VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating Python venv in $VENV"
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$(dirname "$0")/requirements.txt"
echo "[setup] done"
