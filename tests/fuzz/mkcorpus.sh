#!/bin/sh
# Seed corpora for the fuzz harnesses, built from real files in $SPARQ_DATA, the project's
# configs, a safetensors file written by `./sparq convert` and tiny models from mkseeds, into
# build-fuzz/corpus/<harness>/ (the hand-made seeds are committed in tests/fuzz/seeds/<harness>/).
# Copies only the first bytes or lines of large files: the harnesses' -max_len cuts inputs anyway.
# Usage (from the repository root, after `make fuzz-build`): tests/fuzz/mkcorpus.sh
set -eu
D=${SPARQ_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}   # beside this checkout
C=build-fuzz/corpus
MK=build/fuzz-mkseeds
TMP=build-fuzz/tmp
rm -rf "$TMP"
mkdir -p "$TMP/tiny" "$TMP/st"
for h in llama2c tokenizer safetensors gguf spm_model spm_json sweep tasks results bpe_json bpe_pair bpe_encode; do
    mkdir -p "$C/$h"
done

# Copy FILE to DEST only if FILE exists (a partial data folder still fuzzes).
have() { [ -f "$1" ] || { echo "mkcorpus: $1 missing, skipped" >&2; return 1; }; }

# Models: tiny generated ones in every format and weight type, and real files' headers.
"$MK" tiny "$TMP/tiny" "$D/stories260K/tok512.bin"
cp "$TMP"/tiny/llama2c/* "$C/llama2c/"
cp "$TMP"/tiny/safetensors/* "$C/safetensors/"
cp "$TMP"/tiny/gguf/* "$C/gguf/"
if have "$D/stories260K/stories260K.bin"; then
    head -c 8192 "$D/stories260K/stories260K.bin" > "$C/llama2c/stories260K-head"
    ./sparq convert --model "$D/stories260K/stories260K.bin" --out "$TMP/st/model.safetensors" \
        --format safetensors --dtype f16 >/dev/null
    "$MK" pack "$TMP/st/config.json" "$TMP/st/model.safetensors" "$C/safetensors/stories260K-f16"
fi
# OPT (the family tables, biases, LayerNorm, project_in/out) and its f16 form.
for f in opt-tiny opt-tiny-proj opt-tiny-f16; do
    if have "$D/families/$f/model.safetensors"; then
        "$MK" pack "$D/families/$f/config.json" "$D/families/$f/model.safetensors" "$C/safetensors/$f"
    fi
done
have "$D/gguf/llama-2-tiny-random.gguf" &&
    head -c 65536 "$D/gguf/llama-2-tiny-random.gguf" > "$C/gguf/llama-2-tiny-random-head"

# Tokenizers.
have "$D/stories260K/tok512.bin" && cp "$D/stories260K/tok512.bin" "$C/tokenizer/tok512.bin"
have "$D/llama2-tokenizer/tokenizer.bin" &&
    head -c 16384 "$D/llama2-tokenizer/tokenizer.bin" > "$C/tokenizer/llama2-head"
have "$D/stories260K/tok512.model" && cp "$D/stories260K/tok512.model" "$C/spm_model/tok512.model"
# Byte-level BPE text to encode: the reference cases (odd whitespace, scripts, emoji) and WikiText.
have "$D/tokenizers/cases.jsonl" && head -c 16384 "$D/tokenizers/cases.jsonl" > "$C/bpe_encode/cases-head"
have "$D/text/wiki.test.raw" && head -c 16384 "$D/text/wiki.test.raw" > "$C/bpe_encode/wiki-head"

# Sweep configs.
cp configs/*.ini "$C/sweep/"

# Task files: [adapter index][flags] then the first lines (fuzz_tasks.c has the layout). Adapter
# indices follow zeroshot_task_names: piqa 0, arc_easy 1, arc_challenge 2, hellaswag 3,
# winogrande 4, boolq 5, lambada 6, cloze 7, ending 8.
task() {   # task INDEX FLAGS FILE OUT [LABELS]
    have "$3" || return 0
    { printf "\\$(printf %o "$1")\\$(printf %o "$2")"; head -n 3 "$3"
      if [ $# -ge 5 ]; then printf '\000'; head -n 3 "$5"; fi; } > "$C/tasks/$4"
}
T=$D/tasks
task 0 0 "$T/piqa/valid.jsonl" piqa "$T/piqa/valid-labels.lst"
task 0 4 "$T/piqa/valid.jsonl" piqa-explicit "$T/piqa/valid-labels.lst"
task 1 0 "$T/arc/ARC-Easy-Dev.jsonl" arc_easy
task 2 1 "$T/arc/ARC-Challenge-Dev.jsonl" arc_challenge
task 3 0 "$T/hellaswag/hellaswag_val_sample1000.jsonl" hellaswag
task 4 0 "$T/winogrande/dev.jsonl" winogrande
task 4 4 "$T/winogrande/dev.jsonl" winogrande-labels "$T/winogrande/dev-labels.lst"
task 5 0 "$T/boolq/val.jsonl" boolq
task 6 2 "$T/lambada/lambada_test.jsonl" lambada
task 7 0 "$D/text/TinyStories-valid-first1000.txt" cloze
task 8 8 "$D/text/TinyStories-valid-first1000.txt" ending

# Results: the first records of any sweep this checkout ran (CI's `make run` writes results/ci).
for f in results/*/runs.jsonl; do
    [ -f "$f" ] || continue
    head -n 3 "$f" > "$C/results/$(basename "$(dirname "$f")")"
done
rm -rf "$TMP"
