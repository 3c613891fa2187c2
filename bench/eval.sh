#!/bin/sh
# Throughput and peak memory of `sparq eval` on stories260K (issue: foundation, performance) and
# on families/opt-tiny (OPT; 64 wide, 2 layers, context 256) and families/mamba-tiny (Mamba; 64
# wide, inner 128, state 16, 2 layers): their random weights read the texts through tok512, whose
# 512 ids match their vocabulary. Prints one row per (model, text,
# protocol, seqlen, threads): tokens/s through the model and peak RSS.
# Reference point on this machine class (from the issue): llama.cpp's llama-perplexity reaches
# about 14,000 tokens/s with 2 threads at context 256 (-b 256); the target is 3x that.
set -eu
cd "$(dirname "$0")/.."
# Default data: shared/data beside this checkout (we are at its top now), wherever we were called from.
D=${SPARQ_DATA:-$(cd .. && pwd)/shared/data}
T="$D/stories260K/tok512.bin"
field() { printf '%s' "$1" | grep -o "\"$2\":[0-9.eE+-]*" | cut -d: -f2; }
printf '%-12s %-34s %-9s %6s %7s %12s %9s %10s\n' model text protocol seqlen threads tokens/s ppl peak_MB
for cfg in "stories260K/stories260K.bin text/TinyStories-valid-first1000.txt documents 512" \
           "stories260K/stories260K.bin text/wiki.test.raw windows 256" \
           "families/opt-tiny text/TinyStories-valid-first1000.txt documents 256" \
           "families/opt-tiny text/wiki.test.raw windows 256" \
           "families/mamba-tiny text/TinyStories-valid-first1000.txt documents 256" \
           "families/mamba-tiny text/wiki.test.raw windows 256"; do
    set -- $cfg
    M="$D/$1"
    name=$(basename "$1" .bin)
    shift
    for th in 1 2; do
        best=""
        # Best of 3 runs: the machine is shared, the minimum time is the least disturbed one.
        for _ in 1 2 3; do
            j=$(./sparq eval --model "$M" --tokenizer "$T" --text "$D/$1" --protocol "$2" \
                --seqlen "$3" --threads "$th" --json)
            tps=$(field "$j" tokens_per_s)
            if [ -z "$best" ] || awk "BEGIN{exit !($tps > $best)}"; then best=$tps; bj=$j; fi
        done
        printf '%-12s %-34s %-9s %6s %7s %12.0f %9.4f %10.1f\n' "$name" "$1" "$2" "$3" "$th" "$best" \
            "$(field "$bj" ppl)" "$(field "$bj" peak_rss_mb)"
    done
done
