#!/bin/sh
# Wall time of the default sweep (configs/quick.ini) from scratch and when rerun (everything
# recorded: nothing but loading the records), and the share of the sweep spent outside compress
# and eval (loading, calibration sampling, tokenizing, writing records), from the records' own
# timings. Uses a temporary results folder, so results/quick is left alone.
set -eu
cd "$(dirname "$0")/.."
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
t0=$(date +%s.%N)
./sparq sweep configs/quick.ini --out "$OUT" 2>/dev/null
t1=$(date +%s.%N)
./sparq sweep configs/quick.ini --out "$OUT" 2>/dev/null
t2=$(date +%s.%N)
inside=$(grep -o '"seconds":{[^}]*}' "$OUT/runs.jsonl" | \
    awk -F'[:,}]' '{ for (i = 1; i < NF; i++) { if ($i ~ /"compress"/ || $i ~ /"eval"/) s += $(i+1) } } END { print s }')
awk -v a="$t0" -v b="$t1" -v c="$t2" -v in_="$inside" -v n="$(wc -l < "$OUT/runs.jsonl")" 'BEGIN {
    w = b - a
    printf "configs/quick.ini: %d runs, %.1f s from scratch, %.3f s rerun (all recorded)\n", n, w, c - b
    printf "  compress + eval %.1f s, everything else %.1f s (%.1f%% of the sweep)\n", in_, w - in_, 100 * (w - in_) / w
}'
