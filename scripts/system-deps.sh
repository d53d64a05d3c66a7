#!/usr/bin/env bash
# The system packages the test suite needs, installed with apt-get when missing (a fresh Debian
# machine with Node). `npm test` runs this first; it does nothing when every command is present.
#
#   command   Debian package   needed by
#   g++       g++              the CUDA kernels built for the CPU emulator (test/native/emulator.test.ts)
#
# Without apt-get, or without root (or password-less sudo), it names what is missing and exits 0:
# the tests that need a missing package then fail with their own error.
set -euo pipefail

NEEDED=(
  "g++:g++"
)

missing=()
for entry in "${NEEDED[@]}"; do
  command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry##*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "system-deps: missing ${missing[*]}; no root or sudo to install them (apt-get install ${missing[*]})" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: missing ${missing[*]}; no apt-get here: install them with your package manager" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
