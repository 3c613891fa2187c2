#!/bin/sh
# Install the Debian packages sparq builds and tests with, when any is missing.
# Idempotent and silent when everything is present; as non-root, prints the exact command.
# `install-deps.sh fuzz` also installs what `make fuzz` needs (clang and its libFuzzer/sanitizer
# runtimes, and the OpenMP runtime the library code includes), which the ordinary build does not.
set -e
PKGS="build-essential pkg-config libopenblas-dev liblapacke-dev libgsl-dev gnuplot-nox \
libcriterion-dev libcjson-dev libinih-dev libpcre2-dev libutf8proc-dev"
if [ "${1:-}" = fuzz ]; then
    PKGS="$PKGS clang libclang-rt-14-dev libomp-14-dev"
elif [ $# -gt 0 ]; then
    echo "usage: $0 [fuzz]" >&2
    exit 2
fi
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
cmd="apt-get update && apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "sparq: missing Debian packages:$missing" >&2
    echo "run as root: $cmd" >&2
    exit 1
fi
echo "sparq: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
