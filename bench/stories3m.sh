#!/bin/sh
# stories3M (llama2.c version 2): wall time and peak RSS of one SparseGPT compression, then
# bench-stories3m (sgemm peak, eval tokens/s and its share of the peak). Prints; asserts nothing.
set -eu
cd "$(dirname "$0")/.."
D=${SPARQ_DATA:-$(cd .. && pwd)/shared/data}
echo "stories3M: sparq compress --solver sparsegpt --sparsity 0.5 --nsamples 128 --calib-seqlen 256 (C4)"
/usr/bin/time -f "  wall %e s, peak RSS %M KB" ./sparq compress --model "$D/stories3M/stories3M-q80.bin" \
    --solver sparsegpt --sparsity 0.5 --calib "$D/text/c4-en-train-first1000.jsonl" --nsamples 128 \
    --calib-seqlen 256 --json > /dev/null
echo
build/bench-stories3m
