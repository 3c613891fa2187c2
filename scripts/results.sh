#!/bin/sh
# The README's result tables on stories260K, until `sparq sweep` (issue: sweep runner) exists:
# compress with each configuration, write the model, evaluate it on TinyStories (documents,
# seqlen 512) and WikiText-2 (windows, seqlen 256). Prints Markdown rows.
#   scripts/results.sh pruning     # dense, magnitude/wanda/sparsegpt at 50-80%, 2:4, 4:8; C4 and self calibration
#   scripts/results.sh quant       # rtn/gptq at 8/4/3/2 bits, per row and g32; mixes at equal TCr
set -eu
cd "$(dirname "$0")/.."
# Default data: shared/data beside this checkout (we are at its top now), wherever we were called from.
D=${SPARQ_DATA:-$(cd .. && pwd)/shared/data}
M="$D/stories260K/stories260K.bin"
TOK="$D/stories260K/tok512.bin"
TS="$D/text/TinyStories-valid-first1000.txt"
WIKI="$D/text/wiki.test.raw"
C4="$D/text/c4-en-train-first1000.jsonl"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
field() { printf '%s' "$1" | grep -o "\"$2\":[0-9.eE+-]*" | head -1 | cut -d: -f2; }

evals() {   # model -> "ts_ppl wiki_ppl"
    a=$(./sparq eval --model "$1" --tokenizer "$TOK" --text "$TS" --protocol documents --seqlen 512 --json)
    b=$(./sparq eval --model "$1" --tokenizer "$TOK" --text "$WIKI" --protocol windows --seqlen 256 --json)
    printf '%.3f %.2f' "$(field "$a" ppl)" "$(field "$b" ppl)"
}

row() {     # label calib args... -> one Markdown row
    label=$1; calib=$2; shift 2
    j=$(./sparq compress --model "$M" --tokenizer "$TOK" --calib "$calib" --nsamples 128 \
        --calib-seqlen 256 --out "$TMP/m.bin" --json "$@")
    set -- $(evals "$TMP/m.bin")
    printf '| %s | %.4f | %.3f | %.0f | %s | %s |\n' "$label" "$(field "$j" sparsity)" \
        "$(field "$j" bits_per_weight)" "$(echo "$(field "$j" bytes_packed)" | awk '{print $1/1024}')" "$1" "$2"
}

case "${1:-pruning}" in
pruning)
    set -- $(evals "$M")
    echo "| configuration | sparsity | bits/weight packed | KB packed | TinyStories ppl | WikiText-2 ppl |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    printf '| dense | 0 | 32 (f32) | 1016 | %s | %s |\n' "$1" "$2"
    for calib in c4 self; do
        src=$C4; [ $calib = self ] && src=self
        for s in magnitude wanda sparsegpt; do
            for sp in 0.5 0.6 0.7 0.8; do row "$s $sp ($calib)" "$src" --solver $s --sparsity $sp; done
            for nm in 2:4 4:8; do row "$s $nm ($calib)" "$src" --solver $s --nm $nm; done
        done
    done ;;
quant)
    echo "| configuration | sparsity | bits/weight packed | KB packed | TinyStories ppl | WikiText-2 ppl |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for s in rtn gptq; do
        for b in 8 4 3 2; do
            row "$s $b-bit per row" "$C4" --solver $s --bits $b
            row "$s $b-bit g32" "$C4" --solver $s --bits $b --group 32
        done
    done
    # Equal theoretical compression (algorithms.md §7): TCr 81.25% and 87.5%.
    row "TCr 81.25%: gptq 3-bit" "$C4" --solver gptq --bits 3
    row "TCr 81.25%: sparsegpt 25% + 4-bit (joint)" "$C4" --solver sparsegpt --sparsity 0.25 --bits 4
    row "TCr 81.25%: sparsegpt 62.5% + 8-bit (joint)" "$C4" --solver sparsegpt --sparsity 0.625 --bits 8
    row "TCr 87.5%: gptq 2-bit" "$C4" --solver gptq --bits 2
    row "TCr 87.5%: sparsegpt 50% + 4-bit (joint)" "$C4" --solver sparsegpt --sparsity 0.5 --bits 4
    row "TCr 87.5%: sparsegpt+gptq 50% + 4-bit (chain)" "$C4" --solver sparsegpt+gptq --sparsity 0.5 --bits 4
    row "TCr 87.5%: sparsegpt 2:4 + 4-bit (joint)" "$C4" --solver sparsegpt --nm 2:4 --bits 4
    row "TCr 87.5%: sparsegpt 75% + 8-bit (joint)" "$C4" --solver sparsegpt --sparsity 0.75 --bits 8 ;;
*) echo "usage: $0 pruning|quant" >&2; exit 2 ;;
esac
